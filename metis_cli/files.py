"""File-system helpers at the bottom of the package (no metis imports): the mode new files get."""

from __future__ import annotations

import os


def umask_mode() -> int:
    """The mode a plainly created file gets (0o666 less the umask). Atomic writers give it to their temporary
    files (mkstemp makes them 0600) before renaming them into place, so that colleagues and web servers can
    read what metis writes, as with any other tool."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_failure(path, exc: BaseException) -> str:
    """One line for a failed write to ``path``: the cause, and the fix when the disk is full."""
    import errno
    import shutil

    cause = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    full = getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
    if not full:
        try:
            full = shutil.disk_usage(os.path.dirname(os.path.abspath(path)) or ".").free < 1 << 20
        except OSError:
            pass
    hint = "; the disk is full: free space (or write elsewhere) and rerun, finished work is kept" if full else ""
    return f"{path}: cannot write ({cause}){hint}"
