"""One module per claim: its validated ``Params`` (with presets) and the protocol the notebook runs.

The registry of claims is :data:`flatminima.claims.registry.CLAIMS`.
"""
