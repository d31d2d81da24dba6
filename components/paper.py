"""What the MosMedData papers say, as Streamlit pieces: the severity table, one of its rows as a card, and the
dataset card.

The text comes from :mod:`mosmed.severity` (the P1 table, with P2's differences) and :mod:`mosmed.paperfacts`.
It is shown literally: every cell goes through :func:`components.markup.md_escape` (``st.table`` and
``st.markdown`` render Markdown, and "A. t° < 38.0 °C" or "25–50 %" must not turn into lists or directives);
no HTML. Usage::

    from components import paper
    paper.severity_table()                 # overview, teaching page
    paper.severity_row_card("CT-3")        # a quiz answer
    paper.dataset_card()                   # overview, when the dataset is MosMedData
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
import streamlit as st

from components.markup import md_escape
from mosmed import paperfacts, severity

__all__ = ["severity_frame", "p2_notes", "severity_table", "severity_row_card", "dataset_card"]

_FIELDS = ("ct_findings", "clinical", "routing")
_MARK = "†"  # marks a cell that P2 reads otherwise (explained under the table); in every font


def severity_frame(categories: Iterable[str] | None = None, *, mark_p2: bool = True) -> pd.DataFrame:
    """The paper's table as a DataFrame with the paper's column headers, plain (unescaped) text.

    Parameters
    ----------
    categories : classes to keep, in this order (default all five); unknown ones raise ``KeyError``.
    mark_p2 : append a numbered marker to each cell where P2 differs (see :func:`p2_notes`).
    """
    cats = list(categories) if categories is not None else list(severity.CLASSES)
    notes = {cell: i for i, (cells, _) in enumerate(_grouped_notes(cats), 1) for cell in cells} if mark_p2 else {}
    rows = []
    for c in cats:
        r = severity.severity_row(c)
        row = {severity.SEVERITY_COLUMNS["category"]: r.category, severity.SEVERITY_COLUMNS["name"]: r.name}
        for f in _FIELDS:
            text = getattr(r, f)
            if (c, f) in notes:
                text = f"{text} {_MARK}{notes[(c, f)]}"
            row[severity.SEVERITY_COLUMNS[f]] = text
        rows.append(row)
    return pd.DataFrame(rows)


def p2_notes(categories: Iterable[str] | None = None) -> list[tuple[str, str, str]]:
    """``(class, field, note)`` for each cell of the given classes where P2 reads otherwise, in table order."""
    cats = list(categories) if categories is not None else list(severity.CLASSES)
    out = []
    for c in cats:
        r = severity.severity_row(c)
        for f in _FIELDS:
            note = r.p2_note(f)
            if note:
                out.append((c, f, note))
    return out


def _grouped_notes(categories: list[str]) -> list[tuple[list[tuple[str, str]], str]]:
    """P2's notes with the cells each applies to (one note for cells that P2 changes the same way)."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for c, f, note in p2_notes(categories):
        groups.setdefault(note, []).append((c, f))
    return [(cells, note) for note, cells in groups.items()]


def _escaped(frame: pd.DataFrame) -> pd.DataFrame:
    esc = frame.map(md_escape)
    esc.columns = [md_escape(c) for c in frame.columns]
    return esc


def severity_table(categories: Iterable[str] | None = None, *, show_source: bool = True) -> None:
    """The severity table of P1 (all classes, or ``categories``), its source, and P2's differences under it."""
    cats = list(categories) if categories is not None else list(severity.CLASSES)
    st.markdown(f"**{md_escape(severity.SEVERITY_TABLE_TITLE)}** (P1)")
    st.table(_escaped(severity_frame(cats)), hide_index=True)
    notes = _grouped_notes(cats)
    if notes:
        lines = [
            f"{_MARK}{i} " + "; ".join(f"{c} {severity.SEVERITY_COLUMNS[f]}" for c, f in cells) + f": {n}"
            for i, (cells, n) in enumerate(notes, 1)
        ]
        st.caption(md_escape(f"Where P2 differs: {severity.SEVERITY_P2_NOTE}"))
        for line in lines:
            st.caption(md_escape(line))
    if show_source:
        st.caption(md_escape(severity.SEVERITY_SOURCE_NOTE))


def severity_row_card(category: str, *, title: str | None = None) -> None:
    """One class's row of the paper's table as a bordered card (CT findings, clinical data, routing), with P2's
    differences under the cells they concern. An unknown class gets a warning naming it, not an exception."""
    try:
        r = severity.severity_row(str(category))
    except KeyError:
        st.warning(
            md_escape(f"Class {category} is not in the paper's severity table (CT-0 to CT-4)."), icon=":material/help:"
        )
        return
    with st.container(border=True):
        st.markdown(f"**{md_escape(title or f'{r.category} · {r.name}')}**")
        for f in _FIELDS:
            st.markdown(f"**{md_escape(severity.SEVERITY_COLUMNS[f].capitalize())}:** {md_escape(getattr(r, f))}")
            note = r.p2_note(f)
            if note:
                st.caption(md_escape(note))
        st.caption(md_escape(f"Source: P1, table \u201c{severity.SEVERITY_TABLE_TITLE}\u201d."))


def dataset_card() -> None:
    """MosMedData as its papers describe it: population, collection, acquisition (P2 Table 2), preprocessing,
    annotation principles, the two class notes and the sources."""
    with st.container(border=True):
        st.markdown("**MosMedData, as its papers describe it**")
        for section in paperfacts.DATASET_CARD:
            st.markdown(f"**{md_escape(section.title)}**")
            frame = pd.DataFrame([{"item": f.label, "value": f.value, "source": f.source} for f in section.facts])
            st.table(_escaped(frame), hide_index=True, hide_header=True)
        st.markdown("**About the classes**")
        for note in paperfacts.CLASS_NOTES:
            st.markdown(f"- {md_escape(note)}")
        for src in paperfacts.SOURCES:
            st.caption(md_escape(f"{src.key}: {src.citation} {src.link}"))
