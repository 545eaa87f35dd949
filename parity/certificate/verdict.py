"""The certificate's statuses, its thresholds, one row (`CertificateCheck`)
and the verdict over all rows.

Verdict: FAIL if any check fails; INCOMPLETE if a required check did not run
or does not apply to these inputs (e.g. a subset of ImageNet cannot be held
to the published top-1); INCONCLUSIVE if every check ran but one could not be
decided on this sample; PASS otherwise. Checks that only exist on a GPU are
SKIPPED on a CPU and do not block. A demo certificate (seeded weights,
bundled photos, synthetic labels) is always labelled DEMO.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

PASS, FAIL, NOT_RUN, NOT_APPLICABLE, SKIPPED, INFO = "PASS", "FAIL", "NOT RUN", "N/A", "SKIPPED", "INFO"
INCONCLUSIVE = "INCONCLUSIVE"  # the interval straddles the threshold: too few images to tell
STATUSES = (PASS, FAIL, INCONCLUSIVE, NOT_RUN, NOT_APPLICABLE, SKIPPED, INFO)
INCOMPLETE = "INCOMPLETE"
CONFIDENCE = 0.95


@dataclass
class Thresholds:
    torch_top1_points: float = 0.1  # |torch top-1 - published| on the full 50,000-image val
    paddle_top1_points: float = 0.05  # |Paddle top-1 - torch top-1| on the same inputs
    min_agreement_pct: float = 99.9  # top-1 prediction agreement, float32
    pdparams_max_abs: float = 0.0  # a given .pdparams vs the conversion of --weights (a copy: exact)


@dataclass
class CertificateCheck:
    """One row of the certificate: what was checked, its threshold, the measured value and the status."""

    id: str
    title: str
    status: str
    threshold: str
    measured: str
    reason: str = ""
    details: dict = field(default_factory=dict)
    interval: str = ""  # the confidence interval the status was decided on ("" where none applies)
    images_needed: Optional[int] = None  # INCONCLUSIVE: images that would decide it at the observed rates


def verdict(checks: List[CertificateCheck], demo: bool) -> str:
    statuses = [c.status for c in checks]
    if FAIL in statuses:
        v = FAIL
    elif NOT_RUN in statuses or NOT_APPLICABLE in statuses:
        v = INCOMPLETE
    elif INCONCLUSIVE in statuses:
        v = INCONCLUSIVE
    else:
        v = PASS
    return f"DEMO ({v}; not a reproduction certificate)" if demo else v


def core_verdict(cert_verdict: str) -> str:
    """PASS, FAIL, INCOMPLETE or INCONCLUSIVE, also from a demo's verdict."""
    return cert_verdict.split("(")[-1].split(";")[0] if cert_verdict.startswith("DEMO") else cert_verdict
