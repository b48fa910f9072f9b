"""The code base stays `ruff` clean (the project's style gate runs with the tests)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_reports_nothing() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.fail("ruff is not installed (it is in the `test` extra: pip install -e '.[test]')")
    r = subprocess.run([ruff, "check", "agent", "tests", "bench"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_importing_the_package_does_not_import_sounddevice() -> None:
    """PortAudio may be missing: only the sound-card backend may load it (SPEC §2)."""
    code = (
        "import sys, agent.cli, agent.daemon, agent.demo, agent.emulator.server, agent.voices.cli;"
        "sys.exit(1 if 'sounddevice' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0
