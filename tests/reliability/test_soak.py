"""The soak, shortened for CI (~60 s): nothing grows across barge-ins, disconnects and silence.

`bench/soak.py` is the 10-minute benchmark (results in bench/SOAK.md); this runs the same code for
one minute with the server closing every session after 20 s and an abrupt drop armed every 25 s,
so every risky path — barge-in, reconnect, quiet spell — runs several times after the warm-up.
It runs in its own process, so the memory figures are the daemon's, not pytest's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_one_minute_soak_leaks_nothing(tmp_path: Path) -> None:
    work = tmp_path / "soak"
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "soak.py"), "--duration", "60", "--barge-ins", "5",
         "--warmup", "20", "--window", "15", "--sample-every", "2.5", "--session-max", "20",
         "--drop-every", "25", "--silence-every", "40", "--silence", "5", "--work", str(work)],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    summary = r.stdout[-3000:] + "\n" + r.stderr[-1500:]
    assert (work / "soak.json").exists(), f"the soak did not finish:\n{summary}"
    report = json.loads((work / "soak.json").read_text())
    growth, load, logs = report["growth"], report["load"], report["logs"]
    assert not logs["unhandled"], f"unhandled exceptions: {logs['unhandled']}"
    assert not report["emulator_tracebacks"], report["emulator_tracebacks"]
    assert growth["rss_mb"] <= 5.0, summary
    assert growth["tasks"] <= 2 and growth["fds"] <= 2 and growth["threads"] <= 1, summary
    assert load["barge_ins"] >= 3 and load["reconnects"] >= 2, f"the load was applied: {load}"
    verdicts = report["verdicts"]
    assert verdicts["disconnects_survived"], summary
    assert all(v for k, v in verdicts.items() if k != "barge_ins_reached"), summary
