"""Registry: faceted filters, a sortable table with thumbnails, open a study, export the rows.

Speed (issue 11): the filters and the table are one ``st.fragment``, so a filter change reruns only them (not the
frame, the sidebar or the review query); the table's thumbnails are small media URLs that the grid fetches for
the rows it draws (``components.thumbs``); the exports are made when a download button is pressed, not on every
run; more than :data:`PAGE_ROWS` matching rows are shown a page at a time with ``st.pagination``.
"""

from __future__ import annotations

import math

import streamlit as st

from components import reader as reader_mod
from components import review_facets, state, tables, thumbs
from components.markup import md_escape

state.require_frame()  # a deep link on a fresh server must still get the frame (see state.require_frame)

st.title("Registry")
ds = state.get_dataset()
if ds is None:
    st.stop()

from mosmed import severity  # noqa: E402

summary = state.registry_rows_df(ds)  # every registry row, a repeated id included

# Widget keys (tests drive them). Filters persist across pages in their own "store" keys: Streamlit drops a
# widget's state when its page is not shown, and a user coming back from the viewer expects the same rows.
W_CLASS, W_MASK, W_SOURCE, W_RANGE, W_IDS, W_STATUS = (
    "registry.w.class",
    "registry.w.mask",
    "registry.w.source",
    "registry.w.range",
    "registry.w.ids",
    "registry.w.status",
)
W_REVIEW, W_FLAGS, W_DISAGREE = "registry.w.review", "registry.w.flags", "registry.w.disagree"  # issue 12
W_PAGE, W_ORDER, W_DESC = "registry.w.page", "registry.w.order", "registry.w.desc"
W_QC = "registry.w.quality"  # issue 9: the studies' quality flags
STORE = {
    W_CLASS: state.REGISTRY_CLASS_KEY,
    W_MASK: "registry.filter.mask",
    W_SOURCE: "registry.filter.source",
    W_RANGE: "registry.filter.range",
    W_IDS: "registry.filter.ids",
    W_STATUS: "registry.filter.status",
    W_REVIEW: "registry.filter.review",
    W_FLAGS: "registry.filter.flags",
    W_DISAGREE: "registry.filter.disagree",
    W_QC: "registry.filter.quality",
}
APPLY_KEY = state.REGISTRY_APPLY_KEY  # set by state.goto_registry to push a class filter from another page
#: Rows per table page. 1110 studies fit one page; a 100 000-row registry is shown 2000 rows at a time, which
#: bounds what one run sends (rows, thumbnail URLs) whatever the registry's size.
PAGE_ROWS = 2000
#: "Order by" of a paged table (the grid's own header sort orders the page it shows).
ORDERS = {
    "study_id": "Study id",
    "category": "Class",
    "involvement": "Involvement",
    "estimated_involvement_pct": "Estimate",
    "lung_ml": "Lung volume",
    "n_slices": "Slices",
    "status": "Status",
}

counts = summary["category"].astype(str).value_counts()
class_options = list(severity.CLASSES) + sorted(c for c in counts.index if c not in severity.CLASSES)
status_options = ["ok", "error", "pending"]
status_counts = summary["status"].astype(str).value_counts()
defaults = {
    W_CLASS: [],
    W_MASK: "any",
    W_SOURCE: "best",
    W_RANGE: (0.0, 100.0),
    W_IDS: "",
    W_STATUS: [],
    W_REVIEW: "any",
    W_FLAGS: [],
    W_DISAGREE: False,
    W_QC: [],
}
qc_options = tables.quality_options()
qc_counts = tables.quality_counts(summary)

# Reviews of this dataset (issue 12): the per-study columns and facets; the page works without them.
me = reader_mod.current_reader()
per_study, latest_reviews, review_problem = review_facets.review_columns(ds, me)
from mosmed.reviews.model import FLAG_LABELS  # noqa: E402

flag_options = [tables.ANY_FLAG] + list(FLAG_LABELS)

if st.session_state.pop(APPLY_KEY, False):
    st.session_state.pop(W_CLASS, None)
if st.session_state.pop(review_facets.APPLY_ALL_KEY, False):  # another page set the whole filter
    for w in STORE:
        st.session_state.pop(w, None)
for w, store in STORE.items():
    if w not in st.session_state:
        value = st.session_state.get(store, defaults[w])
        if w == W_CLASS:
            value = [c for c in (value or []) if c in class_options]
        if w == W_STATUS:
            value = [s for s in (value or []) if s in status_options]
        if w == W_REVIEW and value not in tables.REVIEW_STATES:
            value = "any"
        if w == W_FLAGS:
            value = [f for f in (value or []) if f in flag_options]
        if w == W_QC:
            value = [q for q in (value or []) if q in qc_options]
        if w == W_DISAGREE:
            value = bool(value)
        if w == W_RANGE:
            try:
                lo, hi = (float(v) for v in value)
                value = (max(0.0, min(lo, hi)), min(100.0, max(lo, hi)))
            except (TypeError, ValueError):
                value = defaults[W_RANGE]
        st.session_state[w] = value

n_flag = {f: 0 for f in flag_options}
if per_study is not None:
    for fl in per_study["flags"]:
        for f in fl:
            n_flag[f] = n_flag.get(f, 0) + 1
        n_flag[tables.ANY_FLAG] += bool(fl)
n_studies = int(summary["study_id"].nunique())
THUMBS_MEMO = "registry.thumb_urls"
thumbs.new_full_run(THUMBS_MEMO)  # this full run dropped the session's media files: their URLs too
# Nothing the size of the registry stays in this script's variables: the fragment below keeps them (its
# function and module) alive for the session, so it reads the summary itself on each run (a cached copy).
del summary


def _reset() -> None:
    for w, store in STORE.items():
        st.session_state[w] = defaults[w]
        st.session_state.pop(store, None)
    st.session_state.pop(review_facets.ID_SET_KEY, None)
    st.session_state.pop(W_PAGE, None)


def _filters() -> None:
    """The facet widgets (inside the fragment: a change reruns only the fragment)."""
    with st.container(border=True):
        # The mask facet's three segments need ~210 px: [3, 3, 2] keeps them whole down to a 1280-px window.
        c1, c2, c3 = st.columns([3, 3, 2])
        c1.multiselect(
            "Class",
            class_options,
            key=W_CLASS,
            placeholder="All classes",
            format_func=lambda c: f"{c} ({int(counts.get(c, 0))})",
        )
        c2.segmented_control(
            "Lesion mask",
            ["any", "with", "without"],
            key=W_MASK,
            required=True,
            format_func={"any": "Any", "with": "With mask", "without": "Without"}.get,
        )
        c3.multiselect(
            "Status",
            status_options,
            key=W_STATUS,
            placeholder="Any status",
            format_func=lambda s: f"{s} ({int(status_counts.get(s, 0))})",
        )
        c4, c5, c6 = st.columns([3, 3, 2])
        c4.slider(
            "Lung involvement, %",
            0.0,
            100.0,
            key=W_RANGE,
            step=1.0,
            help="Restricts only when narrower than 0-100 %; studies without a value are then left out.",
        )
        c5.selectbox("Involvement from", list(tables.SOURCES), key=W_SOURCE, format_func=tables.SOURCE_LABELS.get)
        c6.text_input("Study id", key=W_IDS, placeholder="e.g. 255, 260-270", max_chars=200)
        # Review facets (issue 12): who reviewed a study, what it was flagged for, readers against the class.
        c7, c8, c9 = st.columns([3, 3, 2], vertical_alignment="bottom")
        no_reviews = per_study is None
        c7.selectbox(
            "Review",
            list(tables.REVIEW_STATES),
            key=W_REVIEW,
            format_func=tables.REVIEW_STATE_LABELS.get,
            disabled=no_reviews,
            help="Reviewed by you (the reader in the sidebar), by anyone, or by nobody yet",
        )
        c8.multiselect(
            "Flagged",
            flag_options,
            key=W_FLAGS,
            placeholder="Any or no flag",
            disabled=no_reviews,
            format_func=lambda f: f"{'Any flag' if f == tables.ANY_FLAG else FLAG_LABELS[f]} ({n_flag.get(f, 0)})",
        )
        c9.toggle(
            "Reader grade ≠ class",
            key=W_DISAGREE,
            disabled=no_reviews,
            help="Studies where some reader's grade (CT-0..CT-4) differs from the registry class",
        )
        c10, _ = st.columns([3, 5])
        c10.multiselect(
            "Quality",
            qc_options,
            key=W_QC,
            placeholder="Any quality",
            format_func=lambda q: f"{tables.quality_label(q)} ({qc_counts.get(q, 0)})",
            help="The studies' quality flags (a warning, not an error: the study still opens)",
        )
        if review_problem:
            st.caption(md_escape(f"Review facets unavailable: {review_problem}"))
        elif me is None and st.session_state.get(W_REVIEW) in ("mine", "not_mine"):
            st.caption("Type your name in the sidebar (Reader) to see your own reviews.")
        id_set = st.session_state.get(review_facets.ID_SET_KEY)
        if id_set:
            r1, r2 = st.columns([6, 2], vertical_alignment="center")
            n_set = len(id_set["ids"])
            r1.info(
                md_escape(f"Showing the {n_set} {'study' if n_set == 1 else 'studies'} of {id_set['label']}."),
                icon=":material/filter_alt:",
            )
            r2.button(
                "Show all studies",
                key="registry.w.clear_id_set",
                type="tertiary",
                on_click=lambda: st.session_state.pop(review_facets.ID_SET_KEY, None),
            )
        st.button("Reset filters", key="registry.w.reset", on_click=_reset, type="tertiary")


def _current_filter() -> tables.RegistryFilter:
    ids, notice = tables.parse_id_query(st.session_state[W_IDS])
    if notice:
        st.warning(md_escape(f"Study id search: {notice}."), icon=":material/search_off:")  # echoes typed text
    id_set = st.session_state.get(review_facets.ID_SET_KEY)
    if id_set:
        ids = frozenset(id_set["ids"]) if ids is None else ids & frozenset(id_set["ids"])
    return tables.RegistryFilter(
        classes=tuple(st.session_state[W_CLASS]) or None,
        mask=st.session_state[W_MASK] or "any",
        source=st.session_state[W_SOURCE] or "best",
        involvement=tuple(st.session_state[W_RANGE]),
        ids=ids,
        statuses=tuple(st.session_state[W_STATUS]) or None,
        review=(st.session_state[W_REVIEW] or "any") if per_study is not None else "any",
        flags=(tuple(st.session_state[W_FLAGS]) or None) if per_study is not None else None,
        disagree=bool(st.session_state[W_DISAGREE]) and per_study is not None,
        quality=tuple(st.session_state[W_QC]) or None,
    )


def _page_of(rows):
    """The rows shown: all of them, or one page of :data:`PAGE_ROWS` in the chosen order."""
    n_pages = max(1, math.ceil(len(rows) / PAGE_ROWS))
    if n_pages == 1:
        st.session_state.pop(W_PAGE, None)
        return rows
    if not 1 <= int(st.session_state.get(W_PAGE, 1) or 1) <= n_pages:
        st.session_state[W_PAGE] = 1  # the filter shrank under the page the user was on
    p1, p2, p3 = st.columns([2, 1, 5], vertical_alignment="bottom")
    order = p1.selectbox(
        "Order by",
        list(ORDERS),
        key=W_ORDER,
        format_func=ORDERS.get,
        help="Orders every page; a column header orders the page shown",
    )
    desc = p2.toggle("Descending", key=W_DESC)
    with p3:
        page = st.pagination(n_pages, key=W_PAGE, max_visible_pages=9)
    if order == "study_id" and not desc and rows["study_id"].is_monotonic_increasing:
        ordered = rows  # the registry's own order already (no sort of 100 000 rows on every run)
    else:
        ordered = rows.sort_values([order, "study_id"], ascending=[not desc, True], na_position="last", kind="stable")
    lo = (int(page) - 1) * PAGE_ROWS
    st.caption(f"Rows {lo + 1:,}–{min(lo + PAGE_ROWS, len(rows)):,} of {len(rows):,} (page {page} of {n_pages}).")
    return ordered.iloc[lo : lo + PAGE_ROWS]


TABLE_COLS = [
    "thumbnail",
    "study_id",
    "category",
    "my_grade",
    "n_readers",
    "flag_text",
    "disagree",
    "status",
    "error",
    "involvement",
    "involvement_source",
    "estimated_involvement_pct",
    "estimate_kind",
    "qc",
    "has_mask",
    "lung_ml",
    "lesion_ml",
    "n_slices",
    "spacing_mm",
    "grades",
    "warnings",
]
COLUMN_CONFIG = {
    # Small media URLs (components.thumbs): the grid fetches the images of the rows it draws, nothing more.
    "thumbnail": st.column_config.ImageColumn("", width="small"),
    "study_id": st.column_config.NumberColumn("Study", format="%d", pinned=True),
    "category": st.column_config.TextColumn("Class"),
    "status": st.column_config.TextColumn("Status"),
    "involvement": st.column_config.NumberColumn(
        "Involvement", format="%.1f%%", help="Lung involvement; the next column says measured or estimated"
    ),
    "involvement_source": st.column_config.TextColumn(
        "From", help="measured = expert mask, estimated = share of lung in -700..-130 HU"
    ),
    "estimated_involvement_pct": st.column_config.NumberColumn("Estimate", format="%.1f%%"),
    "estimate_kind": st.column_config.TextColumn(
        "Estimate is", help="calibrated on this dataset (CT-0 baseline, masked studies' slope) or uncalibrated"
    ),
    "qc": st.column_config.TextColumn("Quality", width="medium", help="Quality flags, each with its reason"),
    "has_mask": st.column_config.CheckboxColumn("Mask"),
    "lung_ml": st.column_config.NumberColumn("Lung mL", format="%.0f"),
    "lesion_ml": st.column_config.NumberColumn("Lesion mL", format="%.1f"),
    "n_slices": st.column_config.NumberColumn("Slices", format="%d"),
    "spacing_mm": st.column_config.TextColumn("Spacing x·y·z mm"),
    "error": st.column_config.TextColumn("Problem", width="medium"),
    "warnings": st.column_config.TextColumn("Warnings", width="medium"),
    "my_grade": st.column_config.TextColumn(
        "My grade", width=104, help="Your current grade (the reader in the sidebar)"
    ),
    "n_readers": st.column_config.NumberColumn("Readers", format="%d", help="Readers with a current review"),
    "flag_text": st.column_config.TextColumn("Flags", width="medium", help="Flags of any reader"),
    "disagree": st.column_config.CheckboxColumn("≠ class", help="A reader's grade differs from the class"),
    "grades": st.column_config.TextColumn("Reader grades", width="medium"),
}


def _table(rows) -> None:
    shown = _page_of(rows)
    view = shown.copy()
    names = view["thumb_name"].tolist() if "thumb_name" in view else [None] * len(view)
    view.insert(0, "thumbnail", thumbs.thumbnail_urls(ds, view["study_id"].tolist(), names, memo_key=THUMBS_MEMO))
    view["involvement_source"] = view["involvement_source"].replace({"": None})
    if "estimate_calibrated" in view:
        kind = view["estimate_calibrated"].map({True: "calibrated", False: "uncalibrated"})
        view["estimate_kind"] = kind.where(view["estimated_involvement_pct"].notna(), None)
    else:
        view["estimate_kind"] = None
    cols = TABLE_COLS
    if per_study is None:  # no review database: no empty review columns either
        cols = [c for c in cols if c not in ("my_grade", "n_readers", "flag_text", "disagree", "grades")]
    # Problem / warning columns only when some shown row has one: an empty wide column is noise.
    cols = [c for c in cols if c in view.columns]
    cols = [
        c for c in cols if c not in ("error", "warnings", "qc") or view[c].fillna("").astype(str).str.len().gt(0).any()
    ]
    event = st.dataframe(
        view[cols],
        key="registry.table",
        hide_index=True,
        width="stretch",
        height=560,
        row_height=64,
        on_select="rerun",
        selection_mode="single-row",
        placeholder="—",
        column_config=COLUMN_CONFIG,
    )
    st.caption("Select a row to open the study in the viewer. Click a column header to sort.")
    selected = list(getattr(getattr(event, "selection", None), "rows", []) or [])
    if selected:
        pos = int(selected[0])
        if 0 <= pos < len(view):
            state.goto_viewer(int(view.iloc[pos]["study_id"]))


def _export_rows(flt: tables.RegistryFilter):
    """The rows of ``flt``, computed again when a download button is pressed (in the download's own thread).

    The buttons keep only the filter, not the rows: a deferred download's callable lives as long as the session,
    and the rows of a 100 000-row registry are tens of megabytes.
    """
    return tables.export_frame(tables.filter_summary(tables.with_reviews(ds.summary(), per_study, copy=False), flt))


def _export_bytes(flt: tables.RegistryFilter, kind: str) -> bytes:
    export = _export_rows(flt)
    return tables.to_csv_bytes(export) if kind == "csv" else tables.to_xlsx_bytes(export, "filtered studies")


def _review_bytes(frame, kind: str) -> bytes:
    from mosmed.reviews import export as review_export

    return review_export.to_csv_bytes(frame) if kind == "csv" else review_export.to_xlsx_bytes(frame, "reviews")


def _downloads(rows, flt: tables.RegistryFilter) -> None:
    # The files are written when a button is pressed (a callable runs on the click, in its own thread), not on
    # every filter change: an XLSX of 1110 rows takes longer than the whole rest of the run.
    downloads = st.container(horizontal=True, gap="small")  # buttons sized to their labels, never truncated
    none = rows.empty
    downloads.download_button(
        "Download CSV",
        lambda: _export_bytes(flt, "csv"),
        file_name="mosmed_registry_filtered.csv",
        mime="text/csv",
        key="registry.w.csv",
        icon=":material/download:",
        on_click="ignore",
        disabled=none,
    )
    downloads.download_button(
        "Download XLSX",
        lambda: _export_bytes(flt, "xlsx"),
        file_name="mosmed_registry_filtered.xlsx",
        key="registry.w.xlsx",
        icon=":material/download:",
        mime="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        on_click="ignore",
        disabled=none,
    )
    # Reviews of the filtered studies (issue 12): the same rows as `python -m mosmed review export`.
    if latest_reviews is not None:
        from mosmed.reviews import export as review_export

        reviewed = latest_reviews[latest_reviews["study_id"].isin(rows["study_id"])]  # few; the rows may be many
        categories = (
            rows.loc[rows["study_id"].isin(reviewed["study_id"]), ["study_id", "category"]]
            .drop_duplicates("study_id")
            .set_index("study_id")["category"]
            .astype(str)
        )
        rv = review_export.export_frame(reviewed, categories)
        downloads.download_button(
            f"Reviews CSV ({len(rv)})",
            lambda: _review_bytes(rv, "csv"),
            file_name="mosmed_reviews_filtered.csv",
            mime="text/csv",
            key="registry.w.reviews_csv",
            icon=":material/rate_review:",
            on_click="ignore",
            disabled=rv.empty,
        )
        downloads.download_button(
            f"Reviews XLSX ({len(rv)})",
            lambda: _review_bytes(rv, "xlsx"),
            file_name="mosmed_reviews_filtered.xlsx",
            key="registry.w.reviews_xlsx",
            icon=":material/rate_review:",
            on_click="ignore",
            disabled=rv.empty,
            mime="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        )


@st.fragment
def browse() -> None:
    """Facets, the count line, the table and the downloads: one fragment, rerun alone on every filter change.

    The facets' values are in the session state before their widgets are drawn, so the table is computed and
    sent first, into the lower container: the browser starts loading the grid while the widgets above arrive.
    """
    top, bottom = st.container(), st.container()
    for w, store in STORE.items():  # remember for the next visit
        v = st.session_state.get(w)
        st.session_state[store] = list(v) if isinstance(v, (list, tuple)) else v
    with top:
        flt = _current_filter()
    base = tables.with_reviews(state.registry_rows_df(ds), per_study, copy=False)
    unfiltered = len(rows := tables.filter_summary(base, flt)) == len(base)
    del base
    # The viewer's picker and the quiz follow the filter; an unrestricted one is stored as "no filter" (None)
    # rather than as every id of the registry (100 000 ints per session at 100 000 rows).
    state.set_filter_ids(None if unfiltered else tables.ids_of(rows))
    with bottom:
        _table(rows)
        _downloads(rows, flt)
    with top:
        _filters()
        # Studies are counted once; a registry row repeating an id is listed too (in error), and counted apart.
        first = rows.drop_duplicates("study_id")
        n_err = int((first["status"] == "error").sum())
        n_repeated = len(rows) - len(first)
        st.markdown(
            f"**{len(first)}** of {n_studies} studies"
            + (f" · {n_err} with errors, listed with their reason" if n_err else "")
            + (f" · {n_repeated} registry row(s) repeating a study id" if n_repeated else "")
        )


browse()

problems = ds.registry.problems
with st.expander(f"Registry rows that could not be kept ({len(problems)})", expanded=False):
    if not problems:
        st.write("None: every registry row has a usable, unique study id.")
    else:
        import pandas as pd

        st.dataframe(
            pd.DataFrame([{"row": p.row, "study_id": p.study_id, "reason": p.reason} for p in problems]),
            hide_index=True,
            width="stretch",
            column_config={
                "row": st.column_config.NumberColumn("Spreadsheet row", format="%d"),
                "study_id": st.column_config.NumberColumn("Study", format="%d"),
                "reason": st.column_config.TextColumn("Reason", width="large"),
            },
        )
