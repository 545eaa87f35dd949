"""Layer diff acceptance: clean conversions pass everywhere; single injected
faults are localised to exactly the corrupted layer; reports say so.

References are independent of the code under test: the float64 torch model
(inside the tool), the official code's block outputs in tests/data, and the
position of the fault the test itself injected.
"""
from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

from converters.table.mapping import mapping_table
from parity.layers.diff import run_layer_diff
from parity.layers.records import LayerDiffResult
from parity.core.modules import paddle_layer, torch_module
from parity.layers.report import to_html, to_json, to_markdown
from parity.core.seeded import seeded_state

from .conftest import DATA

ARCHS = ("small", "normal", "large")


def _paddle_state(arch):
    return mapping_table(arch).convert(seeded_state(arch), "official", "paddle")


def _param(arch, module, role):
    """The mapping row of one tensor, found by its official module and role."""
    return next(r for r in mapping_table(arch).rows if r.module == module and r.role == role)


def _module_row(arch, kind, pick):
    rows = [m for m in mapping_table(arch).modules if m.kind == kind]
    return pick(rows)


def _check_localised(result: LayerDiffResult, official_module: str):
    assert not result.passed
    first = result.first_divergent
    assert first is not None and first.torch_name == official_module, result.failures
    # Every layer before it is clean in isolation: the fault is named, not one downstream of it.
    before = [r for r in result.layers if r.index < first.index]
    assert before and all(r.isolated_pass and not r.hparam_mismatches for r in before)
    assert result.coverage == 1.0
    return first


# ---------------------------------------------------------------- clean conversions

@pytest.fixture(scope="module")
def clean():
    """One clean run per variant, shared by the tests below (the large one is the slowest step)."""
    cache = {}

    def get(arch):
        if arch not in cache:
            cache[arch] = run_layer_diff(arch, seeded_state(arch), batch_size=1 if arch == "large" else 2)
        return cache[arch]
    return get


@pytest.mark.parametrize("arch", ARCHS)
def test_every_layer_passes_on_converted_weights(clean, arch):
    r = clean(arch)
    table = mapping_table(arch)
    assert r.passed, r.failures
    assert r.first_divergent is None
    assert len(r.layers) == r.total == len(table.modules)
    assert [x.torch_name for x in r.layers] == [m.official for m in table.modules]
    assert {x.kind for x in r.layers} == {"conv", "bn", "relu", "unit", "block", "pool", "fc"}
    for x in r.layers:
        # Paddle really is within rounding noise of torch, not merely "finite".
        assert x.paddle_error_f64 <= x.tolerance and x.isolated_paddle_error_f64 <= x.isolated_tolerance
        assert x.cosine > 0.99999 and x.isolated_max_abs <= x.isolated_tolerance + x.isolated_torch_error_f64
    logits = r.layers[-1]
    assert logits.torch_name == "fc_linear" and logits.shape[1] == 1000


def test_float64_bar_is_rounding_noise_not_slack(clean):
    """The tolerance is built from torch's own float32 error, which must be
    of float32 rounding size: a bar that lets real errors through is a defect."""
    r = clean("small")
    for x in r.layers:
        assert x.isolated_tolerance < 1e-4 * x.scale, (x.torch_name, x.isolated_tolerance, x.scale)
        assert x.tolerance < 1e-4 * x.scale, (x.torch_name, x.tolerance, x.scale)
    # ReLU is exact in both frameworks: the bar there is only the ulp floor.
    relu = [x for x in r.layers if x.kind == "relu"]
    assert relu and all(x.isolated_torch_error_f64 == 0 and x.isolated_paddle_error_f64 == 0 for x in relu)


def test_reference_column_matches_official_block_outputs():
    """Third column: the official code's outputs of every top-level module of
    the small model (seeded weights, seeded input) against both frameworks."""
    path = os.path.join(DATA, "official_reference", "small_block_outputs.npz")
    r = run_layer_diff("small", seeded_state("small"), reference=path)
    with np.load(path) as ref:
        names = set(ref.files)
    got = {x.torch_name: x for x in r.layers if x.reference_max_abs is not None}
    rows = {m.official for m in mapping_table("small").modules}
    # A NetBlock wrapper's output is its `.netblock` layer's output.
    expected = {n if n in rows else n + ".netblock" for n in names}
    assert expected <= rows
    assert set(got) == expected
    for x in got.values():
        # Within the rule of the float64 recomputation, like torch and Paddle themselves: |official - torch|
        # at most the bar plus torch's own error, |official - Paddle| at most twice the bar.
        assert x.torch_reference_max_abs <= x.tolerance + x.torch_error_f64, x.torch_name
        assert x.reference_max_abs <= 2 * x.tolerance, x.torch_name
    assert r.passed


def test_reference_with_unknown_module_is_an_error(tmp_path):
    bad = tmp_path / "ref.npz"
    np.savez(bad, **{"module_list.99": np.zeros(1, np.float32)})
    with pytest.raises(ValueError, match=r"module_list\.99"):
        run_layer_diff("small", seeded_state("small"), reference=str(bad))


# ---------------------------------------------------------------- fault injection

def test_fault_bn_mean_channels_swapped_deep_in_stage_4():
    """Two channels of the running mean of the last BN of the last unit of the
    4th super block swapped in the Paddle weights."""
    arch = "small"
    block = mapping_table(arch).arch.super_blocks[3]
    bn = _module_row(arch, "bn", lambda rows: [m for m in rows if m.node.site.stage == 3][-1])
    assert bn.node.site.unit == len(block.units) - 1
    key = _param(arch, bn.official, "mean").paddle
    state = _paddle_state(arch)
    mean = state[key].copy()
    assert mean[3] != mean[7]
    mean[[3, 7]] = mean[[7, 3]]
    state[key] = mean
    r = run_layer_diff(arch, seeded_state(arch), state)
    first = _check_localised(r, bn.official)
    assert first.kind == "bn" and not first.isolated_pass
    # The corrupted channels are where the worst element is.
    assert first.isolated_worst_index[1] in (3, 7)
    # The error is inherited downstream: later layers fail accumulated but not isolated.
    later = [x for x in r.layers if x.index > first.index and x.kind in ("conv", "bn")]
    assert later and all(x.isolated_pass for x in later)
    assert not r.layers[-1].accumulated_pass


def test_fault_fc_weight_reshaped_instead_of_transposed():
    """The classic converter bug behind "transpose the fc weight": torch's
    [out, in] weight reshaped to Paddle's [in, out] instead of transposed.
    (A plain un-transposed weight cannot even be loaded: its shape is wrong
    and the loader names the key; see test_untransposed_fc_is_refused.)"""
    arch = "small"
    key = _param(arch, "fc_linear", "weight")
    w = seeded_state(arch)[key.official]
    state = _paddle_state(arch)
    state[key.paddle] = np.ascontiguousarray(w.reshape(key.paddle_shape))
    r = run_layer_diff(arch, seeded_state(arch), state)
    first = _check_localised(r, "fc_linear")
    assert first.paddle_name == "fc_linear" and first.kind == "fc"
    assert all(x.passed for x in r.layers[:-1])


def test_untransposed_fc_is_refused():
    from converters.table.errors import CheckpointError

    arch = "small"
    key = _param(arch, "fc_linear", "weight")
    state = _paddle_state(arch)
    state[key.paddle] = seeded_state(arch)[key.official]  # [out, in] left as is
    with pytest.raises(CheckpointError, match=re.escape("fc_linear.weight")):
        run_layer_diff(arch, seeded_state(arch), state)


def _zeroed_conv_is_localised(arch, conv):
    """The layer diff with `conv`'s weight zeroed on the Paddle side: `conv`
    is the first divergent row, its isolated output all zeros."""
    key = _param(arch, conv.official, "weight").paddle
    state = _paddle_state(arch)
    state[key] = np.zeros_like(state[key])
    r = run_layer_diff(arch, seeded_state(arch), state)
    first = _check_localised(r, conv.official)
    assert first.isolated_worst_paddle == 0.0 and first.isolated_cosine == 0.0
    return r


def test_fault_zeroed_conv():
    """The 3x3 conv of the second unit of the K1KXK1 super block zeroed."""
    arch = "small"
    conv = _module_row(arch, "conv", lambda rows: [m for m in rows if m.node.site.stage == 2
                                                    and m.node.site.unit == 1 and m.node.kernel_size == 3][0])
    _zeroed_conv_is_localised(arch, conv)


def test_hyperparameter_mismatch_is_reported(monkeypatch):
    """A Paddle model built with a different BN epsilon (and momentum
    convention) on one layer: named as a hyper-parameter mismatch."""
    import paddle_genet

    arch = "small"
    bn = _module_row(arch, "bn", lambda rows: rows[5])
    build = paddle_genet.build

    def bad_build(a, *args, **kw):
        model = build(a, *args, **kw)
        layer = paddle_layer(model, bn.paddle)
        layer._epsilon = 1e-3
        layer._momentum = 0.1  # torch's number used as is: the convention error
        return model
    monkeypatch.setattr(paddle_genet, "build", bad_build)
    r = run_layer_diff(arch, seeded_state(arch))
    first = _check_localised(r, bn.official)
    text = "; ".join(first.hparam_mismatches)
    assert "eps: torch 1e-05, Paddle 0.001" in text and "momentum (torch convention): torch 0.1, Paddle 0.9" in text
    assert r.to_dict()["first_divergent"]["reason"] == "hyper-parameters"


def test_mistyped_paths_raise():
    import paddle_genet
    import torch_ref

    t, p = torch_ref.build("small"), paddle_genet.build("small")
    assert torch_module(t, "module_list.3.conv_list.0.0") is t.module_list[3].conv_list[0][0]
    assert paddle_layer(p, "module_list.3.conv_list.0.0") is p.module_list[3].conv_list[0][0]
    with pytest.raises(LookupError, match="conv_lst"):
        paddle_layer(p, "module_list.3.conv_lst.0.0")
    with pytest.raises(LookupError, match="conv_lst"):
        torch_module(t, "module_list.3.conv_lst.0.0")
    # A parameter or plain attribute is not a layer.
    with pytest.raises(LookupError):
        paddle_layer(p, "fc_linear.weight")


def test_incomplete_coverage_fails():
    r = LayerDiffResult(arch="small", dtype="float32", device="cpu", emulated=False, tolerance={}, layers=[],
                        total=137, missing=[], input_info={}, weights_info={}, environment={}, seconds=0.0)
    assert not r.passed and "no layer was compared" in r.failures


# ---------------------------------------------------------------- precision and tolerance modes

def test_emulated_float16_is_labelled_and_passes():
    r = run_layer_diff("small", seeded_state("small"), dtype="float16")
    d = r.to_dict()
    assert r.passed, r.failures
    assert d["emulated"] is True and "EMULATED" in d["precision_note"]
    assert "EMULATED" in to_html(d) and "EMULATED" in to_markdown(d)
    # Every layer output really was rounded to float16 on both sides.
    assert d["tolerance"]["eps"] == float(np.finfo(np.float16).eps)


def test_absolute_overrides_skip_float64_and_judge_elements():
    arch = "small"
    ok = run_layer_diff(arch, seeded_state(arch), atol=1e-4, rtol=1e-4)
    assert ok.passed and ok.layers[0].torch_error_f64 is None
    assert ok.to_dict()["tolerance"]["mode"] == "absolute"
    tight = run_layer_diff(arch, seeded_state(arch), atol=0.0, rtol=0.0)
    assert not tight.passed  # float32 kernels of two frameworks are not bit-identical everywhere
    with pytest.raises(ValueError, match="together"):
        run_layer_diff(arch, seeded_state(arch), atol=1e-4)


# ---------------------------------------------------------------- reports

@pytest.fixture(scope="module")
def fault_report():
    arch = "small"
    conv = next(m for m in mapping_table(arch).modules if m.kind == "conv" and m.node.site.stage == 1)
    key = _param(arch, conv.official, "weight").paddle
    state = _paddle_state(arch)
    state[key] = np.zeros_like(state[key])
    return conv, run_layer_diff(arch, seeded_state(arch), state).to_dict()


def test_json_report_schema_and_content(fault_report, tmp_path):
    conv, d = fault_report
    path = tmp_path / "r.json"
    from parity.layers.report import write_atomic

    write_atomic(str(path), to_json(d))
    j = json.loads(path.read_text())
    assert j["schema"] == "genet-parity/layers" and j["schema_version"] == 1
    assert j["pass"] is False
    assert j["first_divergent"]["torch_name"] == conv.official
    assert j["first_divergent"]["paddle_name"] == conv.paddle
    assert j["coverage"] == {"compared": 137, "total": 137, "fraction": 1.0, "missing": []}
    for key in ("schema", "torch", "paddle", "numpy", "device", "precision", "threads", "precision_flags",
                "paddle_flags"):
        assert key in j["environment"]
    layer = next(x for x in j["layers"] if x["torch_name"] == conv.official)
    for key in ("torch_name", "paddle_name", "max_abs", "mean_abs", "max_rel", "rel_l2", "cosine",
                "isolated_max_abs", "pass", "amplification", "frac_outside"):
        assert key in layer
    assert layer["pass"] is False and layer["isolated_pass"] is False and layer["frac_outside"] > 0.5
    assert sum(1 for x in j["layers"] if not x["isolated_pass"]) >= 1
    assert [x["torch_name"] for x in j["layers"]] == [m.official for m in mapping_table("small").modules]


def test_html_report_is_self_contained_and_marks_the_divergent_layer(fault_report):
    conv, d = fault_report
    page = to_html(d)
    assert page.startswith("<!DOCTYPE html>") and "FAIL" in page
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert 'id="divergent-marker"' in page and f"first divergent: {conv.official}" in page
    assert page.count('class="divergent"') == 1
    divergent_row = re.search(r'<tr class="divergent"[^>]*>(.*?)</tr>', page).group(1)
    assert conv.official in divergent_row
    # Both series are plotted, one point per layer.
    for name in ("accumulated", "isolated"):
        pts = re.search(rf'class="series-{name}"[^>]*points="([^"]*)"', page).group(1).split()
        assert len(pts) == len(d["layers"])
    assert page.count("<tr") == len(d["layers"]) + 1


def test_markdown_report_lists_the_failing_layer(fault_report):
    conv, d = fault_report
    md = to_markdown(d)
    assert "**FAIL**" in md and f"first divergent: {conv.official}" in md
    failing = md.split("Failing layers:")[1].split("<details>")[0]
    assert conv.official in failing


def test_float64_depthwise_shortcut_equals_torch_kernel():
    """The float64 reference computes depthwise convs by shifted sums (speed);
    it must equal torch's own float64 kernel."""
    import torch

    from parity.core.reference import fast_float64

    for stride in (1, 2):
        conv = torch.nn.Conv2d(12, 12, 3, stride=stride, padding=1, groups=12, bias=stride == 1).double()
        x = torch.randn(2, 12, 9, 10, dtype=torch.float64)
        with torch.no_grad():
            expected = conv(x)
            fast_float64(conv)
            got = conv(x)
        assert got.shape == expected.shape
        assert torch.allclose(got, expected, rtol=1e-13, atol=1e-13)


# ---------------------------------------------------------------- the engine's shortcuts

@pytest.mark.parametrize("unit", [0, 1])
def test_fault_in_a_units_first_layer_is_localised(unit):
    """The first conv of a unit's branch is fed the unit's input itself, so its
    isolated output is read from the isolated run of its container (the
    block's run for unit 0, the unit's own run after it) instead of a run of
    its own. A fault there must still be named, at that conv."""
    arch = "small"
    table = mapping_table(arch)
    conv = next(m for m in table.modules if m.kind == "conv" and m.node.site.unit == unit
                and m.official.split(".")[2:4] == ["conv_list", str(unit)] and m.official.endswith(".0")
                and len([u for u in table.modules if u.kind == "unit"
                         and u.official.startswith(".".join(m.official.split(".")[:2]) + ".")]) > 1)
    r = _zeroed_conv_is_localised(arch, conv)
    # The unit and the block holding it fail in isolation too (each run on torch's input).
    block = ".".join(conv.official.split(".")[:2])
    unit_row = next(x for x in r.layers if x.torch_name == f"{block}.unit_relu.{unit}")
    block_row = next(x for x in r.layers if x.torch_name == block)
    assert not unit_row.isolated_pass and not block_row.isolated_pass


def _stats_case(rng, n, kind):
    e = rng.standard_normal(n).astype(np.float32) * 3
    if kind == "close":
        a = (e * (1 + 1e-6 * rng.standard_normal(n))).astype(np.float32)
    elif kind == "far":
        a = rng.standard_normal(n).astype(np.float32)
    elif kind == "zeros":
        a = np.zeros(n, np.float32)
    else:  # equal
        a = e.copy()
    return a.reshape(-1, 7) if n % 7 == 0 else a, e.reshape(-1, 7) if n % 7 == 0 else e


@pytest.mark.parametrize("kind", ["close", "far", "zeros", "equal"])
@pytest.mark.parametrize("n", [7, 7 * 50_000])  # one piece, and several of the engine's pieces
def test_chunked_statistics_equal_the_float64_ones(kind, n):
    """The engine's float32 statistics (float64 sums, pieces) against
    parity.core.compare's float64 computation of the same quantities."""
    from parity.core.compare import compare
    from parity.layers.stats import compare32

    a, e = _stats_case(np.random.default_rng(n), n, kind)
    for atol, rtol in ((None, None), (1e-6, 1e-6), (0.0, 0.0)):
        got = compare32("x", a, e, atol=atol, rtol=rtol)
        want = compare("x", a, e, atol=atol, rtol=rtol, median=False)
        assert got.max_abs == pytest.approx(want.max_abs, rel=1e-6)
        assert got.max_abs_index == want.max_abs_index or got.max_abs == want.max_abs
        assert got.mean_abs == pytest.approx(want.mean_abs, rel=1e-6)
        assert got.max_rel == pytest.approx(want.max_rel, rel=1e-6)
        assert got.rel_l2 == pytest.approx(want.rel_l2, rel=1e-6, abs=1e-12)
        # Near 1 (the layer diff's case) to float64 precision; elsewhere to float32's (products rounded).
        assert got.cosine == pytest.approx(want.cosine, abs=1e-12 if kind in ("close", "equal") else 1e-6)
        assert got.ref_max_abs == want.ref_max_abs
        assert abs(got.n_outside - want.n_outside) <= max(1, want.n_outside // 10 ** 5)


def test_chunked_statistics_never_read_nan_or_inf_as_agreement():
    from parity.core.tolerances import max_abs, max_abs_error
    from parity.layers.stats import compare32

    e = np.ones(600_000, np.float32)
    for bad in (np.nan, np.inf):
        a = e.copy()
        a[500_000] = bad
        d = compare32("x", a, e, atol=1e-3, rtol=0.0)
        assert d.max_abs == np.inf and d.n_outside >= 1
        assert max_abs(e.astype(np.float64)) == 1.0 and max_abs_error(a, e.astype(np.float64)) == np.inf
    r = e.astype(np.float64)
    r[3] = np.nan
    assert max_abs(r) == np.inf and max_abs_error(e, r) == np.inf


def test_float64_errors_are_float64_exact():
    """max |x - f64| must resolve errors far below float32's resolution of
    the values (torch's rounding noise is that small), as numpy in float64 does."""
    from parity.core.tolerances import max_abs, max_abs_error

    rng = np.random.default_rng(3)
    r = rng.standard_normal(700_001) * 10
    x = r.astype(np.float32)
    assert max_abs(r) == np.max(np.abs(r))
    err = max_abs_error(x, r)
    assert err == np.max(np.abs(x.astype(np.float64) - r)) and 0 < err < 4e-6  # half a float32 ulp of ~50


def _planted(factor_of_bound: float, n: int = 1000):
    """float64 truth r, torch t with a known error, Paddle p whose error is
    `factor_of_bound` times the rule's bound, all hand-made."""
    from parity.core.tolerances import EPS, FACTOR, FLOOR_ULPS

    rng = np.random.default_rng(7)
    r = rng.uniform(-2.0, 2.0, n)
    r[0] = 4.0  # the scale, exactly
    t_err = 2.0 ** -20
    bound = FACTOR * t_err + FLOOR_ULPS * EPS["float32"] * 4.0  # the rule, written out by hand
    t, p = r.copy(), r.copy()
    t[5] += t_err
    p[9] += factor_of_bound * bound
    return r, t, p, bound


@pytest.mark.parametrize("factor", [0.999, 1.001])
def test_layer_diff_judges_by_the_shared_rule(factor, monkeypatch):
    """A planted Paddle error just below / just above the rule's bound passes /
    fails the layer diff's check, which gets its verdict from the one rule
    (tolerances.decide) and its numbers from the one max-abs helper."""
    from parity.core import tolerances
    from parity.layers.stats import check_side

    r, t, p, bound = _planted(factor)
    calls = []
    real = tolerances.decide
    monkeypatch.setattr(tolerances, "decide", lambda *a, **k: calls.append(a) or real(*a, **k))
    c = check_side("x", p, t, None, r, "float32", None, None, count_outside=True)
    assert calls == [(c.paddle_error, c.torch_error, 4.0, "float32")]
    assert c.torch_error == 2.0 ** -20 and c.paddle_error == pytest.approx(factor * bound, rel=1e-12)
    assert c.tolerance == pytest.approx(bound, rel=1e-15) and c.passed is (factor < 1)


def test_frac_outside_uses_the_bound_for_what_it_measures():
    """frac_outside counts |paddle - torch| beyond the rule's bound for that
    difference (bound + torch's own error), not the bound for |paddle - f64|."""
    from parity.core.tolerances import difference_bound
    from parity.layers.stats import check_side

    r, t, _, bound = _planted(1.0)
    r32 = r.astype(np.float32).astype(np.float64)  # float32-exact values: |paddle - torch| known exactly
    t = r32.copy()
    t[5] += 2.0 ** -20
    t_err = 2.0 ** -20
    between = r32.copy()
    between[9] += bound + t_err / 2  # above the f64 bound, within the difference bound: not counted
    c = check_side("x", between.astype(np.float32), t.astype(np.float32), None, r32, "float32", None, None,
                   count_outside=True)
    assert c.tolerance < c.diff.max_abs <= difference_bound(c.torch_error, 4.0)
    assert c.diff.n_outside == 0 and c.diff.frac_outside == 0.0
    outside = r32.copy()
    outside[9] += 2 * (bound + t_err)
    c = check_side("x", outside.astype(np.float32), t.astype(np.float32), None, r32, "float32", None, None,
                   count_outside=True)
    assert c.diff.n_outside == 1 and c.diff.frac_outside == pytest.approx(1 / r.size)


def test_float64_dense_conv_per_image_equals_torch_kernel():
    """The float64 reference runs dense k x k convs one image at a time (torch
    unfolds the whole batch at once otherwise); results and gradients must be
    torch's own float64 kernel's."""
    import torch

    from parity.core.reference import fast_float64

    for stride, bias in ((1, True), (2, False)):
        conv = torch.nn.Conv2d(5, 6, 3, stride=stride, padding=1, bias=bias).double()
        x = torch.randn(3, 5, 9, 10, dtype=torch.float64, requires_grad=True)
        expected = conv(x)
        (g_expected,) = torch.autograd.grad(expected.square().sum(), x)
        fast_float64(conv)
        got = conv(x)
        (g_got,) = torch.autograd.grad(got.square().sum(), x)
        assert got.shape == expected.shape
        assert torch.allclose(got, expected, rtol=1e-13, atol=1e-13)
        assert torch.allclose(g_got, g_expected, rtol=1e-13, atol=1e-13)
