"""Distributions: classes, involvement, volumes, slices and lung HU, all from the cached summary.

No volume is read here: every chart comes from ``Dataset.summary()`` and ``Dataset.histograms()``. The figures
and the numbers beside them are built once per dataset state (:func:`_page_data`, keyed by the summary's
freshness token) and handed out as JSON text; a run only turns that text back into figures.

Speed (issue 11). Plotly draws every chart it is given in one go once its script is loaded, so a page that sends
six charts paints its first one only when all six are drawn. On a session's first visit the page therefore
sends the class chart alone, with placeholders (``st.skeleton``) where the charts below it go, and a small
browser piece (:func:`components.charts.when_drawn`) that answers once that first chart is on screen: the
section below, a fragment, then reruns by itself and draws the rest. Later runs draw everything at once
(Plotly is loaded by then). Tables, numbers and widgets are there from the first run.
"""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from components import charts, review_agreement, state, tables
from components.markup import md_escape

state.require_frame()  # a deep link on a fresh server must still get the frame (see state.require_frame)

# A click on a class bar, or a class picked: the widget's value is in the session state before the widget is drawn
# again, so the registry opens now, before this page computes or sends anything (one run less to wait for).
for _hit in charts.clicked(st.session_state.get("dist.classes")):
    if _hit:
        state.goto_registry([_hit[-1]])
if st.session_state.get("dist.w.class_pick") not in (None, "—"):
    state.goto_registry([str(st.session_state["dist.w.class_pick"])])

st.title("Distributions")
ds = state.get_dataset()
if ds is None:
    st.stop()

from mosmed import severity  # noqa: E402

CLASSES = tuple(severity.CLASSES)
#: Session flag: the charts below the class chart are drawn in this session's runs (set by the first answer of
#: charts.when_drawn, or by a test).
READY_KEY = "dist.charts_ready"
#: Heights (px) of the placeholders, as the charts they stand for, so nothing moves when the charts arrive.
HEIGHTS = {"involvement": 430, "lesion_lung": 380, "slices": 380, "hu": 380, "agreement": 380}


@st.cache_data(max_entries=4, show_spinner="Preparing the charts…")
def _page_data(_ds, key: tuple[str, str], token: tuple) -> dict:
    """Every figure (JSON text) and the numbers and tables beside them, for one dataset state."""
    summary = state.summary_df(_ds)  # the summary the other pages read (cached on the same token)
    edges, hist = _ds.histograms()
    published = dict(severity.PUBLISHED_COUNTS)
    ok = summary[summary["status"] == "ok"]
    both = ok[ok["involvement_pct"].notna() & ok["estimated_involvement_pct"].notna()]
    agreement, agreement_problem = None, None
    if not both.empty:
        try:
            from mosmed.involvement import agreement as agree

            agreement = agree(
                both["involvement_pct"].astype(float).tolist(), both["estimated_involvement_pct"].astype(float).tolist()
            )
        except Exception as e:  # noqa: BLE001 - shown as a warning naming the problem
            agreement_problem = str(e)
    return {
        "figs": charts.page_figures(summary, edges, hist, CLASSES, tuple(severity.BAND_EDGES), published),
        "counts": tables.class_counts(summary, CLASSES, published),
        "n": len(summary),
        "n_ok": len(ok),
        "n_pending": int((summary["status"] == "pending").sum()),
        "n_err": int((summary["status"] == "error").sum()),
        "n_meas": int(ok["involvement_pct"].notna().sum()),
        "n_both": len(both),
        "agreement": agreement,
        "agreement_problem": agreement_problem,
        "estimates": ok[["study_id", "category", "estimated_involvement_pct", "involvement_pct"]].reset_index(
            drop=True
        ),
        "has_hist": not hist.empty,
        "estimate_kind": tables.estimate_kind(ok),  # (label, basis): issue 9, named wherever it is shown
    }


data = _page_data(ds, state.ds_key(ds), state.freshness(ds))
figs = data["figs"]
st.caption(
    f"{data['n_ok']} of {data['n']} studies summarised"
    + (f" · {data['n_err']} with errors (not drawn)" if data["n_err"] else "")
    + (f" · {data['n_pending']} not yet summarised: build the cache in the sidebar" if data["n_pending"] else "")
)


def _open_class_from(event) -> None:
    """A click on a class mark opens the registry filtered to that class."""
    hits = charts.clicked(event)
    cats = tables.unique(h[-1] for h in hits if h)
    if cats:
        state.goto_registry(cats[:1])


def _open_study_from(event) -> None:
    """A click on a study's point opens it in the viewer (customdata ``[id, class]``, or the id alone)."""
    for h in charts.clicked(event):
        if h:
            try:
                sid = int(float(h[0]))
            except ValueError:
                continue
            state.goto_viewer(sid)


def _chart(figs: dict, name: str, key: str, ready: bool, on_click) -> None:
    """One chart of the details section, or its placeholder while the class chart is being drawn."""
    if name not in figs:
        return
    if not ready:
        st.skeleton(height=HEIGHTS.get(name, 380))
        return
    ev = st.plotly_chart(
        charts.from_json(figs[name]),
        key=key,
        on_select="rerun",
        selection_mode="points",
        config={"displayModeBar": False},
    )
    on_click(ev)


# ---------------------------------------------------------------------------------------- classes
st.subheader("Classes")
counts = data["counts"]
# The chart gets the full width (ten labelled bars need it); the table and the registry shortcut sit below.
ev = st.plotly_chart(
    charts.from_json(figs["classes"]),
    key="dist.classes",
    on_select="rerun",
    selection_mode="points",
    config={"displayModeBar": False},
)
_open_class_from(ev)
c1, c2 = st.columns([3, 2], gap="large")
with c1:
    st.dataframe(
        counts,
        hide_index=True,
        width="stretch",
        placeholder="—",
        column_config={
            "class": st.column_config.TextColumn("Class", width="small"),
            "studies": st.column_config.NumberColumn("Studies here", width="small"),
            "percent": st.column_config.NumberColumn("% here", format="%.1f%%", width="small"),
            "published": st.column_config.NumberColumn(
                "MosMedData", width="small", help="Published: 254 / 684 / 125 / 45 / 2"
            ),
            "published_percent": st.column_config.NumberColumn("% published", format="%.1f%%", width="small"),
        },
    )
with c2:
    pick = st.selectbox("Open the registry filtered to", ["—"] + list(counts["class"]), key="dist.w.class_pick")
    if pick and pick != "—":
        state.goto_registry([pick])
    st.caption(
        "Or click a bar of the chart. Solid bars: this dataset; outlined bars: the 1110 studies of "
        "the published MosMedData."
    )


@st.cache_data(max_entries=16, show_spinner=False)
def _outside(_frame: pd.DataFrame, key: tuple, tolerance: float) -> pd.DataFrame:
    return tables.outside_band(_frame, tolerance)  # keyed by the dataset state and the tolerance


@st.fragment
def details() -> None:
    """Everything below the class chart: one fragment (its widgets and clicks rerun only it)."""
    data = _page_data(ds, state.ds_key(ds), state.freshness(ds))  # not the module's: see the end of the page
    figs = data["figs"]
    ready = bool(st.session_state.get(READY_KEY))
    if not ready and data["n_ok"]:
        # First visit: answer once the class chart is on screen; that answer reruns this fragment with charts.
        if charts.when_drawn(key="dist.when_drawn"):
            st.session_state[READY_KEY] = ready = True
    if not data["n_ok"]:
        st.info(
            "No study is summarised yet: the remaining charts appear once the cache is built (sidebar).",
            icon=":material/hourglass_top:",
        )
        review_agreement.agreement_section(ds)  # reviews need no cache
        return

    # ------------------------------------------------------------------------------------ involvement
    st.subheader("Lung involvement")
    _chart(figs, "involvement", "dist.involvement", ready, _open_study_from)
    st.caption(
        f"Filled blue circles: measured from the expert mask ({data['n_meas']} studies). Open amber "
        "diamonds: estimated from the share of lung voxels in the lesion HU range (every study). Shaded "
        "boxes: each class's band; dotted lines: the 25 / 50 / 75 % edges. Click a point to open the study."
    )
    est_label, est_basis = data["estimate_kind"]
    st.caption(md_escape(f"The estimates are the {est_label}" + (f": {est_basis}." if est_basis else ".")))
    a1, a2 = st.columns(2, gap="large")
    with a1:
        _chart(figs, "lesion_lung", "dist.lesion_lung", ready, _open_study_from)
    with a2:
        _chart(figs, "slices", "dist.slices", ready, _open_class_from)

    # ------------------------------------------------------------------------------------ HU histograms
    if not data["has_hist"]:
        st.info("No lung HU histogram in the cache yet.", icon=":material/hourglass_top:")
    else:
        _chart(figs, "hu", "dist.hu", ready, _open_class_from)
        st.caption(
            "Each study's lung histogram is normalised to 1, then averaged per class. Click a curve to "
            "open the registry filtered to that class."
        )

    # ------------------------------------------------------------------------------------ agreement
    st.subheader("Estimate against expert mask")
    if not data["n_both"]:
        st.info(
            "No study here has an expert lesion mask, so the HU estimate cannot be checked against one.",
            icon=":material/info:",
        )
    else:
        if data["agreement_problem"]:
            st.warning(md_escape(f"Agreement figures unavailable: {data['agreement_problem']}"))
        ag = data["agreement"]
        g1, g2 = st.columns([1, 2], gap="large")
        with g1:
            if ag:

                def _fmt(v, spec):
                    try:
                        f = float(v)
                    except (TypeError, ValueError):
                        return "—"
                    return "—" if math.isnan(f) else format(f, spec)

                st.metric("Studies with both", f"{int(ag.get('n', data['n_both']))}")
                st.metric("Mean |estimate − measured|", _fmt(ag.get("mean_abs_diff"), ".1f") + " points")
                st.metric("Pearson r", _fmt(ag.get("pearson_r"), ".2f"))
                ca = ag.get("class_agreement")
                st.metric(
                    "Same class band",
                    _fmt(None if ca is None else 100.0 * float(ca), ".0f") + " %",
                    help="Share of studies whose estimate and measurement fall in the same CT class band",
                )
        with g2:
            _chart(figs, "agreement", "dist.agreement", ready, _open_study_from)

    # ------------------------------------------------------------------------------------ disagreement
    st.subheader("Estimate outside its class band")
    tol = st.slider(
        "Tolerance, percentage points",
        0.0,
        20.0,
        0.0,
        1.0,
        key="dist.w.tolerance",
        help="Widen every band by this much before calling an estimate out of band",
    )
    outside = _outside(data["estimates"], (state.ds_key(ds), state.freshness(ds)), tol)
    if outside.empty:
        st.success("Every estimate falls in its class band.", icon=":material/check_circle:")
    else:
        st.caption(
            f"{len(outside)} of {data['n_ok']} studies. The class was graded on the full study before only "
            "every 10th image was kept, and the estimate is a simple HU count: a disagreement is a case to "
            "look at, not an error. Select a row to open it in the viewer."
        )
        ev = st.dataframe(
            outside,
            key="dist.outside",
            hide_index=True,
            width="stretch",
            on_select="rerun",
            placeholder="—",
            selection_mode="single-row",
            height=min(420, 38 + 35 * len(outside)),
            column_config={
                "study_id": st.column_config.NumberColumn("Study", format="%d"),
                "category": "Class",
                "band": "Class band",
                "estimated": st.column_config.NumberColumn(est_label.capitalize(), format="%.1f%%"),
                "estimate_suggests": "Estimate suggests",
                "measured": st.column_config.NumberColumn("Measured", format="%.1f%%"),
            },
        )
        sel = list(getattr(getattr(ev, "selection", None), "rows", []) or [])
        if sel and 0 <= int(sel[0]) < len(outside):
            state.goto_viewer(int(outside.iloc[int(sel[0])]["study_id"]))

    # ------------------------------------------------------------------------------------ readers (issue 12)
    review_agreement.agreement_section(ds, draw_chart=ready)


details()
# The fragment keeps this page's function and module alive for the session: no figure text or table the size of
# the registry stays in its variables (details() reads the cached page data itself).
del data, figs, counts
