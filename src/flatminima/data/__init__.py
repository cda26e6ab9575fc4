"""The datasets of the study: their names and data root (``registry``), fetching MNIST-like files into
torchvision's layout (``fetch``), loading any dataset as tensors (``loaders``), and the Gaussian-
mixture teacher with its closed-form Bayes-optimal error and linear solution family (``mixture``).
It may import only from ``core`` and ``stats``.
"""
