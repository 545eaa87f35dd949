"""What a certificate run is asked to do (`genet-parity certify`'s options)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from parity.certificate.verdict import Thresholds


@dataclass
class CertifyOptions:
    arch: Optional[str]
    weights: Optional[str]
    data: str
    list_file: Optional[str]
    out_prefix: str
    pdparams: Optional[str] = None
    demo: bool = False
    demo_note: str = ""
    limit: Optional[int] = None
    batch_size: int = 32
    workers: int = 0
    device: str = "cpu"
    runner: str = "fast"  # see parity.accuracy.runners.build_runners
    skip_bad: bool = False
    resume: bool = False
    thresholds: Thresholds = field(default_factory=Thresholds)
    layer_diff_images: int = 2
    bench: bool = True
    bench_options: dict = field(default_factory=dict)
    weights_key: Optional[str] = None  # which state dict of a training checkpoint (converters.files.state_dicts)
    eval_results: Optional[str] = None  # a finished float32 run of both frameworks (or a pair) to certify, not rerun
