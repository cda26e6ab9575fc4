"""The output of a chapter: Markdown for verdicts, tables and badges (``markdown``) and the helpers a
notebook calls to show them (``notebook``). It may import from every layer up to ``claims``.
"""
