"""MosMed Explorer: the router and frame.

``streamlit run app.py`` opens the overview of the open dataset: the generated demo by default (generated with
its cache on the first start), a dataset root given by ``MOSMED_DATA``, or one typed in the sidebar. This file
only sets the page up, draws the shared sidebar and runs the selected page; the pages live in ``pages/`` and
their pieces in ``components/``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import streamlit as st

# `streamlit run app.py` puts the script's folder on sys.path; AppTest and other launchers may not.
_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

_LOG = logging.getLogger("mosmed.app")


def main() -> None:
    """Set the page up, prepare the demo on a first start, draw the sidebar and run the selected page."""
    from components import sidebar, state  # here, not at import: spawned workers import this module too
    from components.markup import md_escape

    # No state.require_frame() here: on a fresh server Streamlit's legacy mode runs this script as its default
    # page, and the st.navigation call below is what leaves that mode; only page files need the guard.
    # An emoji favicon: a ":material/..." page icon makes every browser fetch an SVG from a Google font host,
    # and nothing viewed here should reach out of the machine.
    st.set_page_config(page_title="MosMed Explorer", page_icon="🫁", layout="wide", initial_sidebar_state="expanded")
    pages_dir = _HERE / state.PAGES_DIR
    pages = {
        "overview": st.Page(
            str(pages_dir / "overview.py"),
            title="Overview",
            icon=":material/dashboard:",
            default=True,
            url_path="overview",
        ),
        "registry": st.Page(
            str(pages_dir / "registry.py"), title="Registry", icon=":material/table_rows:", url_path="registry"
        ),
        "viewer": st.Page(str(pages_dir / "viewer.py"), title="Viewer", icon=":material/radiology:", url_path="viewer"),
        "distributions": st.Page(
            str(pages_dir / "distributions.py"),
            title="Distributions",
            icon=":material/bar_chart:",
            url_path="distributions",
        ),
        "teaching": st.Page(
            str(pages_dir / "teaching.py"), title="Teaching", icon=":material/school:", url_path="teaching"
        ),
    }
    state.register_pages(pages)
    current = st.navigation(
        {
            "Explore": [pages["overview"], pages["registry"], pages["viewer"], pages["distributions"]],
            "Teach": [pages["teaching"]],
        }
    )

    # The demo (and its cache) must exist before the sidebar or a page reads it.
    sidebar.first_start()
    with st.sidebar:
        sidebar.render()

    try:
        current.run()
    except Exception as e:  # noqa: BLE001 - Streamlit's rerun/stop signals are BaseException and pass through
        # A bug in one page must not show a traceback (server paths, internals) nor take the other pages down.
        _LOG.exception("page %s failed", current.title)
        st.error(
            md_escape(
                f"The {current.title} page failed: {type(e).__name__}: {e}. The other pages keep "
                "working; the server log has the details."
            ),
            icon=":material/error:",
        )


# Streamlit installs this script as ``__main__``; worker processes started with the "spawn" method (demo
# generation, parallel cache builds) re-import ``__main__`` as ``__mp_main__`` and must not run the app: the
# worker would wait for the demo lock its own parent holds, and the build would hang.
if __name__ != "__mp_main__":
    main()
