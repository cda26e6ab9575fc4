"""The package's one user-input error, raised before any work is done."""
from __future__ import annotations


class ParameterError(ValueError):
    """A notebook or command-line parameter is unknown or has a value outside what it accepts.

    The message names the parameter and what it accepts; ``flatminima`` commands exit with code 2.
    """
