"""The results of the conformance checks: one :class:`CheckResult` per check, one
:class:`ConformanceReport` per driver and circuit."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["CheckResult", "ConformanceReport", "Status"]

Status = Literal["passed", "failed", "skipped"]


@dataclass(frozen=True)
class CheckResult:
    """One check: ``status`` ``passed``/``failed``/``skipped``, a one-line ``message``,
    ``seconds`` taken, and ``metrics`` (numbers such as cosines) for reports."""

    name: str
    status: Status
    message: str
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ConformanceReport:
    """All checks of one driver on one circuit; ``passed`` when none failed."""

    driver: str
    circuit: str
    results: tuple[CheckResult, ...]

    @property
    def passed(self) -> bool:
        return all(r.status != "failed" for r in self.results)

    def to_json(self) -> dict[str, Any]:
        return {
            "driver": self.driver,
            "circuit": self.circuit,
            "passed": self.passed,
            "checks": [dataclasses.asdict(r) for r in self.results],
        }
