"""The child processes of the benchmark script (`python -m parity.commands.benchmarks`):
the yardstick workloads each section's whole-process measurement is set against.

Each runs in its own process (`python -c SCRIPT args...`), so that its wall
time and peak RSS are its own; each prints its figures as one JSON line on
stdout, which the section reads back (parity.commands.benchmark_sections).
"""
from __future__ import annotations

import json
import sys
import time
from typing import Dict

FLOOR_SCRIPT = ("import sys, torch, paddle\n"
                "data = open(sys.argv[1], 'rb').read()\n"
                "open(sys.argv[2], 'wb').write(data)\n")


PLAIN_FORWARD_SCRIPT = "from parity.commands.benchmark_workloads import plain_forward; plain_forward()"
PLAIN_TRAINING_SCRIPT = "from parity.commands.benchmark_workloads import plain_training; plain_training()"
COMPUTE_SCRIPT = "from parity.commands.benchmark_workloads import eval_compute; eval_compute()"
EXPORT_SCRIPT = "from parity.commands.benchmark_workloads import paddle_exports; paddle_exports()"


def plain_forward() -> None:
    """Child process: two plain forward passes (torch, then Paddle) of the
    checkpoint in argv[1] at batch argv[2], with what the layer diff loads;
    prints the activation bytes of the largest block, of the whole network and
    of the float64 weights as JSON (the yardsticks for the layer diff's memory)."""
    from parity.core.runtime import configure_threads

    configure_threads()
    import paddle
    import torch

    import paddle_genet
    import torch_ref
    from converters.files.load import load_weights, to_layout
    from parity.core.seeded import seeded_input

    w = load_weights(sys.argv[1])
    batch = int(sys.argv[2])
    x = seeded_input(w.arch, batch)
    t_model = torch_ref.load_state(torch_ref.build(w.arch), to_layout(w, "official"), source=w.path)
    p_model = paddle_genet.load_state(paddle_genet.build(w.arch), to_layout(w, "paddle"), source=w.path)
    # Activation bytes of every module inside each top-level block (leaves and
    # residual-unit outputs): what the layer diff may hold for one block, per side.
    per_block: Dict[str, int] = {}
    hooks = []
    for name, m in t_model.named_modules():
        if name.startswith("module_list.") and not list(m.children()):
            top = ".".join(name.split(".")[:2])
            hooks.append(m.register_forward_hook(
                lambda m, i, o, top=top: per_block.__setitem__(top, per_block.get(top, 0) + o.nelement() * 4)))
    with torch.inference_mode():
        t_model(torch.from_numpy(x))
    for h in hooks:
        h.remove()
    with paddle.no_grad():
        p_model(paddle.to_tensor(x))
    print(json.dumps({"block_activation_bytes": max(per_block.values()),
                      "network_activation_bytes": sum(per_block.values()),
                      "float64_weight_bytes": 8 * sum(p.numel() for p in t_model.state_dict().values())}))

def plain_training() -> None:
    """Child process: the two frameworks' own training steps and nothing else.
    Both GENets built from the checkpoint in argv[1] (`build(pretrained=)`),
    argv[3] steps of the default recipe at batch argv[2] on the batches
    `genet-parity train` uses, torch then Paddle each step; prints the seconds
    of the steps as JSON."""
    from parity.core.runtime import configure_threads

    configure_threads()
    import paddle
    import torch

    import paddle_genet
    import torch_ref
    from converters.files.load import load_weights
    from parity.training import Recipe, make_batches
    from parity.training.paddle_recipe import paddle_loss, paddle_optimizer

    path, batch, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    arch = load_weights(path).arch
    start = time.perf_counter()
    t_model = torch_ref.build(arch, pretrained=path).train()
    p_model = paddle_genet.build(arch, pretrained=path)
    p_model.train()
    recipe = Recipe()
    t_opt = recipe.torch_optimizer(t_model.parameters())
    p_opt = paddle_optimizer(recipe, [p for p in p_model.parameters() if not p.stop_gradient])
    batches = make_batches(arch, steps, batch, 1000)
    built = time.perf_counter()
    seconds = {"torch": 0.0, "paddle": 0.0}
    for x, y in zip(batches.inputs, batches.labels):
        t0 = time.perf_counter()
        t_opt.zero_grad(set_to_none=True)
        recipe.torch_loss(t_model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        t_opt.step()
        t1 = time.perf_counter()
        p_opt.clear_grad()
        paddle_loss(recipe, p_model(paddle.to_tensor(x)), paddle.to_tensor(y)).backward()
        p_opt.step()
        seconds["torch"] += t1 - t0
        seconds["paddle"] += time.perf_counter() - t1
    print(json.dumps({"build_s": built - start, "steps_s": seconds["torch"] + seconds["paddle"],
                      "torch_steps_s": seconds["torch"], "paddle_steps_s": seconds["paddle"]}))



def eval_compute() -> None:
    """Child process: the eval runners of argv[1] ('fast' or 'eager') for
    GENet argv[2] on a seeded batch of argv[3], one warm-up batch then
    argv[4] timed batches, both frameworks in turn as eval runs them and
    nothing else (no decoding, no writes); prints images/s as JSON."""
    from parity.core.runtime import configure_threads

    configure_threads()
    from converters.table.mapping import mapping_table
    from parity.accuracy.runners import build_runners
    from parity.core.seeded import seeded_input, seeded_state

    runner, arch, batch, batches = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    official = seeded_state(arch)
    paddle_state = mapping_table(arch).convert(official, "official", "paddle")
    runners = build_runners(arch, ["torch", "paddle"], official, paddle_state, runner=runner)
    x = seeded_input(arch, batch)
    seconds = {fw: 0.0 for fw in runners}
    for i in range(batches + 1):
        for fw, run in runners.items():
            t0 = time.perf_counter()
            run(x)
            if i:
                seconds[fw] += time.perf_counter() - t0
    n = batch * batches
    print(json.dumps({"images": n, "seconds": seconds, "images_per_s": n / sum(seconds.values()),
                      "runners": {fw: r.label for fw, r in runners.items()}}))


def paddle_exports() -> None:
    """Child process: argv[3] exports (`paddle.jit.save`, as each Paddle
    predictor starts) of new Paddle models of GENet argv[2] with seeded
    weights, the blocks run as they are (argv[1] 'as-is', the default) or
    transformed by dy2static ('transformed'); prints each export's seconds as
    JSON. A process of its own per way: Paddle keeps the first for the process."""
    import tempfile

    from parity.core.runtime import configure_threads

    configure_threads()
    from converters.files.atomic import temporary_folder
    from parity.core.frameworks import import_paddle, layout_states, paddle_model
    from parity.core.seeded import seeded_state
    from parity.fastpath.inference import export_paddle
    from genet_arch import get_arch

    import_paddle()
    way, arch, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    state = layout_states(arch, seeded_state(arch), False)[1]
    seconds = []
    with temporary_folder("genet_bench_export_") as work:
        for i in range(n):
            model = paddle_model(arch, state)
            t0 = time.perf_counter()
            export_paddle(model, tempfile.mkdtemp(dir=work), get_arch(arch).resolution, blocks_as_is=way == "as-is")
            seconds.append(time.perf_counter() - t0)
    print(json.dumps({"seconds": seconds}))
