"""Hostile and malformed inputs against `genet-convert`.

Every file of `tests/hostile_files.py` (forged numpy dtypes and reduce chains,
memo and allocation bombs, truncations at every 1/16 of a valid file, header
and zip corruptions, wrong dtypes, non-string keys, non-regular files,
destinations on a full or read-only filesystem) is converted by genet-convert
in a worker subprocess (tests/fuzz_worker.py) under an address-space cap and a
timer, each case measured on its own. For every hostile case: exit code 2,
one line on stderr naming the file, no signal death, nothing written, peak
memory under 2x that of a fresh genet-convert converting the valid file, and
under 10 s. The valid files (and a big-endian one) are controls that must
convert. A few cases also run as their own `genet-convert` process, so the
process's real exit status is checked too.
"""
from __future__ import annotations

import os
import re
import sys

import pytest

from .fuzz_worker import run_cases
from .hostile_files import build_cases, prepare_destinations, release_destinations, write_valid

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="measures memory through /proc (Linux only)")

TIMEOUT_S = 10.0
MEMORY_FACTOR = 2
WORKERS = 2
BASELINE = "valid pth"  # the valid GENet_small .pth -> .pdparams, the reference for memory and start-up time
# Run as their own genet-convert processes, beside the workers: the baseline,
# and two cases that used to kill the process (SIGBUS, SIGSEGV).
OWN_PROCESS = (BASELINE, "pdparams: object field, list-pickle flag cleared",
               "pth zip: tuple nested 10**6 deep as a key")


PROGRESS_LINE = re.compile(r"^\[\s*\d+\.\d s\] genet-convert: ")


def _problems(case, outcome, baseline):
    """What is wrong with one case's outcome ([] if nothing). A case run as
    its own process may take the baseline process's time on top of the
    limit: both pay for starting Python and torch."""
    code = outcome["code"]
    if isinstance(code, str):  # 'signal 11', 'hang', 'timeout', 'raised ...'
        return [f"{code} (expected exit {case.expect})"]
    out = []
    if code != case.expect:
        out.append(f"exit {code}, expected {case.expect}")
    listing = outcome["dst_listing"] or []
    # Progress lines ("[   0.2 s] genet-convert: ...", what a log gets on stderr) are not messages.
    lines = [line for line in outcome["output"].strip().splitlines() if not PROGRESS_LINE.match(line)]
    if case.expect == 2:
        named = case.dst if case.klass.startswith("destination") else case.src
        if len(lines) != 1 or not lines[0].startswith("Error: ") or named not in lines[0]:
            out.append(f"expected one 'Error: {named}: ...' line, got {lines[-3:]}")
        if listing:
            out.append(f"left files behind: {listing}")
    elif os.path.basename(case.dst) not in listing:
        out.append(f"did not write {case.dst}: {lines[-3:]}")
    limit = TIMEOUT_S + (baseline["seconds"] if outcome.get("own_process") else 0)
    if outcome["seconds"] is not None and outcome["seconds"] > limit:
        out.append(f"took {outcome['seconds']:.1f} s (limit {limit:.1f} s)")
    if outcome["peak_kb"] and outcome["peak_kb"] > MEMORY_FACTOR * baseline["peak_kb"]:
        out.append(f"peak RSS {outcome['peak_kb'] // 1024} MiB > {MEMORY_FACTOR} x the valid conversion's "
                   f"{baseline['peak_kb'] // 1024} MiB")
    return out


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("fuzz"))
    write_valid(folder)
    cases = build_cases(folder)
    held = prepare_destinations(cases)
    runnable = [c for c in cases if not c.note.startswith("skipped")]
    try:
        outcomes = run_cases(runnable, folder, workers=WORKERS, timeout=TIMEOUT_S, own_process=OWN_PROCESS)
    finally:
        release_destinations(held)
    baseline = outcomes[BASELINE]
    assert baseline["code"] == 0 and baseline["peak_kb"], baseline
    return {"folder": folder, "cases": cases, "runnable": runnable, "outcomes": outcomes, "baseline": baseline}


def test_every_hostile_file_is_refused_cleanly(fuzz):
    failures = []
    for case in fuzz["runnable"]:
        for problem in _problems(case, fuzz["outcomes"][case.name], fuzz["baseline"]):
            failures.append(f"[{case.klass}] {case.name}: {problem}")
    assert not failures, f"{len(failures)} problems:\n" + "\n".join(failures)
    classes = {c.klass for c in fuzz["runnable"]}
    assert {"forged dtype / reduce chain", "memo / allocation bomb", "truncation", "header corruption",
            "wrong dtype", "integer dict key", "non-regular file", "destination: full filesystem",
            "valid file (control)"} <= classes
    assert sum(c.klass == "truncation" for c in fuzz["runnable"]) == 4 * 15


def test_messages_say_what_was_expected(fuzz):
    """Spot checks of the wording users see (examples of messages users reported)."""
    said = {c.name: fuzz["outcomes"][c.name]["output"].strip() for c in fuzz["runnable"]}
    assert "fc_linear.bias: dtype complex64, expected a float type" in said["pth zip: complex64 bias"]
    assert "fc_linear.bias: dtype int32, expected a float type" in said["safetensors: I32 bias"].replace(
        "head.fc.bias", "fc_linear.bias")
    assert "expected a whole non-negative number" in said["pth zip: float32 step counter holding 0.5"]
    assert "is a FIFO (named pipe), not a regular file" in said["a FIFO"]
    assert "memo bomb" in said["pdparams: tuple doubled 64 times as a key"]
    assert "could not be written (File too large)" in said["full disk writing .pth"]


def test_some_cases_ran_as_their_own_process(fuzz):
    """The former SIGBUS and SIGSEGV, as separate genet-convert processes."""
    own = [fuzz["outcomes"][name] for name in OWN_PROCESS]
    assert all(o.get("own_process") for o in own)
    assert [o["code"] for o in own] == [0, 2, 2], own


def test_real_checkpoints_stay_well_inside_the_pickle_work_bound(fuzz):
    """The bound must not bite real files: their scanned work, measured
    independently of the limit, is at most their length (the limit is 2x)."""
    import io
    import zipfile

    from converters.files import pickle_scan
    from converters.files.pickle_scan import _Scan

    from .hostile_files import valid_paths

    paths = valid_paths(fuzz["folder"])
    streams = {}
    for fmt in ("pdparams", "pdparams2"):
        with open(paths[fmt], "rb") as f:
            streams[fmt] = f.read()
    with zipfile.ZipFile(paths["pth"]) as z:
        streams["pth data.pkl"] = z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))
    for name, data in streams.items():
        scan = _Scan(io.BytesIO(data), len(data), name)
        scan.run()
        assert scan.work <= 1.01 * len(data) < scan.limit, (name, scan.work, len(data))
        assert scan.opcodes < pickle_scan.MAX_OPCODES // 50
