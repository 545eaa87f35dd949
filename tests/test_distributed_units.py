"""The pieces of a launched job that need no second process: what each
launcher's variables mean, each rank's device, how the ranks' records are
combined and refused, the job's throughput."""
from __future__ import annotations

import pytest

from parity.accuracy.distributed import Launch, combine, combine_throughput, detect, rank_device
from parity.inputs.data import DataError

VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_USE_AGENT_STORE",
             "TORCHELASTIC_RUN_ID", "TORCHELASTIC_RESTART_COUNT", "PADDLE_TRAINER_ID", "PADDLE_TRAINERS_NUM",
             "PADDLE_TRAINER_ENDPOINTS", "PADDLE_LOCAL_RANK", "FLAGS_selected_gpus", "PADDLE_JOB_ID")


@pytest.fixture
def env(monkeypatch):
    for k in VARIABLES:
        monkeypatch.delenv(k, raising=False)
    return monkeypatch


def test_no_launcher(env):
    assert detect() is None


def test_torchrun_variables(env):
    for k, v in dict(RANK="3", WORLD_SIZE="8", LOCAL_RANK="3", MASTER_ADDR="node0", MASTER_PORT="29500",
                     TORCHELASTIC_USE_AGENT_STORE="True", TORCHELASTIC_RUN_ID="abc",
                     TORCHELASTIC_RESTART_COUNT="1").items():
        env.setenv(k, v)
    assert detect() == Launch("torchrun", 3, 8, 3, "node0", 29500, True, "abc/1")
    env.delenv("MASTER_PORT")
    with pytest.raises(DataError, match="MASTER_PORT not"):
        detect()
    env.setenv("MASTER_PORT", "29500")
    env.setenv("RANK", "8")
    with pytest.raises(DataError, match="rank 8 of world size 8"):
        detect()


def test_paddle_launch_variables(env):
    for k, v in dict(PADDLE_TRAINER_ID="1", PADDLE_TRAINERS_NUM="2", PADDLE_LOCAL_RANK="1", FLAGS_selected_gpus="5",
                     PADDLE_TRAINER_ENDPOINTS="10.0.0.1:6070,10.0.0.1:6071").items():
        env.setenv(k, v)
    # trainer 0's endpoint is where the ranks meet; the GPU is the one the launcher selected
    assert detect() == Launch("paddle.distributed.launch", 1, 2, 5, "10.0.0.1", 6070, False, "job")
    env.setenv("PADDLE_TRAINER_ENDPOINTS", "nonsense")
    with pytest.raises(DataError, match="PADDLE_TRAINER_ENDPOINTS"):
        detect()


def test_each_rank_on_its_own_gpu():
    launch = Launch("torchrun", 2, 4, 2, "h", 1, True, "r")
    assert rank_device("gpu", launch) == "gpu:2" and rank_device("cuda", launch) == "gpu:2"
    assert rank_device("gpu:0", launch) == "gpu:0"  # said explicitly: kept
    assert rank_device("cpu", launch) == "cpu"


HEADER = {"type": "header", "version": 1, "arch": "small", "precision": "float32", "device": "cpu",
          "frameworks": ["torch"], "runners": {"torch": "t"}, "weights": {"sha256": "a"}, "dataset": {"n": 5},
          "limit": None, "shard": None, "expected": 5}


def image(i):
    return {"type": "image", "index": i, "path": f"{i}.png", "label": i, "pred": {"torch": [i, 0, 0, 0, 0]}}


def part(k, n, indices, **changes):
    return ({**HEADER, "shard": [k, n], "expected": len(indices), **changes},
            [{"type": "check", "pass": True}] + [image(i) for i in indices])


def test_combine_in_index_order_each_image_once():
    header, records, checks = combine(HEADER, [part(0, 2, [0, 2, 4]), part(1, 2, [1, 3])], (), range(5))
    assert [r["index"] for r in records] == [0, 1, 2, 3, 4]
    assert header["shard"] is None and header["expected"] == 5
    assert [c["shard"] for c in checks] == [[0, 2], [1, 2]]
    # the records an earlier file holds are kept, the ranks bring the rest
    _, records, _ = combine(HEADER, [part(0, 2, [2, 4]), part(1, 2, [3])], [image(0), image(1)], range(5))
    assert [r["index"] for r in records] == [0, 1, 2, 3, 4]


def test_combine_refuses_what_a_single_run_would_not_give():
    with pytest.raises(DataError, match="rank 1 evaluated a different run .*weights"):
        combine(HEADER, [part(0, 2, [0, 2, 4]), part(1, 2, [1, 3], weights={"sha256": "b"})], (), range(5))
    with pytest.raises(DataError, match=r"image 2.png \(index 2\) came from two ranks"):
        combine(HEADER, [part(0, 2, [0, 2, 4]), part(1, 2, [1, 2, 3])], (), range(5))
    with pytest.raises(DataError, match="1 image.s. missing, 0 not in it"):
        combine(HEADER, [part(0, 2, [0, 2, 4]), part(1, 2, [1])], (), range(5))


def test_job_throughput_hand_computed():
    def rank(images, run_s, torch_s, decode_s):
        return {"images": images, "run_s": run_s, "images_per_s": images / run_s, "models_s": torch_s,
                "decode_wait_s": 0.5, "check_s": 1.0, "write_s": 0.25,
                "stages": {"torch": {"s": torch_s, "images_per_s": images / torch_s},
                           "decode": {"s": decode_s, "images": images, "images_per_s": images / decode_s,
                                      "workers": 2, "normalize_s": 0.1}}}

    t = combine_throughput([rank(40, 10.0, 8.0, 2.0), rank(30, 12.0, 6.0, 1.0)])
    assert t["images"] == 70 and t["run_s"] == 12.0 and t["images_per_s"] == pytest.approx(70 / 12)
    assert t["stages"]["torch"]["images_per_s"] == pytest.approx(70 / 14)  # per process
    assert t["stages"]["decode"]["images_per_s"] == pytest.approx(70 / 3)
    assert t["check_s"] == 2.0 and t["processes"] == 2 and [r["images"] for r in t["ranks"]] == [40, 30]


def test_paddle_only_gpu_check_beside_a_cpu_torch_measures_the_bar_on_the_cpu_and_says_so():
    """A Paddle-only run on a GPU where torch is a CPU build (two environments):
    the start-up check's bar comes from torch on the CPU, labelled; a
    candidate far off still fails it."""
    import numpy as np
    import torch

    from parity.accuracy.runners import logit_check
    from parity.core.reference import torch_logits
    from parity.core.seeded import seeded_input, seeded_state

    if torch.cuda.is_available():
        pytest.skip("this torch has CUDA: the bar is measured on the GPU")
    state, x = seeded_state("small"), seeded_input("small", 2)

    class Fake:
        label = "paddle (stand-in: torch float32 on the CPU)"

        def __init__(self, shift):
            self.shift = shift

        def __call__(self, inputs):
            return torch_logits("small", state, inputs) + self.shift

    good = logit_check("small", state, {"paddle": Fake(0.0)}, device="gpu:0")(x)
    assert good["pass"] and "on the CPU (this environment's torch has no CUDA)" in good["bar"]
    assert good["judgements"]["paddle"]["reference"] == good["bar"]
    assert not logit_check("small", state, {"paddle": Fake(np.float32(1.0))}, device="gpu:0")(x)["pass"]
