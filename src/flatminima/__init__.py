"""flatminima: a reproducible study of loss-landscape claims in deep learning.

Modules are named for what they compute; see the book's methods page for the maths.
"""
__version__ = "0.1.0"

from .data import Dataset, DatasetNotAvailable, load_dataset  # noqa: E402
from .device import configure_threads, resolve_device  # noqa: E402
from .params import ClaimParams, ParameterError  # noqa: E402
from .presets import CLAIMS, PRESET_NAMES, params_class, resolve  # noqa: E402
from .results import make_record, read_results, write_results  # noqa: E402
from .train import DivergenceError, train  # noqa: E402

__all__ = [
    "CLAIMS", "PRESET_NAMES", "ClaimParams", "Dataset", "DatasetNotAvailable", "DivergenceError",
    "ParameterError", "configure_threads", "load_dataset", "make_record", "params_class",
    "read_results", "resolve", "resolve_device", "train", "write_results", "__version__",
]
