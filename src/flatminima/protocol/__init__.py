"""What every claim shares: the claim contract (``contract``), validated parameters with presets
(``params``), the result record a run writes (``record``) and seed replicates (``replicates``). It
may import from every layer up to ``landscape`` and ``quant``.
"""
