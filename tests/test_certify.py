"""The certificate: every check in the JSON and the HTML, honest verdicts,
input hashes, thresholds that decide."""
from __future__ import annotations

import argparse
import hashlib
import json
import os

import numpy as np
import pytest

from parity import certify_cmd
from parity.certificate import to_html, to_json
from parity.certify import (FAIL, INFO, NOT_APPLICABLE, NOT_RUN, PASS, SKIPPED, Check, CertifyOptions, Thresholds,
                            certify, evaluation_checks, verdict)

EXPECTED_DEMO_CHECKS = {"conversion", "layer_diff", "logits_float32", "torch_top1_vs_published_float32",
                        "paddle_top1_vs_torch_float32", "agreement_float32", "evaluation_float16", "latency"}


def parse(argv):
    p = argparse.ArgumentParser()
    certify_cmd.add_arguments(p)
    return p.parse_args(argv)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("cert")
    cwd = os.getcwd()
    os.chdir(out)
    try:
        opts = certify_cmd.build_options(parse(["--demo", "--limit", "4", "--workers", "0"]))
        # the benchmark's own bookkeeping is tested elsewhere: eager paths, few iterations
        opts.bench_options = {"warmup": 1, "iters": 2, "modes": ("eager",), "pipeline_workers": ()}
        cert = certify(opts, say=lambda m: None)
    finally:
        os.chdir(cwd)
    return cert, opts, out


def test_demo_certificate_has_every_check_with_threshold_and_value(demo):
    cert, _, _ = demo
    checks = {c["id"]: c for c in cert["checks"]}
    assert set(checks) == EXPECTED_DEMO_CHECKS
    for c in checks.values():
        assert c["status"] in (PASS, FAIL, NOT_RUN, NOT_APPLICABLE, SKIPPED, INFO) and c["title"]
        assert c["threshold"] and c["measured"]
    assert checks["conversion"]["status"] == PASS and checks["layer_diff"]["status"] == PASS
    assert checks["logits_float32"]["status"] == PASS and "margin" in checks["logits_float32"]["measured"]
    assert checks["agreement_float32"]["status"] == PASS and checks["paddle_top1_vs_torch_float32"]["status"] == PASS
    assert checks["torch_top1_vs_published_float32"]["status"] == SKIPPED  # synthetic labels
    assert checks["evaluation_float16"]["status"] == SKIPPED and "no GPU" in checks["evaluation_float16"]["reason"]
    assert checks["latency"]["status"] == INFO and "ms/image" in checks["latency"]["measured"]
    assert cert["verdict"] == "DEMO (PASS; not a reproduction certificate)"
    assert "SYNTHETIC labels" in cert["demo_note"]
    assert cert["evaluation"]["float32"]["n_evaluated"] == 4


def test_inputs_are_hashed(demo):
    cert, opts, out = demo
    by_role = {i["role"]: i for i in cert["inputs"]}
    for role, path in [("weights", os.path.join(out, opts.weights)), ("list", os.path.join(out, opts.list_file))]:
        with open(path, "rb") as f:
            assert by_role[role]["sha256"] == hashlib.sha256(f.read()).hexdigest()
    assert any(i["role"].startswith("converted pdparams") for i in cert["inputs"])
    assert cert["published"]["top1"] == 75.7 and cert["thresholds"]["min_agreement_pct"] == 99.9
    assert {"torch", "paddle", "numpy", "pillow", "python"} <= set(cert["environment"])


def test_json_and_html_contain_every_check(demo):
    cert, _, _ = demo
    data = json.loads(to_json(cert))
    assert [c["id"] for c in data["checks"]] == [c["id"] for c in cert["checks"]]
    page = to_html(cert)
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page and "http" not in page.split("</style>")[0]
    for c in cert["checks"]:
        assert c["id"] in page and c["title"] in page
        assert f">{c['status']}</span>" in page
    for i in cert["inputs"]:
        assert i["sha256"] in page
    assert "75.7" in page and "DEMO" in page and "SYNTHETIC labels" in page


def test_cli_writes_both_files_and_exit_code(tmp_path, monkeypatch):
    from parity.cli import main

    monkeypatch.chdir(tmp_path)
    prefix = str(tmp_path / "c")
    assert main(["certify", "--demo", "--limit", "2", "--workers", "0", "--no-bench", "--out", prefix]) == 4
    cert = json.loads((tmp_path / "c.json").read_text())
    assert cert["verdict"] == "DEMO (INCOMPLETE; not a reproduction certificate)"  # latency not run
    latency = next(c for c in cert["checks"] if c["id"] == "latency")
    assert latency["status"] == NOT_RUN and "--no-bench" in latency["reason"]
    assert "latency" in (tmp_path / "c.html").read_text()


def test_bad_arguments_exit_2(tmp_path, capsys):
    from parity.cli import main

    assert main(["certify", "--data", str(tmp_path)]) == 2
    assert "--weights" in capsys.readouterr().err
    assert main(["certify", "--demo", "--weights", "x.pth"]) == 2


def test_a_tampered_pdparams_fails_and_the_layer_diff_names_the_layer(demo, tmp_path):
    """A .pdparams that is not the conversion of the weights: the exact-copy
    check fails, the layer diff points at the changed layer, the verdict is FAIL."""
    from converters import load_weights, to_layout
    from converters.io import write_pdparams

    _, demo_opts, out = demo
    weights = os.path.join(out, demo_opts.weights)
    paddle = to_layout(load_weights(weights), "paddle")
    key = next(k for k in paddle if k.startswith("module_list.3") and k.endswith("_mean"))
    paddle[key] = paddle[key] + np.float32(0.5)
    tampered = str(tmp_path / "tampered.pdparams")
    write_pdparams(paddle, tampered)
    opts = CertifyOptions(arch="small", weights=weights, pdparams=tampered, data=os.path.join(out, demo_opts.data),
                          list_file=os.path.join(out, demo_opts.list_file), out_prefix=str(tmp_path / "t"),
                          limit=2, batch_size=2, workers=0, bench=False)
    cert = certify(opts, say=lambda m: None)
    checks = {c["id"]: c for c in cert["checks"]}
    assert checks["conversion"]["status"] == PASS  # the fresh conversion is fine
    assert checks["pdparams_matches"]["status"] == FAIL and "0.5" in checks["pdparams_matches"]["measured"]
    assert checks["layer_diff"]["status"] == FAIL and "module_list.3" in checks["layer_diff"]["measured"]
    assert checks["torch_top1_vs_published_float32"]["status"] == NOT_APPLICABLE  # 2 images, not 50,000
    assert cert["verdict"] == FAIL
    assert any(i["role"] == "pdparams" for i in cert["inputs"])


def summary(top1_torch, top1_paddle, agreement, n=50_000, complete=True):
    return {"top1": {"torch": top1_torch, "paddle": top1_paddle}, "dataset": {"n_images": n}, "complete": complete,
            "n_bad": 0, "n_evaluated": n, "agreement_top1": agreement, "n_disagree": round(n * (1 - agreement / 100)),
            "paired": {"mcnemar_exact_p": 0.5, "top1_difference_ci_points": [-0.01, 0.01]}}


@pytest.mark.parametrize("t, p, agree, expected", [
    (81.30, 81.30, 100.0, [PASS, PASS, PASS]),
    (81.39, 81.35, 99.95, [PASS, PASS, PASS]),  # within 0.1 of 81.3, 0.04 of torch
    (81.41, 81.41, 100.0, [FAIL, PASS, PASS]),  # 0.11 from the published figure
    (81.30, 81.36, 100.0, [PASS, FAIL, PASS]),  # Paddle 0.06 from torch
    (81.30, 81.30, 99.89, [PASS, PASS, FAIL]),  # agreement below 99.9%
])
def test_thresholds_decide_on_the_full_val_set(t, p, agree, expected):
    opts = CertifyOptions(arch="large", weights="w", data="d", list_file=None, out_prefix="x")
    checks = evaluation_checks(summary(t, p, agree), opts, "large", "float32")
    assert [c.status for c in checks] == expected


def test_thresholds_are_configurable_and_subsets_are_not_judged_against_the_paper():
    opts = CertifyOptions(arch="large", weights="w", data="d", list_file=None, out_prefix="x",
                          thresholds=Thresholds(torch_top1_points=0.5, paddle_top1_points=0.1, min_agreement_pct=99.0))
    assert [c.status for c in evaluation_checks(summary(81.7, 81.78, 99.5), opts, "large", "float32")] == [PASS] * 3
    sub = evaluation_checks(summary(81.3, 81.3, 100.0, n=1000), opts, "large", "float32")
    assert sub[0].status == NOT_APPLICABLE and "50,000" in sub[0].reason


def test_verdict():
    def c(status):
        return Check("x", "x", status, "-", "-")

    assert verdict([c(PASS), c(INFO), c(SKIPPED)], demo=False) == PASS
    assert verdict([c(PASS), c(NOT_RUN)], demo=False) == "INCOMPLETE"
    assert verdict([c(PASS), c(NOT_APPLICABLE)], demo=False) == "INCOMPLETE"
    assert verdict([c(NOT_RUN), c(FAIL)], demo=False) == FAIL
    assert verdict([c(PASS)], demo=True) == "DEMO (PASS; not a reproduction certificate)"
