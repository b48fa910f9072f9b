"""Small files in the state dir (voices, memory, timers, volume): written atomically, set aside
when unreadable.

One policy for every file the daemon keeps across restarts: a crash or a full disk leaves the old
file or the new one, never half of each (temp file, fsync, rename, fsync the directory), mode 0600
by default; a file that cannot be parsed is renamed aside with a timestamp, never fatal and never
silently overwritten, so an operator can still look at it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data` so a crash leaves either the old or the new file, never a mix."""
    directory = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)  # make the rename itself durable
    finally:
        os.close(dfd)


def set_aside(path: Path) -> Path:
    """Rename an unreadable `path` to `<name>.corrupt-<unix time>` next to it; the new name."""
    aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
    with contextlib.suppress(OSError):
        os.replace(path, aside)
    return aside
