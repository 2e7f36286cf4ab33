"""An export lands whole: built in a staging directory beside its target, then put in place in one step.

A re-export in place used to copy the new tokenizer and config files over the old ones first and rewrite
manifest.json only after a variant's check, so a stop in between (Ctrl-C, an OOM kill, an error loading the
reference) left new tokenizer files beside the old graphs and manifest, which still loaded and served wrong
vectors. Now nothing is written into the target until the new export is complete: the staging directory
``.<name>.export-<random>`` sits in the same parent (the same filesystem, so a rename moves it), and landing it
swaps the two directories with ``renameat2(RENAME_EXCHANGE)`` where the kernel and filesystem have it (Linux >=
3.15 on ext4, xfs, btrfs, tmpfs ...): at every instant the target is the old export or the new one. Elsewhere the
old directory is renamed aside and the new one renamed in: a stop between those two renames leaves no target
(which refuses to load) and the old export under ``.<name>.old-<random>``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import tempfile
import uuid
from pathlib import Path

from embedrt.manifest import MANIFEST_NAME

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2  # linux/fs.h
# renameat2 errors that mean "not here" (old kernel or libc, a filesystem without the flag), not a real failure.
_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV}


def check_target(target: Path) -> None:
    """Refuse a target that an export would destroy: a file, or a non-empty directory that is no export."""
    if target.is_file():
        raise FileExistsError(f"{target} is a file; an export writes a directory")
    if target.is_dir() and any(target.iterdir()) and not (target / MANIFEST_NAME).is_file():
        raise FileExistsError(
            f"{target} is not empty and has no {MANIFEST_NAME}: it is not an embedrt export, and exporting there "
            "would replace what it holds; choose an empty or new directory"
        )


def staging_dir(target: Path) -> Path:
    """A new, empty directory beside ``target`` to build the export in."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.export-", dir=target.parent))


def discard(staging: Path) -> None:
    """Remove a staging directory (an export that did not land)."""
    shutil.rmtree(staging, ignore_errors=True)


def land(staging: Path, target: Path) -> None:
    """Put the complete export in ``staging`` at ``target``, replacing what was there in one step where possible."""
    if not target.exists():
        os.rename(staging, target)
        return
    if not any(target.iterdir()):
        os.rename(staging, target)  # rename(2) replaces an empty directory atomically
        return
    if exchange(staging, target):
        shutil.rmtree(staging)  # it now holds the old export
        return
    aside = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:12]}")
    os.rename(target, aside)
    os.rename(staging, target)
    shutil.rmtree(aside)


def exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically (``renameat2`` with ``RENAME_EXCHANGE``); False where that is not available."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError, TypeError):  # not Linux, or a libc older than glibc 2.28
        return False
    renameat2.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _UNSUPPORTED:
        return False
    raise OSError(code, os.strerror(code), str(second))
