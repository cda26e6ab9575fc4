"""Executing the study: running a claim's notebook with papermill into the book (``runner``), sweeps
over parameters (``sweep``) and re-execution to verify a chapter (``verify``). It may import from
every layer up to ``pages``.
"""
