"""What a probe finds: each backbone's scores and the whole result, shared by the scoring
(which makes them) and the report (which shows them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ktransfer.probing.curve import Curve


@dataclass(frozen=True)
class Scored:
    """One backbone's scores: LogME, the linear probe's cross-validated metric, its learning
    curve, the feature size and the seconds its feature pass took."""

    name: str
    logme: float
    probe: float
    curve: Curve
    dims: int
    seconds: float


@dataclass(frozen=True)
class ProbeResult:
    """The ranking (best first), what the audit found, and where it was written."""

    metric: str
    ranking: list[Scored]
    audit: dict[str, Any]
    output_dir: Path
    best_flagfile: Path
    seconds: float
