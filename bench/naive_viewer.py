"""The anchor of the viewer benchmark: the naive Streamlit viewer (a slider and ``st.image``, a rerun per slice).

Served by its own ``streamlit run`` in bench/sect_viewer.py on the same full-size dataset and cache; every slice
step is a rerun that renders the slice on the server (lung window) and sends a PNG.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from mosmed.config import default_cache_root, default_data_root  # noqa: E402
from mosmed.dataset import Dataset  # noqa: E402
from mosmed.render import render_png  # noqa: E402
from mosmed.windowing import PRESETS  # noqa: E402


@st.cache_resource
def _study(study_id: int):
    root, _ = default_data_root()
    return Dataset(root, default_cache_root()).open_study(study_id)


sid = int(st.query_params.get("study", "255"))
study = _study(sid)
k = st.slider("Slice", 1, int(study.volume.shape[0]), int(study.volume.shape[0]) // 2, key="naive.slice")
st.image(render_png(study.volume, study.spacing, "axial", k - 1, PRESETS["lung"]), caption=f"slice {k}")
