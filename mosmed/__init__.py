"""MosMed Explorer core: registry, volumes, orientation, windowing, rendering, lung statistics,
the data cache, the synthetic dataset generator and the command line.

Nothing in this package imports Streamlit; the app's ``components/`` and ``pages/`` build on it.
"""

__version__ = "0.1.0"
