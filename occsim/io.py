"""Atomic file writing: a crash mid-write never leaves a half-written file or folder behind.

Temporaries live beside their target as ``.{name}.{pid}-{random}.tmp`` (and ``.old`` for a
folder moved aside), so that the temporaries of a process that died (an interrupted write)
can be told from those of one still writing: each atomic write clears those of its own
target first, and :func:`remove_stale_temporaries` a whole folder.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

# .{target name}.{pid}-{random}.tmp|.old, as made by _temporary_name.
_TEMPORARY = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)-[^.]+\.(?P<kind>tmp|old)$")


def _prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's live process (or unknowable): leave its files alone
    return True


def _clean_stale(entry: Path) -> bool:
    """Remove (or, for a folder moved aside whose replacement never came, restore) one
    temporary of a process that no longer runs; whether it was one."""
    match = _TEMPORARY.match(entry.name)
    if match is None or _pid_alive(int(match["pid"])):
        return False
    target = entry.with_name(match["target"])
    if match["kind"] == "old" and not target.exists():
        os.replace(entry, target)
    elif entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)
    return True


def remove_stale_temporaries(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Delete the temporaries that interrupted atomic writes left in ``folder``.

    Only temporaries of processes that no longer run are touched. A folder that was moved
    aside (``.old``) while its replacement never arrived is moved back instead: at every
    instant one complete copy exists. Returns the paths removed or restored.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    candidates = folder.rglob(".*") if recursive else folder.glob(".*")
    return [entry for entry in sorted(candidates) if _clean_stale(entry)]


def _clean_stale_of(path: Path) -> None:
    """Every atomic write first clears what an interrupted write of the same target left."""
    if path.parent.is_dir():
        for entry in path.parent.glob(f".{glob.escape(path.name)}.*"):
            _clean_stale(entry)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    The temporary file lives in the same folder so the final ``os.replace`` is atomic.
    On error the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    _clean_stale_of(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` whole.

    An existing ``path`` is moved aside first and deleted only after the new one is in
    place, so at every instant either the old or the new complete folder exists.
    """
    path = Path(path)
    _clean_stale_of(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(path), suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=_prefix(path), suffix=".old", dir=path.parent))
            old.rmdir()
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_npz_atomic(
    path: str | os.PathLike, compressed: bool = True, **arrays: np.ndarray
) -> None:
    """Write ``arrays`` to an ``.npz`` file atomically."""
    save = np.savez_compressed if compressed else np.savez
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        save(handle, **arrays)


def write_json_atomic(
    path: str | os.PathLike, obj: Any, indent: int | None = 2, allow_nan: bool = True
) -> None:
    """Write ``obj`` as JSON atomically. With ``allow_nan=False`` NaN or infinity is a
    ``ValueError`` before anything is written: they are not standard JSON, and data files
    whose readers reject them must never hold them."""
    try:
        text = json.dumps(obj, indent=indent, allow_nan=allow_nan)
    except ValueError as error:
        raise ValueError(f"cannot write {path}: {error} (NaN and infinity are not JSON)") from None
    with atomic_path(path) as tmp:
        tmp.write_text(text)
