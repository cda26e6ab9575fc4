"""Networks with quantized activations and the gradients that train them: quantizers, surrogate
(straight-through) gradients and BinaryDuo decoupling (``quantize``), and the reference gradients
(coordinate discrete gradient, Gaussian smoothing) that measure the surrogates' mismatch
(``mismatch``). It may import from ``core``, ``stats``, ``data``, ``nn`` and ``curvature``, not from
its sibling ``landscape``.
"""
