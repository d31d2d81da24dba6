"""Plotly figures of the distributions page, built from the cached summary and histograms only.

Every builder takes DataFrames / arrays and returns a ``plotly.graph_objects.Figure``. The page does not build
them per run: :func:`page_figures` builds all of them once per dataset state (the page caches it on the
summary's freshness token, never per click) and hands out each as JSON text; :func:`from_json` turns the text
back into a figure without re-validating it (plotly's validation of a 1110-point figure costs more than
everything else the page does). Points carry ``customdata = [study_id, class]`` (or ``[class]`` for per-class
marks) so a click can open the study in the viewer or filter the registry to the class.

Scatters of more than :data:`MAX_POINTS` studies draw a sample of that many (the same studies on every run,
chosen by id), and say so in their title: one SVG node a point is fine for the 1110 studies of MosMedData, but
100 000 points cost the browser seconds and show no more than the sample does (the counts, slices and
histograms are computed from every study). WebGL (``scattergl``) was tried instead: in headless Chromium
(software GL, where the benchmarks run) the charts drew slower than as SVG.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

__all__ = [
    "CLASS_COLORS",
    "SOURCE_STYLE",
    "class_counts_figure",
    "involvement_figure",
    "lesion_lung_figure",
    "slices_figure",
    "hu_histogram_figure",
    "agreement_figure",
    "confusion_figure",
    "clicked",
    "page_figures",
    "from_json",
    "when_drawn",
    "MAX_POINTS",
    "sample_studies",
]

#: Most studies a scatter draws; above it, a fixed sample of this many (see :func:`sample_studies`).
MAX_POINTS = 3000

#: One colour per class, from calm to alarming, readable on the dark theme.
CLASS_COLORS = {"CT-0": "#8fa3b8", "CT-1": "#5cc98a", "CT-2": "#e3c94f", "CT-3": "#f28b3c", "CT-4": "#e8505b"}
_OTHER = "#b98ee6"
#: Measured (from the expert mask) and estimated (from HU) values must never look alike.
SOURCE_STYLE = {
    "measured": {"color": "#4c9aff", "symbol": "circle", "name": "measured (expert mask)"},
    "estimated": {"color": "#f5a623", "symbol": "diamond-open", "name": "estimated (HU range)"},
}


def _color(cls: str) -> str:
    return CLASS_COLORS.get(str(cls), _OTHER)


def sample_studies(frame: pd.DataFrame, n: int = MAX_POINTS) -> pd.DataFrame:
    """``frame`` when it has at most ``n`` rows, else ``n`` of them chosen by a hash of the study id (the same
    studies on every run, whatever the order of the rows), in their original order."""
    if len(frame) <= n:
        return frame
    # splitmix64 of the id: unrelated to the jitter's hash (a sample of the smallest jitter hashes would put
    # every drawn point at the left edge of its class).
    x = frame["study_id"].to_numpy(dtype=np.int64).astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    h = x ^ (x >> np.uint64(31))
    keep = np.sort(np.argsort(h, kind="stable")[:n])
    return frame.iloc[keep]


def _sampled(shown: pd.DataFrame, every: pd.DataFrame) -> str:
    """A second title line saying a scatter draws a sample (empty when it draws every study)."""
    return "" if len(shown) == len(every) else f"<br><sup>{len(shown):,} of {len(every):,} studies drawn</sup>"


def _title_margin(title: str, top: int = 50) -> dict:
    return dict(t=top + 18) if "<br>" in title else {}


def _cached_figure(build: Callable[..., go.Figure]) -> Callable[..., go.Figure]:
    """``st.cache_data`` for a figure builder that hands out a fresh ``go.Figure`` on every call.

    The figure is built once per input; but a figure handed out as the cache's unpickled copy does not take
    clicks in Streamlit's select-on-click (seen in Chromium: a click on a bar selected nothing), while a new
    ``go.Figure`` made from that copy does. The copy costs well under a millisecond.
    """
    cached = st.cache_data(max_entries=16, show_spinner=False)(build)

    @functools.wraps(build)
    def fresh(*args: Any, **kwargs: Any) -> go.Figure:
        return go.Figure(cached(*args, **kwargs))

    return fresh


def _layout(fig: go.Figure, title: str, height: int = 380, margin: dict | None = None, **kw) -> go.Figure:
    m = dict(l=10, r=10, t=50, b=10)
    m.update(margin or {})
    fig.update_layout(
        title=dict(text=title, x=0.0, xanchor="left"),
        height=height,
        margin=m,
        legend=dict(orientation="h", yanchor="top", y=-0.22, traceorder="normal"),
        clickmode="event+select",
        dragmode=False,
        **kw,
    )
    return fig


def _legend_key(fig: go.Figure, name: str, symbol: str, group: str) -> None:
    """A neutral legend entry for a trace coloured by class (plotly would show its first point's colour)."""
    fig.add_scatter(
        x=[None],
        y=[None],
        mode="markers",
        name=name,
        legendgroup=group,
        hoverinfo="skip",
        marker=dict(color="#c8ccd2", symbol=symbol, size=8, line=dict(width=1.3, color="#c8ccd2")),
    )


def _jitter(ids: Sequence[int], width: float = 0.28) -> np.ndarray:
    """Deterministic horizontal jitter per study id (the same point stays in the same place every run)."""
    ids = np.asarray(ids, dtype=np.int64)
    h = (ids * 2654435761) % 2**32 / 2**32
    return (h - 0.5) * 2 * width


def class_counts_figure(counts: pd.DataFrame) -> go.Figure:
    """Bars of this dataset's class percentages beside the published MosMedData ones.

    ``counts`` comes from :func:`components.tables.class_counts` (columns class, studies, percent,
    published, published_percent). Each bar is labelled on two short lines (count, then percent) at a
    fixed, readable size: plotly would otherwise shrink a one-line label to the width of its bar.
    """
    fig = go.Figure()
    label_font = dict(size=12, color="#e6e8eb")
    classes = [str(c) for c in counts["class"]]
    fig.add_bar(
        x=classes,
        y=[float(v) for v in counts["percent"]],
        name="this dataset",
        marker_color=[_color(c) for c in counts["class"]],
        text=[f"<b>{n}</b><br>{p:.1f}%" for n, p in zip(counts["studies"], counts["percent"])],
        textposition="outside",
        textfont=label_font,
        constraintext="none",
        cliponaxis=False,
        customdata=[[c] for c in classes],
        hovertext=[f"{n} studies" for n in counts["studies"]],
        hovertemplate="%{x}: %{hovertext}, %{y:.1f}% of this dataset<extra></extra>",
    )
    if "published_percent" in counts:
        pub = counts["published_percent"].astype(float)
        pub_n = ["" if pd.isna(n) else str(int(n)) for n in counts["published"]]
        fig.add_bar(
            x=classes,
            y=[float(v) for v in pub],
            name="MosMedData (published)",
            marker=dict(color="rgba(200,204,210,0.10)", line=dict(color="#c8ccd2", width=1.5)),
            text=[("" if not n else f"{n}<br>{p:.1f}%") for n, p in zip(pub_n, pub)],
            textposition="outside",
            textfont=dict(size=12, color="#aeb4bb"),
            constraintext="none",
            cliponaxis=False,
            customdata=[[c] for c in classes],
            hovertext=[f"{n} of MosMedData's 1110 studies" if n else "not published" for n in pub_n],
            hovertemplate="%{x}: %{hovertext} (%{y:.1f}%)<extra></extra>",
        )
    top = float(
        np.nanmax(
            np.r_[
                counts["percent"].to_numpy(dtype=float),
                counts.get("published_percent", pd.Series([0.0])).to_numpy(dtype=float),
                1.0,
            ]
        )
    )
    fig.update_yaxes(title="% of studies", range=[0, top * 1.22], ticksuffix="%")
    fig.update_xaxes(title=None, type="category")
    # Room above the tallest bar for its two-line label (cliponaxis=False lets it use the top margin too).
    return _layout(
        fig, "Studies per class", height=400, margin=dict(t=70), barmode="group", bargap=0.28, bargroupgap=0.12
    )


def involvement_figure(summary: pd.DataFrame, classes: tuple[str, ...], band_edges: tuple[float, ...]) -> go.Figure:
    """Involvement per class: measured values (mask) and HU estimates as distinct marks, band edges drawn.

    Each study with a mask appears twice (measured and estimated) so the estimate can be judged against it.
    """
    cats = list(classes) + sorted(set(summary["category"].astype(str)) - set(classes))
    pos = {c: i for i, c in enumerate(cats)}
    fig = go.Figure()
    # The class bands as faint boxes behind the points: where a study "should" fall.
    from mosmed.severity import band

    for c in cats:
        try:
            lo, hi = band(c)
        except KeyError:
            continue
        i = pos[c]
        fig.add_shape(
            type="rect",
            x0=i - 0.42,
            x1=i + 0.42,
            y0=lo,
            y1=max(hi, 0.8),
            line_width=0,
            fillcolor=_color(c),
            opacity=0.13,
            layer="below",
        )
    for edge in band_edges:
        fig.add_hline(
            y=edge,
            line=dict(color="#9aa0a6", width=1, dash="dot"),
            annotation_text=f"{edge:g}%",
            annotation_position="right",
            annotation_font=dict(color="#9aa0a6", size=11),
        )
    shown = sample_studies(summary)
    for source, column in (("estimated", "estimated_involvement_pct"), ("measured", "involvement_pct")):
        df = shown[pd.to_numeric(shown[column], errors="coerce").notna()]
        if df.empty:
            continue
        style = SOURCE_STYLE[source]
        x = np.array([pos[str(c)] for c in df["category"]], dtype=float) + _jitter(df["study_id"])
        if source == "measured":
            x = x + 0.04  # keep a measured point beside its estimate rather than on top of it
        fig.add_scatter(
            x=x,
            y=df[column].astype(float),
            mode="markers",
            name=style["name"],
            marker=dict(
                color=style["color"],
                symbol=style["symbol"],
                size=8 if source == "measured" else 7,
                line=dict(width=1.3, color=style["color"]),
            ),
            customdata=np.stack([df["study_id"].astype(int).astype(str), df["category"].astype(str)], axis=1),
            hovertemplate="study %{customdata[0]} (%{customdata[1]})<br>"
            + source
            + " involvement %{y:.1f}%<extra></extra>",
        )
    fig.update_xaxes(tickvals=list(range(len(cats))), ticktext=cats, range=[-0.6, len(cats) - 0.4], title=None)
    fig.update_yaxes(title="lung involvement, %", range=[-3, 103])
    # The band-edge labels sit right of the plot area: leave them a margin (they were clipped at r=10).
    title = "Lung involvement by class" + _sampled(shown, summary)
    return _layout(fig, title, height=430, margin=dict(r=48, **_title_margin(title)))


def lesion_lung_figure(summary: pd.DataFrame) -> go.Figure:
    """Lesion volume against lung volume: measured (mask) and estimated (estimate % x lung volume)."""
    fig = go.Figure()
    ok = summary[pd.to_numeric(summary["lung_ml"], errors="coerce").notna()]
    est = ok.assign(est_ml=ok["estimated_involvement_pct"].astype(float) / 100.0 * ok["lung_ml"].astype(float))
    est = sample_studies(est)
    for source, frame, col in (("estimated", est, "est_ml"), ("measured", est, "lesion_ml")):
        frame = frame[pd.to_numeric(frame[col], errors="coerce").notna()]
        if frame.empty:
            continue
        style = SOURCE_STYLE[source]
        _legend_key(fig, style["name"], style["symbol"], group=source)
        fig.add_scatter(
            x=frame["lung_ml"].astype(float),
            y=frame[col].astype(float),
            mode="markers",
            name=style["name"],
            legendgroup=source,
            showlegend=False,
            marker=dict(
                color=[_color(c) for c in frame["category"]],
                symbol=style["symbol"],
                size=8,
                line=dict(width=1.3, color=[_color(c) for c in frame["category"]]),
            ),
            customdata=np.stack([frame["study_id"].astype(int).astype(str), frame["category"].astype(str)], axis=1),
            hovertemplate="study %{customdata[0]} (%{customdata[1]})<br>lung %{x:.0f} mL<br>"
            + source
            + " lesion %{y:.0f} mL<extra></extra>",
        )
    fig.update_xaxes(title="lung volume, mL", rangemode="tozero")
    fig.update_yaxes(title="lesion volume, mL", rangemode="tozero")
    title = "Lesion volume against lung volume (colour = class)" + _sampled(est, ok)
    return _layout(fig, title, margin=_title_margin(title))


def slices_figure(summary: pd.DataFrame, classes: tuple[str, ...]) -> go.Figure:
    """Number of axial slices per study, stacked by class."""
    fig = go.Figure()
    ok = summary[pd.to_numeric(summary["n_slices"], errors="coerce").notna()]
    cats = list(classes) + sorted(set(ok["category"].astype(str)) - set(classes))
    for c in cats:
        sub = ok[ok["category"].astype(str) == c]
        if sub.empty:
            continue
        counts = sub["n_slices"].astype(int).value_counts().sort_index()
        fig.add_bar(
            x=counts.index.to_numpy(),
            y=counts.to_numpy(),
            name=c,
            marker_color=_color(c),
            customdata=np.full((len(counts), 1), c),
            hovertemplate=c + ": %{y} studies with %{x} slices<extra></extra>",
        )
    fig.update_xaxes(title="axial slices", dtick=1 if len(ok) and ok["n_slices"].nunique() < 25 else None)
    # Counts of studies are whole numbers: no 0.5 ticks. Small stacks get a tick per study; taller ones
    # keep plotly's automatic (integer) ticks, forced to integers with tickformat.
    tallest = int(ok["n_slices"].astype(int).value_counts().max()) if len(ok) else 0
    fig.update_yaxes(
        title="studies", tickformat=",d", rangemode="tozero", **({"dtick": 1, "tick0": 0} if tallest <= 10 else {})
    )
    return _layout(fig, "Slices per study", barmode="stack")


def hu_histogram_figure(
    edges: np.ndarray, hist: pd.DataFrame, categories: pd.Series, classes: tuple[str, ...]
) -> go.Figure:
    """Mean normalised lung HU histogram per class (each study's histogram sums to 1 before averaging)."""
    fig = go.Figure()
    edges = np.asarray(edges, dtype=float)
    centres = (edges[:-1] + edges[1:]) / 2.0
    cat = categories.astype(str)
    cats = list(classes) + sorted(set(cat) - set(classes))
    data = hist.to_numpy(dtype=float)
    totals = data.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.where(totals > 0, data / np.where(totals > 0, totals, 1.0), np.nan)
    ids = hist.index.to_numpy()
    for c in cats:
        rows = np.isin(ids, cat[cat == c].index.to_numpy())
        rows &= ~np.isnan(norm).all(axis=1)
        if not rows.any():
            continue
        mean = np.nanmean(norm[rows], axis=0) * 100.0
        fig.add_scatter(
            x=centres,
            y=mean,
            mode="lines",
            name=f"{c} (n={int(rows.sum())})",
            line=dict(color=_color(c), width=2),
            customdata=np.full((len(centres), 1), c),
            hovertemplate=c + ": %{y:.2f}% of lung voxels at %{x:.0f} HU<extra></extra>",
        )
    fig.add_vrect(
        x0=-700,
        x1=-130,
        fillcolor="#e3c94f",
        opacity=0.08,
        line_width=0,
        annotation_text="lesion HU range",
        annotation_position="top left",
        annotation_font_color="#9aa0a6",
    )
    fig.update_xaxes(title="HU inside the lungs")
    fig.update_yaxes(title="% of lung voxels per 16-HU bin")
    return _layout(fig, "Lung HU histogram by class (mean of normalised histograms)", hovermode="x unified")


def agreement_figure(summary: pd.DataFrame) -> go.Figure:
    """Estimated against measured involvement where a mask exists, with the identity line and band edges."""
    both = summary[
        pd.to_numeric(summary["involvement_pct"], errors="coerce").notna()
        & pd.to_numeric(summary["estimated_involvement_pct"], errors="coerce").notna()
    ]
    fig = go.Figure()
    top = (
        float(
            max(
                5.0,
                both["involvement_pct"].max() if len(both) else 0.0,
                both["estimated_involvement_pct"].max() if len(both) else 0.0,
            )
        )
        * 1.08
    )
    fig.add_scatter(
        x=[0, top],
        y=[0, top],
        mode="lines",
        name="estimate = measurement",
        line=dict(color="#9aa0a6", dash="dot", width=1),
        hoverinfo="skip",
    )
    _legend_key(fig, "studies with a mask", "circle", group="studies")
    every = both
    both = sample_studies(both)
    fig.add_scatter(
        x=both["involvement_pct"].astype(float),
        y=both["estimated_involvement_pct"].astype(float),
        mode="markers",
        name="studies with a mask",
        legendgroup="studies",
        showlegend=False,
        marker=dict(color=[_color(c) for c in both["category"]], size=9, line=dict(width=1, color="#0f1216")),
        customdata=np.stack([both["study_id"].astype(int).astype(str), both["category"].astype(str)], axis=1)
        if len(both)
        else None,
        hovertemplate="study %{customdata[0]} (%{customdata[1]})<br>measured %{x:.1f}%<br>"
        "estimated %{y:.1f}%<extra></extra>",
    )
    fig.update_xaxes(title="measured involvement (mask), %", range=[0, top])
    fig.update_yaxes(title="estimated involvement (HU), %", range=[0, top])
    title = "Estimated against measured involvement (colour = class)" + _sampled(both, every)
    return _layout(fig, title, margin=_title_margin(title))


@_cached_figure
def confusion_figure(
    matrix: tuple[tuple[int, ...], ...], categories: tuple[str, ...], label_a: str, label_b: str
) -> go.Figure:
    """Heat map of a confusion matrix (rows: rater A, columns: rater B), one clickable mark per cell.

    Plotly heat maps take no point selection, so each cell also carries an invisible square marker with
    ``customdata = [row, column, count]``: a click on a cell selects it and the page opens its studies.
    Rater labels are user text: they go into axis titles as text (plotly renders no HTML from them here,
    because ``<`` and ``&`` are escaped first).
    """
    import html

    z = np.asarray(matrix, dtype=float)
    k = len(categories)
    cats = [str(c) for c in categories]
    a, b = html.escape(str(label_a)), html.escape(str(label_b))
    fig = go.Figure()
    fig.add_heatmap(
        z=z,
        x=cats,
        y=cats,
        colorscale=[[0.0, "#1b2027"], [0.15, "#1f3b5c"], [1.0, "#4c9aff"]],
        zmin=0,
        zmax=max(1.0, float(z.max())),
        showscale=False,
        hoverinfo="skip",
        xgap=2,
        ygap=2,
    )
    ii, jj = np.indices((k, k))
    counts = z.astype(int)
    fig.add_scatter(
        x=[cats[j] for j in jj.ravel()],
        y=[cats[i] for i in ii.ravel()],
        mode="markers+text",
        text=[str(v) if v else "" for v in counts.ravel()],
        textfont=dict(size=14, color="#e8eaed"),
        marker=dict(symbol="square", size=46, color="rgba(0,0,0,0.01)", line=dict(width=0)),
        customdata=np.stack([ii.ravel(), jj.ravel(), counts.ravel()], axis=1),
        hovertemplate=f"{a}: %{{y}}<br>{b}: %{{x}}<br>%{{customdata[2]}} studies<extra></extra>",
        showlegend=False,
    )
    fig.update_xaxes(title=b, type="category", side="bottom", categoryorder="array", categoryarray=cats)
    fig.update_yaxes(title=a, type="category", autorange="reversed", categoryorder="array", categoryarray=cats)
    return _layout(
        fig, "Confusion matrix (click a cell to open its studies)", height=420, margin=dict(l=10, r=10, t=50, b=10)
    )


def to_json(fig: go.Figure) -> str:
    """A figure as plotly JSON text (numeric arrays as base64 typed arrays: compact, and copied as one string)."""
    import plotly.io as pio

    return pio.to_json(fig, validate=False)


def from_json(text: str) -> go.Figure:
    """The figure of :func:`to_json`, rebuilt without validation (it was validated when it was built).

    A new figure on every call: Streamlit's select-on-click needs a fresh figure object (see ``_cached_figure``).
    """
    return go.Figure(json.loads(text), _validate=False)


def page_figures(
    summary: pd.DataFrame,
    edges: np.ndarray,
    hist: pd.DataFrame,
    classes: tuple[str, ...],
    band_edges: tuple[float, ...],
    published: dict[str, int],
) -> dict[str, str]:
    """Every figure of the distributions page as JSON text (:func:`to_json`), keyed by chart name.

    ``"classes"`` always; ``"involvement"``, ``"lesion_lung"`` and ``"slices"`` when a study is summarised;
    ``"hu"`` when a lung histogram is cached; ``"agreement"`` when a study has both a mask and an estimate.
    """
    from components.tables import class_counts

    out = {"classes": to_json(class_counts_figure(class_counts(summary, classes, published)))}
    ok = summary[summary["status"] == "ok"]
    if ok.empty:
        return out
    out["involvement"] = to_json(involvement_figure(ok, classes, band_edges))
    out["lesion_lung"] = to_json(lesion_lung_figure(ok))
    out["slices"] = to_json(slices_figure(ok, classes))
    if not hist.empty:
        out["hu"] = to_json(hu_histogram_figure(edges, hist, ok.set_index("study_id")["category"], classes))
    both = ok[ok["involvement_pct"].notna() & ok["estimated_involvement_pct"].notna()]
    if not both.empty:
        out["agreement"] = to_json(agreement_figure(both))
    return out


# A browser piece with no UI: it answers (a trigger value, which reruns the enclosing fragment) once the page's
# first Plotly chart is drawn, or after WHEN_DRAWN_TIMEOUT_MS whatever happens (so the page never waits for ever).
WHEN_DRAWN_TIMEOUT_MS = 4000
_WHEN_DRAWN_JS = """
export default function (component) {
  const { setTriggerValue, parentElement } = component;
  if (parentElement.__mosmedWaiting) return;
  parentElement.__mosmedWaiting = true;
  const t0 = performance.now();
  const answer = () => requestAnimationFrame(() => setTriggerValue("drawn", true));
  const look = () => {
    if (!parentElement.isConnected) return;
    if (document.querySelector(".js-plotly-plot .main-svg") || performance.now() - t0 > TIMEOUT_MS) answer();
    else setTimeout(look, 25);
  };
  look();
}
""".replace("TIMEOUT_MS", str(WHEN_DRAWN_TIMEOUT_MS))
_WHEN_DRAWN = st.components.v2.component("mosmed_when_drawn", html="", js=_WHEN_DRAWN_JS)


def when_drawn(key: str) -> bool:
    """Mount the piece; True in the run its answer causes (the first chart is on screen), else False."""
    result = _WHEN_DRAWN(key=key, on_drawn_change=lambda: None)
    return bool(getattr(result, "drawn", False))


def clicked(event) -> list[list[str]]:
    """The ``customdata`` of the points selected in a ``st.plotly_chart(on_select="rerun")`` event."""
    try:
        points = event["selection"]["points"]
    except (KeyError, TypeError, AttributeError):
        return []
    out = []
    for p in points or []:
        cd = p.get("customdata") if isinstance(p, dict) else None
        if cd is None:
            continue
        if isinstance(cd, dict):  # a numeric customdata row arrives as {"0": .., "1": ..}
            cd = [cd[k] for k in sorted(cd, key=lambda k: int(k) if str(k).isdigit() else 0)]
        out.append([str(v) for v in (cd if isinstance(cd, (list, tuple)) else [cd])])
    return out
