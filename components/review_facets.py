"""Review pieces of the registry page: the per-study review columns, and opening the registry on a set of
study ids from another page (an agreement cell).

The registry keeps an "id set" (:data:`ID_SET_KEY`: a label and the ids) besides its typed id search, so a
cell with hundreds of studies does not have to fit in the 200-character search box.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd
import streamlit as st

from components import review_db, state

__all__ = ["ID_SET_KEY", "APPLY_ALL_KEY", "review_columns", "open_in_registry"]

#: Session key: ``{"label": str, "ids": [int, ...]}`` restricting the registry (set by :func:`open_in_registry`).
ID_SET_KEY = "registry.filter.id_set"
#: Session flag: the registry page drops its facet widgets' state and re-reads every stored facet.
APPLY_ALL_KEY = "registry.filter.apply_all"
#: Stored facet keys the registry page reads (reset by open_in_registry so the id set is shown whole).
FACET_STORES = (
    "registry.filter.class",
    "registry.filter.mask",
    "registry.filter.source",
    "registry.filter.range",
    "registry.filter.ids",
    "registry.filter.status",
    "registry.filter.review",
    "registry.filter.flags",
    "registry.filter.disagree",
)


def review_columns(ds: Any, reader) -> tuple[pd.DataFrame | None, pd.DataFrame | None, str | None]:
    """``(per-study review frame, latest reviews, problem)`` for the open dataset and the session's reader."""
    from mosmed.reviews.store import per_study

    store, problem = review_db.get_store(ds)
    if store is None:
        return None, None, problem
    try:
        latest = store.latest(review_db.identity(ds))
    except Exception as e:  # noqa: BLE001 - the database went away: the registry still lists the studies
        return None, None, str(e)
    cats = ds.registry.df.set_index("study_id")["category"].astype(str)
    return per_study(latest, reader.key if reader is not None else None, cats), latest, None


def open_in_registry(ids: Iterable[int], label: str) -> None:
    """Show exactly these studies in the registry (every other facet reset) and switch to it."""
    for key in FACET_STORES:
        st.session_state.pop(key, None)
    st.session_state[ID_SET_KEY] = {"label": str(label)[:300], "ids": sorted({int(i) for i in ids})}
    st.session_state[APPLY_ALL_KEY] = True
    st.query_params.clear()
    st.switch_page(state.page("registry"))
