"""Reusable Streamlit pieces of MosMed Explorer (the only package besides app.py and pages/ that imports streamlit)."""
