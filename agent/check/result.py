"""One line of the `voice-agent check` checklist, and how each kind is made."""

from __future__ import annotations

from dataclasses import dataclass

from agent.secrets import redact

TIMEOUT_S = 5.0
INPUT_RATE = 16000  # the microphone rate sent upstream (SPEC §5.5)
OUTPUT_RATE = 24000  # the playout rate
KEY_REJECTED_FIX = "key rejected: check dashscope.api_key and region (keys are region-specific)"


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str
    fix: str | None = None
    skipped: bool = False  # not run because an earlier check failed (that one carries the fix)
    warning: bool = False  # passed, but the documents disagree: it may fail (the fix is shown)

    def __post_init__(self) -> None:
        self.detail = redact(self.detail)
        self.fix = redact(self.fix) if self.fix else None


def _pass(name: str, detail: str) -> CheckResult:
    return CheckResult(name, True, detail)


def _fail(name: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(name, False, detail, fix)


def _skip(name: str, why: str) -> CheckResult:
    return CheckResult(name, False, f"skipped: {why}", skipped=True)


def passed(name: str, detail: str) -> CheckResult:
    return CheckResult(name, True, detail)


def failed(name: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(name, False, detail, fix)


def skipped(name: str, why: str) -> CheckResult:
    return CheckResult(name, False, f"skipped: {why}", skipped=True)
