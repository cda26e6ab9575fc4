"""One module per claim: its validated ``Params`` (with presets) and the protocol the notebook runs.

The registry of claims is :data:`flatminima.claims.registry.CLAIMS`. The layer may import from every
layer up to ``protocol``; ``pages``, ``run``, ``book`` and ``cli`` build on it.
"""
