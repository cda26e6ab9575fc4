"""flatminima: a reproducible study of loss-landscape claims in deep learning.

The package is layered; each folder imports only from the folders listed before it:

``core``, ``stats``, ``data``, ``nn``, ``curvature``, ``landscape`` and ``quant``, ``protocol``,
``claims``, ``pages``, ``run``, ``book``, then ``cli``. ``tests/test_layers.py`` enforces it.
"""
__version__ = "0.1.0"
