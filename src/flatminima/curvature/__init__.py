"""Second-order quantities of a training loss at a point: Hessian-vector products, Lanczos and power
iteration, Hutchinson's trace and the stochastic Lanczos spectral density (``hessian``), and the
sharpness measures of Keskar, Rangamani and Dinh with the reparametrisations that change them
(``sharpness``). It may import from ``core``, ``stats``, ``data`` and ``nn``.
"""
