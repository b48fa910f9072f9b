"""The capability-table rows that concern the configuration, as checklist lines (SPEC §13).

Each row of `agent.capabilities` that `assess()` applies to this configuration becomes one line:
supported (✓), disputed between the documents (!, tried at run time, with the fix should the
service refuse), or not supported (✗, with the fix; the daemon would refuse to start). Offline:
what the documents say, not what the service answers (`check --live` asks the service).
"""

from __future__ import annotations

from agent.capabilities import Finding
from agent.check.result import CheckResult
from agent.config import Settings
from agent.voices.plan import capability_findings


def _line(f: Finding) -> CheckResult:
    name = f"capability {f.capability}"
    sources = "; ".join(s.where.split(" (")[0] for s in f.sources)
    detail = f"{f.key}: {f.message} [{sources}]"
    if f.level == "ok":
        return CheckResult(name, True, detail)
    if f.level == "warn":
        return CheckResult(name, True, detail, f.fix or None, warning=True)
    return CheckResult(name, False, detail, f.fix or "see the sources")


def check_capabilities(settings: Settings) -> list[CheckResult]:
    """One checklist line per table row that concerns `settings` (in `assess()` order)."""
    return [_line(f) for f in capability_findings(settings)]
