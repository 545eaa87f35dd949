"""Results files check what they hold: the digest chain (hand edits, removed,
reordered or inserted lines), well-formed records, indices inside the run,
one writer at a time (an OS lock), whole lines on a full disk, older files
refused, resumed runs on the same images only, and the run comparison
other tools pair on (same_run / run_differences). Records are written by
stand-in runners (no model needed: the bookkeeping is what is tested)."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from parity.accuracy import results as results_module
from parity.accuracy.evaluate import evaluate
from parity.accuracy.summary import make_header
from parity.accuracy.results import (ResultsWriter, canonical, next_chain, read_results, run_differences, same_run)
from parity.commands.merge_cmd import merge
from parity.inputs.data import DataError, open_dataset, select
from parity.inputs.sample_images import bundled_photos

N = 4


class Fixed:
    """Logits with class (image position * 7) on top, the same in every framework."""

    def __init__(self, label):
        self.label = label

    def __call__(self, x):
        out = np.zeros((len(x), 1000), np.float32)
        for j in range(len(x)):
            out[j, (int(x[j].sum() * 1000) % 997)] = 1.0
        return out


RUNNERS = {"torch": Fixed("stand-in torch"), "paddle": Fixed("stand-in paddle")}


@pytest.fixture
def photo_set(tmp_path):
    img = tmp_path / "img"
    img.mkdir()
    lines = []
    for i, p in enumerate(bundled_photos()[:N]):
        name = f"{i}_{os.path.basename(p)}"
        shutil.copy(p, img / name)
        lines.append(f"{name} {i}")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    return str(img), str(tmp_path / "list.txt")


def run(photo_set, path, shard=None, limit=None, **kw):
    ds = open_dataset(*photo_set)
    samples = select(ds.samples, limit, shard)
    header = make_header("small", "float32", "cpu", RUNNERS, {"source": "stand-in", "sha256": "0" * 64}, ds, limit,
                         shard, len(samples))
    return evaluate(RUNNERS, ds, samples, header, str(path), batch_size=2, **kw)


def lines_of(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def rewrite(path, records, rechain=False):
    """Write `records` (each with its chain, or chained anew with rechain=True) as the file's lines."""
    chain, out = "", []
    for r in records:
        r = dict(r)
        if rechain:
            r.pop("chain", None)
            chain = next_chain(chain, r)
            r["chain"] = chain
        out.append(canonical(r) + "\n")
    Path(path).write_text("".join(out))


@pytest.fixture
def done(photo_set, tmp_path):
    path = tmp_path / "r.jsonl"
    run(photo_set, path)
    return path


def test_every_record_holds_its_images_digest_and_the_chain_verifies(done, photo_set):
    header, records = read_results(str(done))
    assert header["version"] == 2 and header["image_digest"] == "blake2b-128"
    assert header["preprocessing"]["center_crop"] == 192
    for r in records:
        raw = Path(photo_set[0], r["path"]).read_bytes()
        assert r["size"] == len(raw) and r["digest"] == hashlib.blake2b(raw, digest_size=16).hexdigest()
    # The chain, recomputed here from its definition: SHA-256 over the previous value, a newline and the record.
    chain = ""
    for line in lines_of(done):
        stored = line.pop("chain")
        text = json.dumps(line, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        chain = hashlib.sha256((chain + "\n" + text).encode()).hexdigest()
        assert stored == chain


def test_a_hand_edited_prediction_is_refused_naming_the_record(done):
    lines = lines_of(done)
    lines[2]["pred"]["torch"][0] = (lines[2]["pred"]["torch"][0] + 1) % 1000
    rewrite(done, lines)
    with pytest.raises(DataError, match=r"line 3 \(image 1_.* \(index 1\)\) does not match the file's digest chain"):
        read_results(str(done))
    with pytest.raises(DataError, match="line 3 .*digest chain"):
        merge([str(done)])


@pytest.mark.parametrize("edit", ["remove", "swap", "duplicate"])
def test_removed_reordered_or_inserted_lines_are_refused(done, edit):
    lines = lines_of(done)
    if edit == "remove":
        del lines[2]
    elif edit == "swap":
        lines[2], lines[3] = lines[3], lines[2]
    else:
        lines.insert(3, lines[2])
    rewrite(done, lines)
    with pytest.raises(DataError, match="line 3 .*does not match the file's digest chain|line 4 .*digest chain"):
        read_results(str(done))


def test_a_repeated_image_with_a_valid_chain_is_still_counted_once(done):
    lines = lines_of(done)
    rewrite(done, lines + [lines[1]], rechain=True)
    with pytest.raises(DataError, match=r"line 6: image .* \(index 0\) is recorded again \(first on line 2\)"):
        read_results(str(done))


def test_an_index_outside_the_dataset_is_refused(done):
    lines = lines_of(done)
    lines[1]["index"] = 7
    rewrite(done, lines, rechain=True)
    with pytest.raises(DataError, match=r"line 2: image index 7 is outside this run's images \(indices 0..3"):
        read_results(str(done))


def test_an_index_of_another_shard_is_refused(photo_set, tmp_path):
    path = tmp_path / "s1.jsonl"
    run(photo_set, path, shard=(1, 2))
    lines = lines_of(path)
    lines[1]["index"] = 0  # shard 1/2 holds indices 1 and 3
    rewrite(path, lines, rechain=True)
    with pytest.raises(DataError, match=r"image index 0 is outside this run's images \(indices 1..3 step 2\)"):
        read_results(str(path))


@pytest.mark.parametrize("line, message", [
    ("null", "line 2 is null, not a record"),
    ("[]", "line 2 is list, not a record"),
    ('{"type": "image", "path": "x", "label": 1, "pred": {}}', "line 2 has no chain value"),
])
def test_json_lines_that_are_not_records_are_named(done, line, message):
    lines = Path(done).read_text().splitlines()
    lines.insert(1, line)
    Path(done).write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=message):
        read_results(str(done))


@pytest.mark.parametrize("drop, message", [("index", "has no valid 'index'"), ("pred", "has no prediction"),
                                           ("digest", "has no image size and digest")])
def test_records_missing_a_field_are_named(done, drop, message):
    lines = lines_of(done)
    del lines[1][drop]
    rewrite(done, lines, rechain=True)
    with pytest.raises(DataError, match=f"line 2 {message}"):
        read_results(str(done))


def test_a_version_1_file_is_refused_with_what_to_do(tmp_path):
    old = tmp_path / "old.jsonl"
    old.write_text(json.dumps({"type": "header", "version": 1, "frameworks": ["torch"]}) + "\n")
    with pytest.raises(DataError, match="older genet-parity .*version 1.*run that evaluation again"):
        read_results(str(old))


def test_non_regular_results_are_refused(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(DataError, match="is a FIFO"):
        read_results(str(tmp_path / "fifo"))
    with pytest.raises(DataError, match="is a directory"):
        read_results(str(tmp_path))
    with pytest.raises(DataError, match="is a character device"):
        read_results("/dev/zero")
    with pytest.raises(DataError, match="is a directory"):
        ResultsWriter(str(tmp_path), {"type": "header"}, resume=False)


def test_an_oversized_results_file_is_refused_before_it_is_read(done, monkeypatch):
    monkeypatch.setattr(results_module, "MAX_RESULTS_BYTES", 100)
    with pytest.raises(DataError, match="over the 100-byte bound for a results file"):
        read_results(str(done))


def test_a_second_writer_is_refused_while_the_first_holds_the_file(done, tmp_path):
    header = read_results(str(done)).header
    first = ResultsWriter(str(done), header, resume=True)
    try:
        with pytest.raises(DataError, match="is being written by another run"):
            ResultsWriter(str(done), header, resume=True)
        # Another process, too (flock locks the open file, across processes).
        code = ("import sys; from parity.accuracy.results import ResultsWriter, read_results\n"
                f"h = read_results({str(done)!r}).header\n"
                "try:\n"
                f"    ResultsWriter({str(done)!r}, h, resume=True)\n"
                "except Exception as e:\n"
                "    print(e); sys.exit(2)\n")
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert other.returncode == 2 and "is being written by another run" in other.stdout
    finally:
        first.close()
    ResultsWriter(str(done), header, resume=True).close()  # free again once the first is done


def test_a_full_disk_leaves_no_torn_line_and_names_the_file(done, monkeypatch):
    before = Path(done).read_bytes()
    header = read_results(str(done)).header
    writer = ResultsWriter(str(done), header, resume=True)
    real_write = os.write

    def half_then_full(fd, data):  # the disk fills in the middle of the batch
        if len(data) > 10:
            return real_write(fd, bytes(data[:len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results_module.os, "write", half_then_full)
    rec = {"type": "check", "n_images": 1, "pass": True, "judgements": {}}
    with pytest.raises(DataError, match=r"r.jsonl: could not be written \(No space left on device\); the batch "
                                        r"being written was cut back"):
        writer.write([rec, rec])
    writer.close()
    assert Path(done).read_bytes() == before
    assert len(read_results(str(done)).records) == N


def test_a_file_size_limit_mid_line_is_cut_back_in_another_process(done):
    """A real short write: RLIMIT_FSIZE stops the file a few bytes into the next line."""
    before = Path(done).read_bytes()
    code = f"""
import resource, signal, sys
from parity.accuracy.results import ResultsWriter, read_results
from parity.inputs.data import DataError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
w = ResultsWriter({str(done)!r}, read_results({str(done)!r}).header, resume=True)
resource.setrlimit(resource.RLIMIT_FSIZE, ({len(before) + 25}, resource.RLIM_INFINITY))
try:
    w.write([{{"type": "check", "n_images": 1, "pass": True, "judgements": {{"x": {{"m": 1}}}}}}])
except DataError as e:
    print(e); sys.exit(2)
"""
    done_run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done_run.returncode == 2, done_run.stderr
    assert "r.jsonl: could not be written (File too large)" in done_run.stdout
    assert Path(done).read_bytes() == before


def test_an_unwritable_results_path_names_the_file(photo_set, tmp_path):
    with pytest.raises(DataError, match=r"/proc/version.*could not be written"):
        run(photo_set, "/proc/version/r.jsonl")


def test_resume_on_other_images_with_the_same_names_is_refused(done, photo_set):
    img = Path(photo_set[0])
    first = sorted(img.iterdir())[0]
    lines = lines_of(done)
    rewrite(done, lines[:3])  # interrupted after two images
    with Image_replaced(first):
        with pytest.raises(DataError, match=rf"cannot resume: image .*{first.name} \(index 0\) is not the file that "
                                            rf"was evaluated \(recorded \d+ bytes [0-9a-f]{{32}}, now"):
            run(photo_set, done, resume=True)
    assert lines_of(done) == lines[:3]  # nothing written
    summary = run(photo_set, done, resume=True)  # the same images again: it continues
    assert summary["n_evaluated"] == N


class Image_replaced:
    """The image file replaced by another photo under the same name, restored after."""

    def __init__(self, path):
        self.path, self.saved = path, path.read_bytes()

    def __enter__(self):
        shutil.copy(bundled_photos()[N + 1], self.path)

    def __exit__(self, *exc):
        self.path.write_bytes(self.saved)


def test_zero_evaluated_images_is_an_error_not_a_result(photo_set, tmp_path):
    from parity.commands.eval_cmd import finish

    img = Path(photo_set[0])
    for f in img.iterdir():
        f.write_bytes(b"not an image")
    summary = run(photo_set, tmp_path / "r.jsonl", skip_bad=True)
    assert summary["n_evaluated"] == 0 and summary["n_bad"] == N
    with pytest.raises(DataError, match=r"no image was evaluated \(4 of 4 failed to decode\)"):
        finish(summary, "r.jsonl")


def test_same_run_compares_model_preprocessing_and_image_digests(done, photo_set, tmp_path):
    a = read_results(str(done))
    other = tmp_path / "b.jsonl"
    run(photo_set, other, shard=(0, 2))
    b = read_results(str(other))
    assert run_differences(a, b) == [] and same_run(a, b)  # a shard of the same run pairs with it
    b.header["weights"] = dict(b.header["weights"], sha256="1" * 64)
    b.header["preprocessing"] = dict(b.header["preprocessing"], center_crop=224)
    b.images[0]["digest"] = "f" * 32
    diffs = run_differences(a, b)
    assert any(d.startswith("preprocessing:") for d in diffs) and any(d.startswith("weights:") for d in diffs)
    assert any(d.startswith("image index 0:") and "f" * 32 in d for d in diffs) and not same_run(a, b)
