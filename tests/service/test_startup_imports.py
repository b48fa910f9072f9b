"""Start → READY does not pay for what is needed only after READY.

aiohttp (voice enrollment, the LLM) was about a third of start → READY on a small board
(bench/RESULTS.md §3); the daemon imports it when it first enrolls, after READY.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_daemon_does_not_import_aiohttp_or_enrollment() -> None:
    code = (
        "import sys, agent.daemon, agent.cli\n"
        "print(sorted(m for m in ('aiohttp', 'agent.voices.ensure', 'agent.voices.client') if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
