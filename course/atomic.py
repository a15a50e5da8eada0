"""Atomic file writes: a reader, or a crash, sees the old file or the new one, never half.

Every file of a run directory (weights, checkpoint, config, metrics, history, tokenizer)
and every notebook the authoring tools rewrite goes through `atomic_replace`.

A write goes to a temporary file beside its destination, named
``.<name>.course-<random>.tmp``, and is renamed over the destination. A rename replaces a
symlink that sits at the destination (it never writes through it to the link's target).
A process killed between the two steps leaves its temporary file behind; the pattern is
specific enough that `remove_stale_temp_files` can delete exactly those (a run does, at
start, while it holds its directory's lock).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

TEMP_SUFFIX = ".tmp"
_TEMP_TAG = "course-"
# `.<name>.course-<mkstemp's random part>.tmp`: files by `atomic_replace` and folders by
# `temp_dir_beside`; nobody else names files like this.
_OURS = re.compile(r"^\..+\.course-[A-Za-z0-9_]+\.tmp$")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(directory: str | Path) -> None:
    """Make renames inside `directory` durable (a no-op where folders cannot be synced)."""
    if os.name != "posix":  # a folder cannot be opened for fsync on Windows
        return
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_replace(path: str | Path, write: Callable[[str], None]) -> None:
    """`write(tmp)` a temporary file beside `path`, make it durable, then rename it over
    `path`.

    The new file keeps the mode of the file it replaces, or gets the one a plain `open()`
    would give (a temporary file is private, 0600, and a rename keeps that). The folder is
    synced too, so that the rename itself survives a power cut.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{_TEMP_TAG}", suffix=TEMP_SUFFIX)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_replace(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def temp_dir_beside(path: str | Path) -> Path:
    """A new empty folder next to `path` (same file system, so its files can be renamed
    into place), named with the pattern `remove_stale_temp_files` recognises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.{_TEMP_TAG}", suffix=TEMP_SUFFIX))


def is_our_temp_name(name: str, legacy_names: Iterable[str] = ()) -> bool:
    """Whether `name` is a temporary file or folder of this project: the current pattern,
    or the older ``.<name>.<random>.tmp`` for one of `legacy_names` (files an older
    version wrote through `atomic_replace`)."""
    if _OURS.match(name):
        return True
    return any(re.fullmatch(rf"\.{re.escape(n)}\.[A-Za-z0-9_]{{8}}\.tmp", name) for n in legacy_names)


def remove_stale_temp_files(
    directory: str | Path, legacy_names: Iterable[str] = (), *, only_for: str | None = None
) -> list[str]:
    """Delete the temporary files and folders a killed write left in `directory` (not
    recursively); return their names. `only_for`: only those of the destination with that
    name. Call it only while no other process of this project can be writing there (a run
    holds its directory's lock)."""
    d = Path(directory)
    if not d.is_dir():
        return []
    legacy = tuple(legacy_names)
    removed = []
    for p in sorted(d.iterdir()):
        if not is_our_temp_name(p.name, legacy):
            continue
        if only_for is not None and not p.name.startswith(f".{only_for}.{_TEMP_TAG}"):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p.name)
    return removed
