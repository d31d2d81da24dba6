"""Distributions: classes, involvement, volumes, slices and lung HU, all from the cached summary.

No volume is read here: every chart comes from ``Dataset.summary()`` and ``Dataset.histograms()`` (through
``components.state``), and the figures themselves are cached on the summary they are drawn from.
"""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from components import charts, review_agreement, state, tables
from components.markup import md_escape

state.require_frame()  # a deep link on a fresh server must still get the frame (see state.require_frame)

st.title("Distributions")
ds = state.get_dataset()
if ds is None:
    st.stop()

from mosmed import severity  # noqa: E402

summary = state.summary_df(ds)
ok = summary[summary["status"] == "ok"]
n_pending = int((summary["status"] == "pending").sum())
n_err = int((summary["status"] == "error").sum())
st.caption(f"{len(ok)} of {len(summary)} studies summarised"
           + (f" · {n_err} with errors (not drawn)" if n_err else "")
           + (f" · {n_pending} not yet summarised: build the cache in the sidebar" if n_pending else ""))
CLASSES = tuple(severity.CLASSES)


def _open_class_from(event, key: str) -> None:
    """A click on a class mark opens the registry filtered to that class."""
    hits = charts.clicked(event)
    cats = tables.unique(h[-1] for h in hits if h)
    if cats:
        state.goto_registry(cats[:1])


def _open_study_from(event) -> None:
    """A click on a study's point opens it in the viewer."""
    for h in charts.clicked(event):
        if len(h) >= 2:
            try:
                sid = int(h[0])
            except ValueError:
                continue
            state.goto_viewer(sid)


# ---------------------------------------------------------------------------------------- classes
st.subheader("Classes")
counts = tables.class_counts(summary, CLASSES, dict(severity.PUBLISHED_COUNTS))
# The chart gets the full width (ten labelled bars need it); the table and the registry shortcut sit below.
ev = st.plotly_chart(charts.class_counts_figure(counts), key="dist.classes", on_select="rerun",
                     selection_mode="points", config={"displayModeBar": False})
_open_class_from(ev, "dist.classes")
c1, c2 = st.columns([3, 2], gap="large")
with c1:
    st.dataframe(counts, hide_index=True, width="stretch", placeholder="—", column_config={
        "class": st.column_config.TextColumn("Class", width="small"),
        "studies": st.column_config.NumberColumn("Studies here", width="small"),
        "percent": st.column_config.NumberColumn("% here", format="%.1f%%", width="small"),
        "published": st.column_config.NumberColumn("MosMedData", width="small",
                                                   help="Published: 254 / 684 / 125 / 45 / 2"),
        "published_percent": st.column_config.NumberColumn("% published", format="%.1f%%", width="small")})
with c2:
    pick = st.selectbox("Open the registry filtered to", ["—"] + list(counts["class"]), key="dist.w.class_pick")
    if pick and pick != "—":
        state.goto_registry([pick])
    st.caption("Or click a bar of the chart. Solid bars: this dataset; outlined bars: the 1110 studies of "
               "the published MosMedData.")

if ok.empty:
    st.info("No study is summarised yet: the remaining charts appear once the cache is built (sidebar).",
            icon=":material/hourglass_top:")
    review_agreement.agreement_section(ds)      # reviews need no cache
    st.stop()

# ---------------------------------------------------------------------------------------- involvement
st.subheader("Lung involvement")
ev = st.plotly_chart(charts.involvement_figure(ok, CLASSES, tuple(severity.BAND_EDGES)), key="dist.involvement",
                     on_select="rerun", selection_mode="points", config={"displayModeBar": False})
_open_study_from(ev)
n_meas = int(ok["involvement_pct"].notna().sum())
st.caption(f"Filled blue circles: measured from the expert mask ({n_meas} studies). Open amber diamonds: "
           "estimated from the share of lung voxels in the lesion HU range (every study). Shaded boxes: each "
           "class's band; dotted lines: the 25 / 50 / 75 % edges. Click a point to open the study.")

a1, a2 = st.columns(2, gap="large")
with a1:
    ev = st.plotly_chart(charts.lesion_lung_figure(ok), key="dist.lesion_lung", on_select="rerun",
                         selection_mode="points", config={"displayModeBar": False})
    _open_study_from(ev)
with a2:
    ev = st.plotly_chart(charts.slices_figure(ok, CLASSES), key="dist.slices", on_select="rerun",
                         selection_mode="points", config={"displayModeBar": False})
    _open_class_from(ev, "dist.slices")

# ---------------------------------------------------------------------------------------- HU histograms
edges, hist = state.histograms(ds)
if hist.empty:
    st.info("No lung HU histogram in the cache yet.", icon=":material/hourglass_top:")
else:
    cats = ok.set_index("study_id")["category"]
    ev = st.plotly_chart(charts.hu_histogram_figure(edges, hist, cats, CLASSES), key="dist.hu",
                         on_select="rerun", selection_mode="points", config={"displayModeBar": False})
    _open_class_from(ev, "dist.hu")
    st.caption("Each study's lung histogram is normalised to 1, then averaged per class. Click a curve to open "
               "the registry filtered to that class.")

# ---------------------------------------------------------------------------------------- agreement
st.subheader("Estimate against expert mask")
both = ok[ok["involvement_pct"].notna() & ok["estimated_involvement_pct"].notna()]
if both.empty:
    st.info("No study here has an expert lesion mask, so the HU estimate cannot be checked against one.",
            icon=":material/info:")
else:
    try:
        from mosmed.involvement import agreement

        ag = agreement(both["involvement_pct"].astype(float).tolist(),
                       both["estimated_involvement_pct"].astype(float).tolist())
    except Exception as e:  # noqa: BLE001
        ag = None
        st.warning(md_escape(f"Agreement figures unavailable: {e}"))
    g1, g2 = st.columns([1, 2], gap="large")
    with g1:
        if ag:
            def _fmt(v, spec):
                try:
                    f = float(v)
                except (TypeError, ValueError):
                    return "—"
                return "—" if math.isnan(f) else format(f, spec)

            st.metric("Studies with both", f"{int(ag.get('n', len(both)))}")
            st.metric("Mean |estimate − measured|", _fmt(ag.get("mean_abs_diff"), ".1f") + " points")
            st.metric("Pearson r", _fmt(ag.get("pearson_r"), ".2f"))
            ca = ag.get("class_agreement")
            st.metric("Same class band", _fmt(None if ca is None else 100.0 * float(ca), ".0f") + " %",
                      help="Share of studies whose estimate and measurement fall in the same CT class band")
    with g2:
        ev = st.plotly_chart(charts.agreement_figure(both), key="dist.agreement", on_select="rerun",
                             selection_mode="points", config={"displayModeBar": False})
        _open_study_from(ev)

# ---------------------------------------------------------------------------------------- disagreement
st.subheader("Estimate outside its class band")
tol = st.slider("Tolerance, percentage points", 0.0, 20.0, 0.0, 1.0, key="dist.w.tolerance",
                help="Widen every band by this much before calling an estimate out of band")


@st.cache_data(max_entries=16, show_spinner=False)
def _outside(frame: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    rows = []
    for r in frame.itertuples(index=False):
        est = r.estimated_involvement_pct
        if est is None or (isinstance(est, float) and math.isnan(est)):
            continue
        try:
            inside = severity.in_band(str(r.category), float(est), tolerance)
            lo, hi = severity.band(str(r.category))
        except KeyError:
            continue
        if inside:
            continue
        implied = severity.class_for_involvement(float(est))
        rows.append({"study_id": int(r.study_id), "category": str(r.category),
                     "band": f"{lo:g}–{hi:g}%" if hi > 0 else "0%",
                     "estimated": float(est), "estimate_suggests": implied,
                     "measured": (None if r.involvement_pct is None or math.isnan(r.involvement_pct)
                                  else float(r.involvement_pct))})
    return pd.DataFrame(rows, columns=["study_id", "category", "band", "estimated", "estimate_suggests",
                                       "measured"])


outside = _outside(ok[["study_id", "category", "estimated_involvement_pct", "involvement_pct"]], tol)
if outside.empty:
    st.success("Every estimate falls in its class band.", icon=":material/check_circle:")
else:
    st.caption(f"{len(outside)} of {len(ok)} studies. The class was graded on the full study before only every "
               "10th image was kept, and the estimate is a simple HU count: a disagreement is a case to look "
               "at, not an error. Select a row to open it in the viewer.")
    ev = st.dataframe(outside, key="dist.outside", hide_index=True, width="stretch", on_select="rerun", placeholder="—",
                      selection_mode="single-row", height=min(420, 38 + 35 * len(outside)),
                      column_config={
                          "study_id": st.column_config.NumberColumn("Study", format="%d"),
                          "category": "Class", "band": "Class band",
                          "estimated": st.column_config.NumberColumn("Estimated", format="%.1f%%"),
                          "estimate_suggests": "Estimate suggests",
                          "measured": st.column_config.NumberColumn("Measured", format="%.1f%%")})
    sel = list(getattr(getattr(ev, "selection", None), "rows", []) or [])
    if sel and 0 <= int(sel[0]) < len(outside):
        state.goto_viewer(int(outside.iloc[int(sel[0])]["study_id"]))

# ---------------------------------------------------------------------------------------- readers (issue 12)
review_agreement.agreement_section(ds)
