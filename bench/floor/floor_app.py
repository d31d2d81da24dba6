"""The floors of a page load in this harness (bench/sect_pages.py): the same server settings, browser and clock as
the app's pages, with nothing of the app in them. ``?v=blank``: a title and a line of text; ``?v=dataframe``:
a title and one 1110-row, 16-column ``st.dataframe`` with row selection; ``?v=plotly``: a title and one Plotly
bar chart with point selection (the smallest page that loads Plotly's script)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

v = st.query_params.get("v", "blank")
st.title("Floor")
if v == "dataframe":
    n = 1110
    df = pd.DataFrame({f"c{i}": np.arange(n, dtype=float) * (i + 1) for i in range(15)})
    df.insert(0, "study_id", np.arange(1, n + 1))
    st.dataframe(
        df, key="t", height=560, row_height=64, on_select="rerun", selection_mode="single-row", hide_index=True
    )
elif v == "plotly":
    fig = go.Figure(go.Bar(x=["CT-0", "CT-1", "CT-2", "CT-3", "CT-4"], y=[254, 684, 125, 45, 2]))
    st.plotly_chart(fig, key="c", on_select="rerun", selection_mode="points", config={"displayModeBar": False})
else:
    st.write("A page with nothing but text.")
