"""Reliability tests: print the fault matrix's recovery times at the end of the run.

The lead quotes these numbers (docs/reliability.md); set `$RELIABILITY_TABLE` to a path to also
write the table there as Markdown.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir

from tests.support.recovery import RECOVERY, RETRIES, recovery_table, retry_table

# Fuzzing stays a few seconds of the suite: modest example counts, no per-example deadline (CI
# machines are slow and shared), no example database written into the repository. `dev` digs
# deeper when run by hand: HYPOTHESIS_PROFILE=dev pytest tests/reliability -k fuzz
set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "voice-agent-hypothesis"))  # not the repo
settings.register_profile("ci", max_examples=60, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=2000, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    parts = []
    if RECOVERY:
        table = recovery_table(sorted(RECOVERY, key=lambda r: (r.mode, r.fault)))
        terminalreporter.section("fault matrix: time to recover")
        terminalreporter.write_line(table)
        parts.append("## Time to recover\n\n" + table)
    if RETRIES:
        table = retry_table(sorted(RETRIES, key=lambda r: (r.service, r.fault)))
        terminalreporter.section("retry discipline: connection attempts under a persistent fault")
        terminalreporter.write_line(table)
        parts.append("## Retry discipline\n\n" + table)
    target = os.environ.get("RELIABILITY_TABLE")
    if target and parts:
        Path(target).write_text("\n\n".join(parts) + "\n", encoding="utf-8")
