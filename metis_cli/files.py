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
