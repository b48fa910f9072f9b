"""State directory: where the daemon keeps what must survive a restart (the voice cache, previews).

Resolution order (SPEC §4 `state_dir`): the `state_dir` key, else `$STATE_DIRECTORY` (set by systemd's
`StateDirectory=`; it may hold several colon-separated paths, the first is ours), else
`~/.local/state/voice-agent`. The directory is created with mode 0700 because it holds account
data (voice ids, preview audio) that other local users have no business reading. It is checked for
writability at start, so a read-only or foreign-owned directory fails at once with exit 78 naming
`state_dir`, instead of failing later at the first cache write.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from pathlib import Path

from agent.config import ConfigError, Settings

log = logging.getLogger("voice-agent.state")

DEFAULT_STATE_DIR = "~/.local/state/voice-agent"


def resolve_state_dir(settings: Settings) -> tuple[Path, str]:
    """Return the state dir path and where it came from (for messages), without touching disk."""
    if settings.state_dir:
        return Path(settings.state_dir).expanduser(), "state_dir"
    env = os.environ.get("STATE_DIRECTORY")
    if env:
        first = env.split(":")[0]
        if first:
            return Path(first), "$STATE_DIRECTORY"
    return Path(DEFAULT_STATE_DIR).expanduser(), f"state_dir (default {DEFAULT_STATE_DIR})"


def open_state_dir(settings: Settings) -> Path:
    """Resolve, create (0700) and check the state dir; raise ConfigError naming `state_dir`."""
    path, origin = resolve_state_dir(settings)
    where = f"{settings.source}: {origin}" if origin == "state_dir" else origin

    def bad(why: str) -> ConfigError:
        return ConfigError(f"{where}: {path}: {why}")

    existed = path.is_dir()
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        raise bad("exists and is not a directory") from None
    except OSError as e:
        raise bad(f"cannot create the state directory ({e.strerror or e})") from None
    if not path.is_dir():
        raise bad("exists and is not a directory")
    if not existed:
        os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask; be explicit
    else:
        _warn_if_open(path)
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise bad(
            f"the state directory is not writable ({e.strerror or e}); fix its owner/permissions "
            "or point state_dir at a writable directory"
        ) from None
    return path


def _warn_if_open(path: Path) -> None:
    """An existing directory keeps its mode (an operator may share it with a group on purpose),
    but a world-accessible one is worth a warning: it holds account data."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return
    if mode & 0o007:
        log.warning("state dir %s is accessible to all users (mode %03o); chmod 700 it", path, mode)
