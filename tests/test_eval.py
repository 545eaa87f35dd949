"""Evaluation on real photos: both frameworks on identical inputs, the results
file, resume, shards + merge, bad images, precision paths, the CLI."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from parity.accuracy import runners as runners_module
from parity.inputs.data import DataError, open_dataset, select
from parity.accuracy.evaluate import evaluate
from parity.accuracy.results import read_results
from parity.accuracy.runners import build_runners, logit_check
from parity.accuracy.summary import make_header
from parity.commands.merge_cmd import merge
from parity.inputs.preprocessing import preprocess
from parity.inputs.sample_images import bundled_photos
from parity.core.seeded import seeded_state

ARCH = "small"
N_PHOTOS = 6


@pytest.fixture(scope="module")
def state():
    return seeded_state(ARCH)


@pytest.fixture(scope="module")
def torch_top5(state):
    """Independent reference: torch_ref on per-image `preprocess`, no eval loop."""
    import torch

    import torch_ref

    model = torch_ref.load_state(torch_ref.build(ARCH), state)
    x = []
    for p in bundled_photos()[:N_PHOTOS]:
        with Image.open(p) as im:
            x.append(preprocess(im, ARCH))
    with torch.no_grad():
        logits = model(torch.from_numpy(np.stack(x))).numpy()
    return np.argsort(-logits, axis=1, kind="stable")[:, :5]


@pytest.fixture(scope="module")
def photo_inputs():
    x = []
    for p in bundled_photos()[:N_PHOTOS]:
        with Image.open(p) as im:
            x.append(preprocess(im, ARCH))
    return np.stack(x)


@pytest.fixture(scope="module")
def difference_bound(state, photo_inputs):
    """The rule's bar for |paddle - torch| logits on these photos: torch
    float32's own error against a float64 recomputation, per image
    (parity.core.tolerances.difference_bound), computed independently of the eval loop."""
    import torch

    import torch_ref
    from parity.core.reference import float64_logits
    from parity.core.tolerances import difference_bound as bound

    model = torch_ref.load_state(torch_ref.build(ARCH), state)
    f64 = float64_logits(ARCH, state, photo_inputs)
    out = []
    for i in range(N_PHOTOS):  # one image at a time: the batch composition changes the bits, not the noise level
        with torch.no_grad():
            t32 = model(torch.from_numpy(photo_inputs[i:i + 1])).numpy()[0]
        out.append(bound(float(np.abs(t32 - f64[i]).max()), float(np.abs(f64[i]).max())))
    return np.array(out)


@pytest.fixture(scope="module")
def photo_set(tmp_path_factory, torch_top5):
    """List layout over real photos; the first four labels are what torch
    predicts, the last two are not, so torch's top-1 must be 4/6."""
    root = tmp_path_factory.mktemp("photos")
    (root / "img").mkdir()
    lines = []
    for i, p in enumerate(bundled_photos()[:N_PHOTOS]):
        name = f"{i:02d}_{os.path.basename(p)}"
        shutil.copy(p, root / "img" / name)
        top1 = int(torch_top5[i][0])
        label = top1 if i < 4 else (top1 + 1) % 1000
        lines.append(f"{name} {label}")
    (root / "val_list.txt").write_text("\n".join(lines) + "\n")
    return str(root / "img"), str(root / "val_list.txt")


@pytest.fixture(scope="module")
def runners(state):
    from converters.table.mapping import mapping_table

    return build_runners(ARCH, ["torch", "paddle"], state,
                         mapping_table(ARCH).convert(state, "official", "paddle"))


class Counting:
    """A runner wrapper that counts the images it was given."""

    def __init__(self, inner):
        self.inner, self.label, self.seen = inner, inner.label, 0

    def __getattr__(self, name):  # what the runner says of itself (fast_path, is_reference)
        return getattr(self.inner, name)

    def __call__(self, x):
        self.seen += len(x)
        return self.inner(x)


def run(runners, photo_set, results, limit=None, shard=None, **kw):
    ds = open_dataset(*photo_set)
    samples = select(ds.samples, limit, shard)
    header = make_header(ARCH, "float32", "cpu", runners, {"source": "seeded"}, ds, limit, shard, len(samples))
    return evaluate(runners, ds, samples, header, str(results), batch_size=kw.pop("batch_size", 2), **kw)


@pytest.fixture(scope="module")
def single_run(runners, photo_set, tmp_path_factory):
    path = tmp_path_factory.mktemp("single") / "r.jsonl"
    return run(runners, photo_set, path), path


def test_both_frameworks_on_identical_inputs(single_run, torch_top5, difference_bound):
    summary, path = single_run
    header, records = read_results(str(path))
    assert header["type"] == "header" and len(records) == N_PHOTOS
    for r in records:
        assert r["pred"]["torch"] == [int(c) for c in torch_top5[r["index"]]]
        assert r["pred"]["paddle"][0] == r["pred"]["torch"][0]
        assert 0 < r["logit_max_abs_diff"] <= difference_bound[r["index"]], r["path"]
    assert summary["top1"]["torch"] == pytest.approx(100 * 4 / 6)
    assert summary["top1"]["paddle"] == pytest.approx(100 * 4 / 6)
    assert summary["top5"]["torch"] == pytest.approx(100 * 4 / 6)  # label top1+1 is not in the top 5 here
    assert summary["agreement_top1"] == 100.0 and summary["disagreements"] == []
    assert summary["paired"]["mcnemar_exact_p"] == 1.0
    assert summary["complete"] and summary["n_bad"] == 0 and summary["n_evaluated"] == N_PHOTOS


def test_resume_after_interruption_equals_uninterrupted(single_run, runners, photo_set, tmp_path):
    expected, _ = single_run
    path = tmp_path / "r.jsonl"
    calls = []

    def stop_after_two_batches(n, counts):
        calls.append(n)
        if len(calls) == 3:  # the first call reports resumed work (none)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(runners, photo_set, path, on_batch=stop_after_two_batches)
    with open(path, "a") as f:
        f.write('{"type":"image","index":5,"pa')  # a write cut short by the interruption
    _, done = read_results(str(path))
    assert sorted(r["index"] for r in done) == [0, 1, 2, 3]
    counting = {k: Counting(v) for k, v in runners.items()}
    resumed = run(counting, photo_set, path, resume=True)
    assert [c.seen for c in counting.values()] == [2, 2]  # only the missing images were evaluated
    assert resumed == expected
    assert len(read_results(str(path))[1]) == N_PHOTOS


def test_existing_results_need_resume_and_the_same_run(single_run, runners, photo_set, tmp_path):
    path = tmp_path / "r.jsonl"
    shutil.copy(single_run[1], path)
    before = path.read_bytes()
    with pytest.raises(DataError, match="already exists; pass --resume"):
        run(runners, photo_set, path)
    with pytest.raises(DataError, match="cannot resume: .*differs in limit"):
        run(runners, photo_set, path, limit=3, resume=True)
    assert path.read_bytes() == before  # nothing overwritten


def test_damaged_results_file_is_an_error_naming_the_line(tmp_path, single_run):
    lines = single_run[1].read_text().splitlines()
    lines[2] = lines[2][:10]
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="line 3 is not valid JSON"):
        read_results(str(path))


def _without_float_figures(summary):
    """A summary without the figures that depend on the kernels' bits (which
    change with the batch composition and the CPU): the largest logit
    difference and the start-up checks' errors."""
    return {k: v for k, v in summary.items() if k not in ("logit_max_abs_diff", "logit_checks")}


def test_shards_merged_equal_a_single_run(single_run, runners, photo_set, tmp_path, difference_bound):
    expected, single_path = single_run
    paths = []
    for k in (2, 0, 1):
        paths.append(str(tmp_path / f"s{k}.jsonl"))
        run(runners, photo_set, paths[-1], shard=(k, 3), batch_size=1)
    merged = merge(paths)
    # What must be equal is: which images, their predictions, every count and statistic of them.
    assert _without_float_figures(merged) == _without_float_figures(expected)
    by_index = {}
    for p in paths:
        by_index.update({r["index"]: r for r in read_results(p)[1]})
    single = {r["index"]: r for r in read_results(str(single_path))[1]}
    assert sorted(by_index) == sorted(single) and all(by_index[i]["pred"] == single[i]["pred"] for i in single)
    # Float figures: within the rule in both runs (batches of 1 here, of 2 there).
    for i in single:
        assert by_index[i]["logit_max_abs_diff"] <= difference_bound[i]
        assert single[i]["logit_max_abs_diff"] <= difference_bound[i]
    assert merged["logit_max_abs_diff"] <= difference_bound.max()
    with pytest.raises(DataError, match=r"shard\(s\) 0/3 missing"):
        merge(paths[:1] + paths[2:])
    with pytest.raises(DataError, match="is the same file as .*, given twice"):
        merge(paths + paths[:1])
    copy = tmp_path / "s2_copy.jsonl"
    shutil.copy(paths[0], copy)
    with pytest.raises(DataError, match="repeats shard 2/3"):
        merge(paths + [str(copy)])
    cut = tmp_path / "s0_cut.jsonl"
    cut.write_text("".join(Path(paths[1]).read_text().splitlines(True)[:-1]))
    with pytest.raises(DataError, match="is unfinished: 1 of 2 images .*--shard 0/3 --resume"):
        merge([paths[0], str(cut), paths[2]])
    with pytest.raises(DataError, match="unsharded run"):
        merge(paths + [str(single_run[1])])


def test_merge_refuses_shards_of_different_runs(runners, photo_set, tmp_path):
    a, b = str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")
    run(runners, photo_set, a, limit=4, shard=(0, 2))
    run(runners, photo_set, b, limit=5, shard=(1, 2))
    with pytest.raises(DataError, match="belongs to a different run .*differs in limit"):
        merge([a, b])


@pytest.fixture
def with_broken_image(photo_set, tmp_path):
    img = tmp_path / "img"
    shutil.copytree(photo_set[0], img)
    (img / "zz_broken.JPEG").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    lst = tmp_path / "val_list.txt"
    lst.write_text(Path(photo_set[1]).read_text() + "zz_broken.JPEG 3\n")
    return str(img), str(lst)


def test_bad_image_stops_with_file_and_decoder_error(runners, with_broken_image, tmp_path):
    with pytest.raises(DataError) as e:
        run(runners, with_broken_image, tmp_path / "r.jsonl", batch_size=4)
    assert "zz_broken.JPEG" in str(e.value) and "OSError" in str(e.value) and "--skip-bad" in str(e.value)
    _, done = read_results(str(tmp_path / "r.jsonl"))
    assert len(done) == 4  # the batches before it are kept


def test_skip_bad_counts_and_lists(runners, with_broken_image, tmp_path):
    s = run(runners, with_broken_image, tmp_path / "r.jsonl", batch_size=4, skip_bad=True, workers=2)
    assert s["n_bad"] == 1 and s["n_evaluated"] == N_PHOTOS and s["complete"]
    assert s["bad_images"][0]["path"] == "zz_broken.JPEG" and "OSError" in s["bad_images"][0]["error"]
    assert s["top1"]["torch"] == pytest.approx(100 * 4 / 6)  # bad images do not count as wrong


class Fixed:
    """A runner returning given logits per image (bookkeeping tests)."""

    def __init__(self, label, top1_by_image):
        self.label, self.top1, self.i = label, top1_by_image, 0

    def __call__(self, x):
        out = np.zeros((len(x), 1000), np.float32)
        for j in range(len(x)):
            out[j, self.top1[self.i]] = 1.0
            self.i += 1
        return out


def test_disagreements_and_paired_counts(photo_set, tmp_path):
    labels = [int(line.split()[1]) for line in Path(photo_set[1]).read_text().splitlines()]
    t = labels[:4] + [7, 8]  # right on 0-3
    p = [labels[0], 11, 12, labels[3], labels[4], 8]  # right on 0, 3, 4
    fake = {"torch": Fixed("fake torch", t), "paddle": Fixed("fake paddle", p)}
    s = run(fake, photo_set, tmp_path / "r.jsonl")
    assert s["n_disagree"] == 3 and s["agreement_top1"] == pytest.approx(50.0)
    assert [d["path"][:2] for d in s["disagreements"]] == ["01", "02", "04"]
    assert s["disagreements"][0]["torch"] == labels[1] and s["disagreements"][0]["paddle"] == 11
    paired = s["paired"]
    assert (paired["a_only_correct"], paired["b_only_correct"]) == (2, 1)
    assert paired["mcnemar_exact_p"] == 1.0  # n = 3: 2 * P(X <= 1) = 2 * 4/8
    assert paired["top1_difference_points"] == pytest.approx(100 / 6)


def test_float16_on_cpu_torch_native_paddle_emulated(state, photo_set, tmp_path):
    from converters.table.mapping import mapping_table

    r16 = build_runners(ARCH, ["torch", "paddle"], state, mapping_table(ARCH).convert(state, "official", "paddle"),
                        precision="float16")
    assert "float16" in r16["torch"].label and "EMULATED" in r16["paddle"].label
    s = run(r16, photo_set, tmp_path / "r.jsonl", limit=2, check=logit_check(ARCH, state, r16, precision="float16"))
    assert s["n_evaluated"] == 2
    # Both judged against the float64 recomputation, the bar set by torch's own float16 error.
    (c,) = s["logit_checks"]
    assert c["pass"] and c["precision"] == "float16" and set(c["judgements"]) == {"torch", "paddle"}
    torch_j = c["judgements"]["torch"]  # the reference itself: same kernels, same input: reported, not judged
    assert torch_j["verdict"] == "reference" and torch_j["passed"] is None and torch_j["margin"] is None
    assert torch_j["error"] == torch_j["reference_error"] > 1e3 * 2.0 ** -23  # really float16, not float32
    paddle_j = c["judgements"]["paddle"]
    assert paddle_j["passed"] and paddle_j["reference_error"] == torch_j["error"]


def test_paddle_bfloat16_is_refused_not_faked(state):
    with pytest.raises(DataError, match="no bfloat16 path"):
        build_runners(ARCH, ["paddle"], None, {}, precision="bfloat16")


def test_cli_eval_and_merge(photo_set, tmp_path, capsys):
    from parity.commands.cli import main

    common = ["eval", "--seeded", "--arch", ARCH, "--data", photo_set[0], "--list", photo_set[1],
              "--batch-size", "3", "--workers", "0", "--threads", "2"]
    for k in (0, 1):
        assert main(common + ["--shard", f"{k}/2", "--results", str(tmp_path / f"s{k}.jsonl")]) == 0
    assert main(["merge", str(tmp_path / "s0.jsonl"), str(tmp_path / "s1.jsonl"),
                 "--json", str(tmp_path / "m.json")]) == 0
    merged = json.loads((tmp_path / "m.json").read_text())
    assert merged["n_evaluated"] == N_PHOTOS and merged["top1"]["torch"] == pytest.approx(100 * 4 / 6)
    out = capsys.readouterr().out
    assert "top-1" in out and "McNemar" in out
    bad_list = tmp_path / "bad.txt"
    bad_list.write_text("x.JPEG 1 2\n")
    assert main(common[:6] + ["--list", str(bad_list)]) == 2
    assert "line 1" in capsys.readouterr().err


def test_folder_layout_gives_the_same_predictions(single_run, runners, photo_set, tmp_path):
    """The same photos as class sub-folders (labels = sorted folder index):
    identical per-image predictions to the list layout's run."""
    _, list_results = single_run
    _, by_list = read_results(str(list_results))
    names = sorted(os.listdir(photo_set[0]))
    for i, name in enumerate(names):
        (tmp_path / "val" / f"class_{i % 3}").mkdir(parents=True, exist_ok=True)
        shutil.copy(os.path.join(photo_set[0], name), tmp_path / "val" / f"class_{i % 3}" / name)
    ds = open_dataset(str(tmp_path / "val"))
    assert ds.layout == "folders" and {s.label for s in ds.samples} == {0, 1, 2}
    header = make_header(ARCH, "float32", "cpu", runners, {"source": "seeded"}, ds, None, None, len(ds))
    s = evaluate(runners, ds, ds.samples, header, str(tmp_path / "r.jsonl"), batch_size=4)
    assert s["n_evaluated"] == N_PHOTOS and s["agreement_top1"] == 100.0
    _, by_folder = read_results(str(tmp_path / "r.jsonl"))
    preds_list = {r["path"]: r["pred"] for r in by_list}
    preds_folder = {r["path"].split("/")[1]: r["pred"] for r in by_folder}
    assert preds_folder == preds_list


def test_cli_eval_runs_paddle_on_the_checked_predictor_and_falls_back_loudly(photo_set, tmp_path, capsys,
                                                                           monkeypatch):
    from parity.fastpath import inference
    from parity.commands.cli import main

    common = ["eval", "--seeded", "--arch", ARCH, "--data", photo_set[0], "--list", photo_set[1], "--limit", "4",
              "--batch-size", "4", "--workers", "0", "--threads", "2"]
    assert main(common + ["--json", str(tmp_path / "fast.json"), "--results", str(tmp_path / "fast.jsonl")]) == 0
    fast = json.loads((tmp_path / "fast.json").read_text())
    assert "predictor (oneDNN, float32)" in fast["runners"]["paddle"]
    assert "eager channels-last" in fast["runners"]["torch"]
    # The run's own start-up check judged the predictor's logits, not only its constructor.
    assert fast["logit_checks_pass"] and "predictor" in fast["logit_checks"][0]["judgements"]["paddle"]["candidate"]
    printed = capsys.readouterr()
    assert "start-up check passed" in printed.err and "Throughput: 4 images in" in " ".join(printed.out.split())
    # The run's images/s: every stage's time lies inside the loop's wall time.
    t = fast["throughput"]
    assert t["images"] == 4 and t["stages"]["decode"]["images"] == 4 and t["stages"]["decode"]["workers"] == 0
    inside = t["models_s"] + t["decode_wait_s"] + t["check_s"] + t["write_s"]
    assert 0 < inside <= t["run_s"] and t["images_per_s"] == pytest.approx(4 / t["run_s"])
    assert all(t["stages"][fw]["s"] > 0 for fw in ("torch", "paddle", "decode")) and t["startup_s"] > 0
    # In-process decoding is waited for in full: its busy time is part of the wait.
    assert t["stages"]["decode"]["s"] <= t["decode_wait_s"]

    assert main(common + ["--runner", "eager", "--json", str(tmp_path / "eager.json"),
                          "--results", str(tmp_path / "eager.jsonl")]) == 0
    eager = json.loads((tmp_path / "eager.json").read_text())
    assert "predictor" not in eager["runners"]["paddle"] and "eager" in eager["runners"]["paddle"]
    assert "channels-last" not in eager["runners"]["torch"]
    assert eager["top1"] == fast["top1"]  # 4 images, predictions far from ties
    # Eager torch is the check's bar itself: a reference row, never a pass; Paddle eager is judged.
    (c,) = eager["logit_checks"]
    assert c["judgements"]["torch"]["verdict"] == "reference" and c["judgements"]["torch"]["margin"] is None
    assert c["judgements"]["paddle"]["passed"] and c["pass"] is True
    assert {f["status"] for f in eager["fast_paths"].values()} == {"not tried"}
    out = capsys.readouterr().out
    assert "torch reference (its own error" in " ".join(out.split())

    class Unbuildable(inference.PredictorRunner):
        def __init__(self, *a, **k):
            raise RuntimeError("no oneDNN here")

    def unbuildable(*a, **k):
        raise RuntimeError("no channels-last kernels here")

    monkeypatch.setattr(inference, "PredictorRunner", Unbuildable)
    with monkeypatch.context() as m:
        m.setattr(runners_module, "_checked", unbuildable)
        assert main(common + ["--json", str(tmp_path / "fb.json"), "--results", str(tmp_path / "fb.jsonl")]) == 0
    fallback = json.loads((tmp_path / "fb.json").read_text())
    assert "(fast path unavailable)" in fallback["runners"]["paddle"]
    assert "(fast path unavailable)" in fallback["runners"]["torch"]
    assert "channels-last" not in fallback["runners"]["torch"]
    assert {f["status"] for f in fallback["fast_paths"].values()} == {"unavailable"}
    assert fallback["fast_paths_failed"] == []
    err = capsys.readouterr().err
    assert "WARNING: paddle falls back to eager: the predictor could not be built (RuntimeError: no oneDNN" in err
    assert "WARNING: torch falls back to eager: the channels-last path could not be built" in err


def test_fast_paths_computing_wrong_logits_fail_eval(photo_set, tmp_path, capsys, monkeypatch):
    """A fast path whose logits are wrong (planted: 0.1% on every logit, in
    each framework's fast path only) is a finding, not 'unavailable': labelled
    'failed its check' with its margin, in the JSON summary and the output,
    and eval exits 1 although the run itself went on eager."""
    from parity.commands.cli import main
    from parity.fastpath import inference

    torch_call, predictor_call = runners_module.TorchRunner.__call__, inference.PaddlePredictor.__call__

    def wrong_channels_last(self, x):
        out = torch_call(self, x)
        return out * np.float32(1.001) if not self.is_reference else out

    monkeypatch.setattr(runners_module.TorchRunner, "__call__", wrong_channels_last)
    monkeypatch.setattr(inference.PaddlePredictor, "__call__",
                        lambda self, x: predictor_call(self, x) * np.float32(1.001))
    rc = main(["eval", "--seeded", "--arch", ARCH, "--data", photo_set[0], "--list", photo_set[1], "--limit", "2",
               "--batch-size", "2", "--workers", "0", "--threads", "2", "--json", str(tmp_path / "s.json"),
               "--results", str(tmp_path / "r.jsonl")])
    printed = capsys.readouterr()
    assert rc == 1
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["fast_paths_failed"] == ["torch", "paddle"]
    for fw, what in (("torch", "the channels-last path"), ("paddle", "the predictor")):
        f = s["fast_paths"][fw]
        assert f["status"] == "failed its check" and f["path"] == what
        assert f["margin"] == f["judgement"]["margin"] > 1 and f["judgement"]["pass"] is False
        assert s["runners"][fw].endswith("(fast path failed its check)") and "unavailable" not in s["runners"][fw]
        assert f"WARNING: {fw}: {what} FAILED its start-up check (margin" in printed.err
        assert f"Fast path FAILED its check: {fw} {what} (margin {f['margin']:.3g})" in " ".join(printed.out.split())
    # The eager fallback itself computed right: the run's own logit check passes (torch eager is its reference).
    assert s["logit_checks_pass"] is True


def test_torch_channels_last_check_refuses_wrong_logits():
    """The fast torch path's start-up check is a real check: the same runner
    with one weight 0.1% off fails it (the truth is built from the weights
    the runner was given, not from its model)."""
    import torch

    from converters.table.errors import VerificationError
    from parity.accuracy.runners import TorchRunner
    from parity.core.seeded import seeded_state

    runner = TorchRunner(ARCH, seeded_state(ARCH), channels_last=True)
    check = runner.check()
    assert check["pass"] and 0 <= check["margin"] < 1
    with torch.no_grad():
        runner.model.fc_linear.weight.mul_(1.001)
    with pytest.raises(VerificationError, match="start-up check failed"):
        runner.check()


def test_eval_refuses_a_pdparams_the_layer_diff_fails(photo_set, tmp_path, capsys):
    """A .pdparams whose BN variance is 1.01x on one channel of
    module_list.7.conv_list.0.7 (a channel the following ReLU zeroes on these
    inputs, so a few logits cannot show it) fails eval, with either runner,
    before anything is evaluated; the clean conversion passes the same check."""
    import paddle
    import torch

    from converters.conversion.convert import convert
    from converters.table.mapping import mapping_table
    from parity.commands.cli import main

    state = seeded_state(ARCH)
    pth = str(tmp_path / "GENet_small.pth")
    torch.save({"state_dict": {k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}}, pth)
    clean = str(tmp_path / "clean.pdparams")
    convert(pth, clean, verify=False)
    tensors = paddle.load(clean, return_numpy=True)
    row = next(r for r in mapping_table(ARCH).modules if r.official == "module_list.7.conv_list.0.7")
    assert row.kind == "bn"
    key = f"{row.paddle}._variance"
    tensors[key] = tensors[key].copy()
    tensors[key][0] *= np.float32(1.01)
    bad = str(tmp_path / "bad.pdparams")
    paddle.save(tensors, bad)
    common = ["eval", "--weights", pth, "--data", photo_set[0], "--list", photo_set[1], "--limit", "2",
              "--batch-size", "2", "--workers", "0", "--threads", "2"]
    for runner in ("fast", "eager"):
        results = tmp_path / f"bad_{runner}.jsonl"
        assert main(common + ["--pdparams", bad, "--runner", runner, "--results", str(results)]) == 1
        err = capsys.readouterr().err
        assert "Verification failed:" in err and "bad.pdparams does not compute what" in err
        assert "first divergent module module_list.7.conv_list.0.7 (isolated error)" in err
        assert "Nothing was evaluated" in err and not results.exists()
    assert main(common + ["--pdparams", clean, "--runner", "eager", "--json", str(tmp_path / "ok.json"),
                          "--results", str(tmp_path / "ok.jsonl")]) == 0
    s = json.loads((tmp_path / "ok.json").read_text())
    check = s["pdparams_check"]
    assert check["pass"] is True and check["first_divergent"] is None
    assert check["coverage"]["compared"] == check["coverage"]["total"] > 100


def test_a_fast_path_failure_in_any_shard_or_resumption_is_kept():
    """The summary reports a fast path that failed its check in any run whose
    check record it reads (a shard, a resumption), not only this run's header."""
    from parity.accuracy.summary import summarize

    ok = {"status": "passed its check", "path": "the predictor", "reason": "", "margin": 0.1}
    bad = {"status": "failed its check", "path": "the predictor", "reason": "wrong", "margin": 40.0}
    header = {"arch": ARCH, "precision": "float32", "device": "cpu", "frameworks": ["torch", "paddle"],
              "runners": {"torch": "t", "paddle": "p"}, "fast_paths": {"torch": ok, "paddle": ok},
              "weights": {}, "dataset": {}, "limit": None, "expected": 0}
    checks = [{"type": "check", "pass": True, "fast_paths": {"torch": ok, "paddle": ok}, "shard": [0, 2]},
              {"type": "check", "pass": True, "fast_paths": {"torch": ok, "paddle": bad}, "shard": [1, 2]}]
    s = summarize(header, checks)
    assert s["fast_paths_failed"] == ["paddle"] and s["fast_paths"]["paddle"] == dict(bad, shard=[1, 2])
    assert s["fast_paths"]["torch"] == ok
    assert summarize(header, checks[:1])["fast_paths_failed"] == []
