"""Output paths checked before any work starts, so that a long export or training does not end in a traceback.

Permission bits cannot tell (root writes through them; a read-only mount or /proc refuses everyone), so the check
creates and removes a probe file in the nearest folder that exists: what it would take to write there for real.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def nearest_existing(path: Path) -> Path:
    """`path` itself, or the closest of its parents that exists (the folder the output's folders would go in)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(path: Path, option: str, folder: bool = False) -> Path:
    """`path` (an output file, or with folder=True an output folder) as given, or ValueError naming `option`, the path
    and why it cannot be written."""

    def refuse(reason: str, fix: str = "choose a path in a folder you can write to") -> ValueError:
        return ValueError(f"{option} {path}: {reason}; {fix}")

    if path.exists():
        if folder and not path.is_dir():
            raise refuse("exists and is a file, not a folder", "give a folder (a new one is created)")
        if not folder and path.is_dir():
            raise refuse("is a folder", "give the path of a file, not of a folder")
    base = nearest_existing(path if folder else path.parent)
    if not base.is_dir():
        raise refuse(f"{base} is a file, not a folder")
    try:
        handle, probe = tempfile.mkstemp(prefix=".hrnas-probe-", dir=base)
        os.close(handle)
        os.remove(probe)
        if not folder and path.exists():
            with path.open("ab"):  # an existing file must be writable too (it is replaced)
                pass
    except OSError as exc:
        raise refuse(f"cannot write in {base} ({exc.strerror or exc})") from None
    return path
