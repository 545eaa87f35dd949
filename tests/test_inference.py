"""Fast inference paths: each equals the official model's outputs within its
dtype's tolerance, BN folding changes nothing beyond rounding, a wrong
predictor is caught at start-up, and Paddle's thread count survives a
predictor run. torch's compiled path is judged in the README's job, where
it is built anyway (tests/test_demo_report.py): a compilation costs tens of
seconds of CPU on a new machine."""
from __future__ import annotations

import numpy as np
import pytest

from converters.table.errors import CheckpointError, VerificationError
from parity.core import frameworks
from parity.fastpath import inference
from parity.core.runtime import configure_threads, configured_threads, paddle_threads
from parity.core.seeded import seeded_input, seeded_state
from .conftest import assert_matches_official, reference

paddle = pytest.importorskip("paddle")
torch = pytest.importorskip("torch")

ARCH = "small"


@pytest.fixture(scope="module")
def state():
    return seeded_state(ARCH)


@pytest.fixture(scope="module")
def x():
    return seeded_input(ARCH, 2)  # the input of tests/data/official_reference


@pytest.fixture(scope="module")
def official_logits():
    return reference(f"{ARCH}_logits.npy")


@pytest.fixture(scope="module")
def paddle_models(state):
    return {fused: frameworks.paddle_model(ARCH, frameworks.layout_states(ARCH, state, fused)[1], fused=fused)
            for fused in (False, True)}


@pytest.mark.parametrize("fused", [False, True])
def test_torch_model_matches_official_outputs(state, x, official_logits, fused):
    model = frameworks.torch_model(ARCH, frameworks.layout_states(ARCH, state, fused)[0], fused=fused)
    with torch.inference_mode():
        out = model(torch.from_numpy(x)).numpy()
    assert_matches_official(ARCH, state, x, out, official_logits)


@pytest.mark.parametrize("fused", [False, True])
def test_paddle_eager_matches_official_outputs(paddle_models, state, x, official_logits, fused):
    with paddle.no_grad():
        out = paddle_models[fused](paddle.to_tensor(x)).numpy()
    assert_matches_official(ARCH, state, x, out, official_logits)


def test_folding_changes_the_weights(state):
    """The folded model is not the unfolded one under another name: its conv
    weights differ (each scaled by its BN) and no BN tensor is left."""
    fused = frameworks.layout_states(ARCH, state, True)[0]
    assert not any("running_mean" in k for k in fused)
    key = "module_list.0.netblock.weight"
    assert not np.allclose(fused[key], state[key])


def test_fused_state_with_a_wrong_shape_names_the_key(state):
    fused = dict(frameworks.layout_states(ARCH, state, True)[1])
    key = next(iter(fused))
    fused[key] = fused[key][:1]
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.")):
        frameworks.paddle_model(ARCH, fused, fused=True)


@pytest.mark.parametrize("fused", [False, True])
def test_float32_predictor_matches_official_outputs(paddle_models, state, x, official_logits, fused):
    with inference.PaddlePredictor(paddle_models[fused], ARCH, "float32") as pred:
        check = pred.startup_check
        assert check["pass"] and check["error"] <= check["bound"] and check["dtype"] == "float32"
        assert_matches_official(ARCH, state, x, pred(x), official_logits)


@pytest.mark.skipif(not frameworks.cpu_has_bf16(), reason="CPU without native bfloat16 (AVX512-BF16/AMX)")
def test_bfloat16_predictor_within_bfloat16_tolerance(paddle_models, state, x, official_logits):
    with inference.PaddlePredictor(paddle_models[False], ARCH, "bfloat16") as pred:
        check = pred.startup_check
        out = pred(x)
    assert check["pass"] and check["dtype"] == "bfloat16"
    # Really bfloat16: out of the float32 rule, yet within the rule with torch bfloat16 as the bar.
    from parity.core.reference import float64_logits
    from parity.core.tolerances import judge

    assert not judge("logits", out, float64_logits(ARCH, state, x), reference=official_logits).passed
    assert_matches_official(ARCH, state, x, out, official_logits, dtype="bfloat16")


def test_startup_check_rejects_a_predictor_of_another_model(paddle_models, state):
    other = frameworks.paddle_model(ARCH, frameworks.layout_states(ARCH, seeded_state(ARCH, seed=7), False)[1])
    with inference.PaddlePredictor(paddle_models[False], ARCH, "float32", check=False) as pred:
        with pytest.raises(VerificationError, match="start-up check failed"):
            pred.verify(other)


def test_float16_predictor_on_cpu_is_refused(paddle_models):
    with pytest.raises(ValueError, match="no float16 CPU kernels"):
        inference.PaddlePredictor(paddle_models[False], ARCH, "float16")


def test_paddle_threads_stay_set_after_a_predictor_run(paddle_models, x):
    before = configured_threads()
    try:
        configure_threads(2)
        assert paddle_threads() == 2
        with inference.PaddlePredictor(paddle_models[False], ARCH, "float32", check=False) as pred:
            pred.set_input(x)
            pred.predictor.run()  # the raw predictor: the hazard is real in this build
            assert paddle_threads() == 1
            pred(x)  # the wrapper restores the count after each run
            assert paddle_threads() == 2
            pred.run()
            assert paddle_threads() == 2
        assert torch.get_num_threads() == 2
    finally:
        configure_threads(before)
