"""The distributions page's "Reader agreement" section: Cohen's kappa per reader against the registry class
and per pair of readers (unweighted and linear-weighted, 95 % interval, n), the confusion matrix as a heat
map, and each cell opening its studies in the registry."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from components import charts, review_db, review_facets
from components.markup import md_escape

__all__ = ["agreement_section", "kappa_table"]

PICK_KEY = "dist.w.agreement_pick"
CELL_KEY = "dist.w.agreement_cell"


def _k(v) -> float | None:
    return None if v is None else round(float(v), 3)


def kappa_table(comps) -> pd.DataFrame:
    """One row per comparison: raters, n, kappa and interval, linear-weighted kappa and interval."""

    def ci(k) -> str:
        return "—" if k.kappa is None else f"{k.ci_low:.2f} to {k.ci_high:.2f}"

    return pd.DataFrame(
        [
            {
                "rater_a": c.label_a,
                "rater_b": c.label_b,
                "n": c.n,
                "kappa": _k(c.unweighted.kappa),
                "kappa_ci": ci(c.unweighted),
                "kappa_linear": _k(c.linear.kappa),
                "kappa_linear_ci": ci(c.linear),
                "note": c.unweighted.reason,
            }
            for c in comps
        ],
        columns=["rater_a", "rater_b", "n", "kappa", "kappa_ci", "kappa_linear", "kappa_linear_ci", "note"],
    )


def agreement_section(ds: Any, *, draw_chart: bool = True) -> None:
    """Draw the section (its own messages when there is no database or no review yet).

    ``draw_chart=False`` leaves a placeholder where the confusion heat map goes (the distributions page draws its
    charts below the class chart once that one is on screen); the table and the pickers are drawn either way.
    """
    from mosmed.reviews.agreement import comparisons

    st.subheader("Reader agreement")
    store, problem = review_db.get_store(ds)
    if store is None:
        st.info(md_escape(f"Reader agreement is unavailable: {problem}"), icon=":material/cloud_off:")
        return
    try:
        latest = store.latest(review_db.identity(ds))
    except Exception as e:  # noqa: BLE001
        st.info(md_escape(f"Reader agreement is unavailable: {e}"), icon=":material/cloud_off:")
        return
    cats = ds.registry.df.set_index("study_id")["category"].astype(str)
    comps = comparisons(latest, cats)
    if not comps:
        st.info(
            "No reader has graded a study of this dataset yet: grade studies in the viewer's review panel "
            "(or with `python -m mosmed review add`).",
            icon=":material/rate_review:",
        )
        return
    st.caption(
        'Cohen\'s kappa on the studies both raters graded CT-0..CT-4 ("cannot grade" left out), with '
        "95 % intervals (Fleiss, Cohen & Everitt large-sample SE). Linear weights give partial credit to "
        "near misses: w = 1 − |i − j| / 4 (one class apart counts 0.75)."
    )
    table = kappa_table(comps)
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        key="dist.kappa",
        placeholder="—",
        column_config={
            "rater_a": st.column_config.TextColumn("Rater A"),
            "rater_b": st.column_config.TextColumn("Rater B"),
            "n": st.column_config.NumberColumn("n", format="%d", help="Studies graded CT-0..CT-4 by both"),
            "kappa": st.column_config.NumberColumn("κ", format="%.3f"),
            "kappa_ci": st.column_config.TextColumn("κ 95 % CI"),
            "kappa_linear": st.column_config.NumberColumn("κ linear", format="%.3f"),
            "kappa_linear_ci": st.column_config.TextColumn("κ linear 95 % CI"),
            "note": st.column_config.TextColumn("Note", width="medium"),
        },
    )
    labels = [f"{c.label_a} × {c.label_b} (n={c.n})" for c in comps]
    if st.session_state.get(PICK_KEY) not in range(len(comps)):
        st.session_state[PICK_KEY] = 0
    g1, g2 = st.columns([3, 2], gap="large")
    with g2:
        i = st.selectbox("Confusion matrix of", list(range(len(comps))), key=PICK_KEY, format_func=labels.__getitem__)
        comp = comps[int(i)]
        cells = [(k, v) for k, v in sorted(comp.cells.items()) if v]
        cat = comp.categories
        cell_labels = {
            f"{a}|{b}": f"{comp.label_a} {cat[a]} × {comp.label_b} {cat[b]} "
            f"({len(v)} {'study' if len(v) == 1 else 'studies'})"
            for (a, b), v in cells
        }
        pick = st.selectbox(
            "Open the studies of a cell",
            ["—"] + list(cell_labels),
            key=CELL_KEY,
            format_func=lambda k: "—" if k == "—" else cell_labels[k],
        )
        st.caption(
            md_escape(
                f"Rows: {comp.label_a}; columns: {comp.label_b}. The diagonal is agreement. "
                "Click a cell (or pick it above) to list its studies in the registry."
            )
        )
    with g1:
        ev = None
        if not draw_chart:
            st.skeleton(height=420)
        else:
            fig = charts.confusion_figure(
                tuple(tuple(int(v) for v in row) for row in comp.matrix), tuple(cat), comp.label_a, comp.label_b
            )
            ev = st.plotly_chart(
                fig,
                key=f"dist.confusion.{int(i)}",
                on_select="rerun",
                selection_mode="points",
                config={"displayModeBar": False},
            )
    for hit in charts.clicked(ev):
        try:
            a, b = int(float(hit[0])), int(float(hit[1]))
        except (ValueError, IndexError):
            continue
        ids = comp.cells.get((a, b))
        if ids:
            review_facets.open_in_registry(ids, f"{comp.label_a} {cat[a]} × {comp.label_b} {cat[b]}")
    if pick and pick != "—":
        a, b = (int(x) for x in pick.split("|"))
        st.session_state.pop(CELL_KEY, None)
        review_facets.open_in_registry(comp.cells[(a, b)], f"{comp.label_a} {cat[a]} × {comp.label_b} {cat[b]}")
