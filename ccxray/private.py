"""Owner-only storage: $CCXRAY_HOME holds every prompt and answer in the clear.

Folders are made 0700 and files 0600 whatever the umask (a umask only takes
bits away, and the modes are set explicitly after creation). A home found
with wider modes (made by an older version, or by hand) is tightened once,
everything under it included, and the caller says so in one line.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterable

DIR_MODE = 0o700
FILE_MODE = 0o600
OPEN_TO_OTHERS = stat.S_IRWXG | stat.S_IRWXO


def make_private_dirs(home: Path, subdirs: Iterable[Path] = ()) -> str | None:
    """Create ``home`` and ``subdirs`` owner-only; returns a notice if an existing home was tightened.

    Raises OSError when a folder cannot be created or its mode set.
    """
    notice = None
    if home.is_dir():
        mode = stat.S_IMODE(home.stat().st_mode)
        if mode & OPEN_TO_OTHERS:
            tighten_tree(home)
            notice = f"ccxray: {home} was readable by other users (mode {mode:o}); made it owner-only (700/600)"
    for folder in (home, *subdirs):
        mkdir_private(folder)
    return notice


def mkdir_private(folder: Path) -> None:
    """Create ``folder`` and missing parents as 0700; an existing one only loses group/other bits."""
    missing = []
    probe = folder
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=DIR_MODE)
        except FileExistsError:
            pass  # another process made it meanwhile; its mode is still set below
        os.chmod(path, DIR_MODE)
    if not missing and stat.S_IMODE(folder.stat().st_mode) & OPEN_TO_OTHERS:
        os.chmod(folder, DIR_MODE)


def tighten_tree(root: Path) -> None:
    """chmod ``root`` and every folder under it to 0700, every file to 0600 (symlinks untouched)."""
    os.chmod(root, DIR_MODE)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, DIR_MODE)
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, FILE_MODE)
