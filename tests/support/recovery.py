"""The reliability tests' report: recovery times per fault and retry counts per persistent fault.

`RECOVERY` collects one `RecoveryRow` per fault-matrix case and `RETRIES` one `RetryRow` per
retry-discipline case; tests/reliability/conftest.py prints them as tables at the end of the
run (the numbers docs/reliability.md quotes).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RecoveryRow:
    """One fault-matrix case, for the table printed at the end of the run.

    detect_s: fault in force → the status first reported it.
    recover_s: fault cleared → the service is connected again (or the first request worked).
    answer_s: fault cleared → the first sample of the next answer was audible.
    """

    mode: str
    fault: str
    status: str  # what the status said (state / connected / last_error excerpt)
    detect_s: float | None
    recover_s: float | None
    answer_s: float | None
    note: str = ""


RECOVERY: list[RecoveryRow] = []


@dataclass
class RetryRow:
    """One retry-discipline case: connection attempts during the measuring window."""

    service: str
    fault: str
    attempts: int
    window_s: float
    min_gap_s: float | None
    note: str = ""


RETRIES: list[RetryRow] = []


def retry_table(rows: list[RetryRow]) -> str:
    out = ["| service | persistent fault | attempts | per minute (extrapolated) | shortest gap (s) | note |",
           "|---|---|---:|---:|---:|---|"]
    for r in rows:
        gap = "—" if r.min_gap_s is None else f"{r.min_gap_s:.2f}"
        out.append(f"| {r.service} | {r.fault} | {r.attempts} in {r.window_s:.0f} s | "
                   f"{r.attempts * 60.0 / r.window_s:.0f} | {gap} | {r.note} |")
    return "\n".join(out)


def recovery_table(rows: list[RecoveryRow]) -> str:
    """Markdown table of the rows (also what docs/reliability.md reproduces)."""

    def s(v: float | None) -> str:
        return "—" if v is None else f"{v:.2f}"

    out = ["| mode | fault | status while faulty | detect (s) | recover (s) | next answer (s) | note |",
           "|---|---|---|---:|---:|---:|---|"]
    for r in rows:
        out.append(f"| {r.mode} | {r.fault} | {r.status} | {s(r.detect_s)} | {s(r.recover_s)} | "
                   f"{s(r.answer_s)} | {r.note} |")
    return "\n".join(out)
