"""The networks and how they are trained: MLPs and small CNNs with seeded initialisation (``models``),
the flat-minima optimisers Entropy-SGD, replicated SGD and smoothed-error descent (``optim``), and
the plain training loop with its divergence check (``train``). It may import from ``core``,
``stats`` and ``data``.
"""
