"""Building the Jupyter Book: the generated dashboard, status and run-time pages (``pages``), the table
of contents with published sweeps and the build command (``build``), and the Sphinx extension for
repository buttons and the bibliography style (``sphinx_ext``). It may import from every layer up to
``run``; only ``cli`` imports it.
"""
