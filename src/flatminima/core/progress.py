"""Opt-in progress bars.

``tqdm.notebook`` ignores ``TQDM_DISABLE`` (it forces ``disable=bool(kwarg)``), so bars are
switched off by passing ``disable`` explicitly. Notebooks expose ``show_progress`` (default
False) so executed notebooks and the book stay free of bar output.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

T = TypeVar("T")


def progress(iterable: Iterable[T], *, enabled: bool = False, **kwargs: Any) -> Iterable[T]:
    """Wrap ``iterable`` in a ``tqdm.auto`` bar when ``enabled``; otherwise return it unchanged.

    Parameters
    ----------
    iterable : iterable
        What to iterate over.
    enabled : bool
        Draw a progress bar (off by default, so notebooks and logs stay clean).
    **kwargs
        Passed to ``tqdm`` (``desc``, ``total``, ...).

    Returns
    -------
    iterable
        ``iterable`` itself, or a ``tqdm`` wrapper yielding the same items.
    """
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=False, **kwargs)
