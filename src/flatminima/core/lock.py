"""One run per output folder: an exclusive lock on ``<out>/.flatminima.lock``.

Two ``flatminima run`` processes writing into one folder would delete each other's staging
folders and publish into each other's results. :func:`out_lock` takes an advisory
:func:`fcntl.flock` on a lock file inside the folder; the kernel releases it when the holder
exits, however it exits (crash, SIGKILL), so a stale lock file never blocks a later run. The
holder writes its pid, command line and start time into the file, so a second run can say
which process is busy there.

The lock is re-entrant within one process (the runner takes it for a whole batch of claims
and again for each claim; ``flatminima verify`` runs claims in threads into one scratch folder).
"""
from __future__ import annotations

import datetime
import fcntl
import json
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = ".flatminima.lock"

_held: dict[Path, list] = {}  # folder -> [file object, depth]
_guard = threading.Lock()


class FolderBusy(RuntimeError):
    """Another process holds the lock of an output folder."""


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return (f"pid {info['pid']}, `{info['command']}`, started {info['started']}")
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that did not say who it is"


@contextmanager
def out_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold the exclusive lock of ``folder`` (created if missing) for the ``with`` block.

    Raises :class:`FolderBusy` at once, naming the holder, when another process holds it.

    Parameters
    ----------
    folder : str or os.PathLike
        The output folder to lock.

    Yields
    ------
    Path
        ``folder``, resolved to an absolute path.

    Raises
    ------
    FolderBusy
        When another process holds the lock.
    """
    folder = Path(folder).resolve()
    with _guard:
        if folder in _held:
            _held[folder][1] += 1
            entry = _held[folder]
        else:
            entry = None
    if entry is None:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / LOCK_NAME
        fh = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise FolderBusy(f"another flatminima run is writing to {folder} ({_holder(path)}); "
                             f"wait for it to finish, stop it, or pass another --out") from None
        except BaseException:
            fh.close()
            raise
        fh.seek(0)
        fh.truncate()
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        fh.write(json.dumps({"pid": os.getpid(), "command": " ".join(["flatminima", *sys.argv[1:]]),
                             "started": now}) + "\n")
        fh.flush()
        with _guard:
            _held[folder] = entry = [fh, 1]
    try:
        yield folder
    finally:
        with _guard:
            entry[1] -= 1
            last = entry[1] == 0
            if last:
                del _held[folder]
        if last:
            fh = entry[0]
            try:
                fh.seek(0)
                fh.truncate()  # an empty file: nobody holds it
            except OSError:
                pass
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            fh.close()
