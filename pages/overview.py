"""Overview: what the open dataset holds, what is wrong with it, the paper's severity table, and (MosMedData) the
dataset card."""

from __future__ import annotations

import os

import pandas as pd
import streamlit as st

from components import paper, state, tables
from components.markup import md_escape

state.require_frame()  # a deep link on a fresh server must still get the frame (see state.require_frame)
from components.sidebar import format_bytes

st.title("MosMed Explorer")
ds = state.get_dataset()
if ds is None:
    st.info(
        "Choose a dataset folder in the sidebar (Open another dataset), or press Default to go back to the demo.",
        icon=":material/arrow_back:",
    )
    st.stop()

from mosmed import severity  # noqa: E402


@st.cache_data(max_entries=8, show_spinner=False)
def _size_on_disk(paths: tuple[str, ...]) -> tuple[int, int]:
    """Bytes and number of the study and mask files that exist (stat only, nothing is read)."""
    total = found = 0
    for p in paths:
        try:
            total += os.stat(p).st_size
            found += 1
        except OSError:
            continue
    return total, found


_, is_demo = state.dataset_choice()
# The folder's name and the registry file name are untrusted text: escaped, never rendered as links or images.
st.caption(
    md_escape(f"{state.dataset_label()} · registry: {os.path.basename(ds.registry.source) or ds.registry.source}")
)

summary = state.summary_df(ds)
reg = ds.registry.df
paths = tuple(str(p) for p in pd.concat([reg["study_path"], reg["mask_path"]]).dropna().tolist())
size, n_files = _size_on_disk(paths)
n = len(summary)
n_err = int((summary["status"] == "error").sum())
n_pending = int((summary["status"] == "pending").sum())
n_masks = int(summary["has_mask"].astype(bool).sum())

c = st.columns(5)
c[0].metric("Studies", f"{n}", help="Rows of the registry that could be kept")
c[1].metric("With lesion mask", f"{n_masks}")
c[2].metric("With errors", f"{n_err}", help="Missing or unreadable study, unsafe path, mask problem …")
c[3].metric("Not yet summarised", f"{n_pending}", help="Build the cache in the sidebar to summarise them")
c[4].metric("Size on disk", format_bytes(size), help=f"{n_files} study and mask files found")

if ds.registry.problems:
    st.warning(
        f"{len(ds.registry.problems)} registry rows could not be kept (no usable id, duplicate id …); "
        "see the Registry page.",
        icon=":material/report:",
    )
if n_pending:
    st.info(
        f"{n_pending} studies are not summarised yet: press Build cache in the sidebar.",
        icon=":material/hourglass_top:",
    )

# The class table needs ~420 px for its six columns (a 1280-px window leaves ~400 px for half the page).
left, right = st.columns([3, 2], gap="large")
with left:
    st.subheader("Classes")
    counts = tables.class_counts(summary, severity.CLASSES, dict(severity.PUBLISHED_COUNTS))
    names = {r.category: r.name for r in severity.SEVERITY_TABLE}
    counts.insert(1, "severity", counts["class"].map(names).fillna("unknown class"))
    st.dataframe(
        counts,
        hide_index=True,
        width="stretch",
        placeholder="—",
        column_config={
            "class": "Class",
            "severity": "Severity",
            "studies": "Studies",
            "percent": st.column_config.NumberColumn("% here", format="%.1f%%"),
            "published": st.column_config.NumberColumn("MosMedData", help="Published counts (1110 studies)"),
            "published_percent": st.column_config.NumberColumn("% published", format="%.1f%%"),
        },
    )
    by_class = summary.groupby(summary["category"].astype(str)).agg(
        masks=("has_mask", "sum"), errors=("status", lambda s: int((s == "error").sum()))
    )
    st.caption(
        "Masks per class: " + ", ".join(f"{k} {int(v)}" for k, v in by_class["masks"].items() if v)
        if n_masks
        else "No study in this dataset has a lesion mask."
    )

with right:
    st.subheader("Studies with errors")
    if n_err == 0:
        st.success("Every study in the registry could be read.", icon=":material/check_circle:")
    else:
        bad = summary[summary["status"] == "error"][["study_id", "category", "error", "study_file"]]
        st.caption(f"{n_err} studies cannot be shown; every other study keeps working. Each is listed with its reason.")
        st.dataframe(
            bad,
            hide_index=True,
            width="stretch",
            height=min(400, 38 + 35 * len(bad)),
            column_config={
                "study_id": st.column_config.NumberColumn("Study", format="%d"),
                "category": "Class",
                "error": st.column_config.TextColumn("Problem", width="large"),
                "study_file": "File",
            },
        )

st.subheader("Severity scale (CT-0 … CT-4)")
# The paper's own table (P1), with the cells where the journal version (P2) differs noted under it.
paper.severity_table()

st.subheader("About this dataset")
if is_demo:
    st.info(
        "This is the generated demo: synthetic chest CT phantoms in the MosMedData layout (registry, "
        "studies/CT-0..CT-4, masks), with lesions sized to each class. It is not patient data and says "
        "nothing about COVID-19; open a real dataset with MOSMED_DATA or the sidebar.",
        icon=":material/science:",
    )
elif ds.is_mosmed:
    st.markdown(f"**{severity.MOSMED_TITLE}**")
    st.markdown(f"Link: {severity.MOSMED_LINK}")
    paper.dataset_card()
    st.markdown("**Licence**")
    st.write(severity.MOSMED_LICENCE)
    st.markdown("**Citation**")
    st.code(severity.MOSMED_CITATION, language=None, wrap_lines=True)
else:
    st.info(
        "This dataset does not have MosMedData's published layout, so no licence or citation is shown; "
        "check its own terms of use.",
        icon=":material/info:",
    )
