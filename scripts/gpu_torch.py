"""Torch's side of the GPU checks (run by scripts/gpu_check.sh; torch only, no Paddle needed).

For each GENet, with TF32 pinned off and seeded weights (numpy seed 2020,
not trained; no checkpoint travels to the GPU machine):

1. Latency in the authors' convention: float16, batch 64, input resident on
   the device, warm-up, a synchronised clock around every timed iteration,
   median/p90/p99 per image; eager (NCHW), eager on channels-last tensors and
   `torch.compile` (Inductor, frozen weights, channels-last), with float32
   eager beside them.
2. Logits of every path on 16 bundled photos and 48 seeded inputs (one batch
   of 64, the timed shape), judged by the project's rule
   (`parity.core.tolerances.judge`) against the float64 recomputation, with
   the bar an independent computation: torch on the CPU at the same
   precision. Top-1 agreement of float16 with float32 and with float64, per
   input kind.
3. The float16 layer diff's torch side for the layer archs: every mapped
   module's float16 output against float64, accumulated (both models end to
   end) and isolated (the module fed the float64 input, rounded to float16):
   the bar a Paddle float16 run on a GPU would be judged by.

Writes OUT/gpu_torch.json after every stage (a timed-out run keeps what it
measured) and prints one summary table per stage.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from converters.table.mapping import mapping_table  # noqa: E402
from parity.core.compare import top1_agreement  # noqa: E402
from parity.core.environment import environment  # noqa: E402
from parity.core.frameworks import pin_tf32_off, torch_device, torch_model  # noqa: E402
from parity.core.modules import torch_module  # noqa: E402
from parity.core.reference import float64_model  # noqa: E402
from parity.core.seeded import seeded_input, seeded_state  # noqa: E402
from parity.core.tolerances import EPS, judge, max_abs_error  # noqa: E402
from parity.inputs.preprocessing import preprocess  # noqa: E402
from parity.inputs.sample_images import bundled_photos  # noqa: E402
from parity.latency.bench import summarize_times, time_loop  # noqa: E402

PAPER_V100_FP16_B64 = {"small": 0.10, "normal": 0.20, "large": 0.34}  # ms/img, the paper's table
PATHS = ("eager fp32", "eager fp16", "channels-last fp16", "compile fp16")


def _args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for gpu_torch.json")
    p.add_argument("--device", default="gpu", help="gpu or gpu:N (cpu: a dry run of the script itself)")
    p.add_argument("--archs", nargs="+", default=["small", "normal", "large"])
    p.add_argument("--layer-archs", nargs="*", default=["large"])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--layer-batch", type=int, default=8)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--iters", type=int, default=100)
    p.add_argument("--photos", type=int, default=16, help="bundled photos in the judged batch (rest: seeded)")
    p.add_argument("--cpu-half-rows", type=int, default=32,
                   help="rows of the judged batch the CPU float16 bar is computed for (CPU float16 is slow)")
    p.add_argument("--no-compile", dest="compile", action="store_false")
    return p.parse_args(argv)


class Report:
    def __init__(self, out_dir, record):
        self.path = os.path.join(out_dir, "gpu_torch.json")
        self.record = record

    def save(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.record, f, indent=1)
        os.replace(tmp, self.path)


def judged_batch(arch, batch, n_photos):
    """(inputs, kinds): `n_photos` bundled photos, then seeded noise up to `batch` rows."""
    from PIL import Image

    photos = []
    for path in bundled_photos()[:n_photos]:
        with Image.open(path) as im:
            photos.append(preprocess(im, arch))
    x = np.concatenate([np.stack(photos), seeded_input(arch, batch - len(photos))]) if photos else \
        seeded_input(arch, batch)
    return x, np.array(["photo"] * len(photos) + ["seeded"] * (batch - len(photos)))


def _put(device, dtype, channels_last=False):
    """prepare(x): the numpy batch `x` on the device, in `dtype` and memory format."""
    import torch

    dev = torch_device(device)
    dt = {"float32": torch.float32, "float16": torch.float16}[dtype]

    def prepare(x):
        t = torch.from_numpy(x).to(device=dev, dtype=dt)
        return t.contiguous(memory_format=torch.channels_last) if channels_last else t
    return prepare


def compiled_path(arch, state, device):
    """torch.compile (Inductor, frozen weights, channels-last) of the float16 model."""
    from parity.fastpath.inference import TorchCompiled

    return TorchCompiled(torch_model(arch, state, device=device, dtype="float16")), _put(device, "float16", True)


def build_paths(arch, state, device):
    """{name: (model, prepare(x) -> device tensor)} for every eager path."""
    import torch

    put = lambda dtype, channels_last=False: _put(device, dtype, channels_last)  # noqa: E731
    cl = torch_model(arch, state, device=device, dtype="float16").to(memory_format=torch.channels_last)
    return {"eager fp32": (torch_model(arch, state, device=device, dtype="float32"), put("float32")),
            "eager fp16": (torch_model(arch, state, device=device, dtype="float16"), put("float16")),
            "channels-last fp16": (cl, put("float16", True))}


def run_logits(model, x):
    import torch

    with torch.inference_mode():
        return model(x).float().cpu().numpy()


def latency(paths, x_np, device, warmup, iters, say):
    import torch

    sync = torch.cuda.synchronize if device != "cpu" else (lambda: None)
    rows = {}
    for name, (model, prepare) in paths.items():
        x = prepare(x_np)
        t0 = time.perf_counter()
        run_logits(model, x)  # the first call: compilation for `compile`, cuDNN plans for the rest
        sync()
        first = time.perf_counter() - t0
        box = {}

        def step():
            with torch.inference_mode():
                box["y"] = model(x)
        seconds = time_loop(step, sync, warmup, iters)
        rows[name] = {**summarize_times(seconds, x.shape[0]), "first_call_s": first}
        say(f"  {name}: {rows[name]['ms_per_image']['median']:.4f} ms/img (first call {first:.1f} s)")
    return rows


def references(arch, state, x, device, cpu_half_rows, say):
    """The float64 truth (on the device) and the CPU bars for the judged batch `x`."""
    import torch

    dev = torch_device(device)
    f64_model = float64_model(arch, state).to(dev)
    with torch.no_grad():
        truth = f64_model(torch.from_numpy(x).to(device=dev, dtype=torch.float64)).cpu().numpy()
    del f64_model
    say("  CPU bars (float32 on every row, float16 on the first rows)")
    half = min(cpu_half_rows, len(x))
    bars = {"float32": run_logits(torch_model(arch, state, dtype="float32"), torch.from_numpy(x)),
            "float16": run_logits(torch_model(arch, state, dtype="float16"), torch.from_numpy(x[:half]).half())}
    return {"truth": truth, "bars": bars, "half_rows": half}


def correctness(arch, paths, x, kinds, refs, fp32_logits=None):
    """Each path's logits judged against float64 (bar: torch CPU at the same precision), and
    top-1 agreement with eager float32 (`fp32_logits`, else the 'eager fp32' path's)."""
    truth, bars, half = refs["truth"], refs["bars"], slice(0, refs["half_rows"])
    logits = {name: run_logits(model, prepare(x)) for name, (model, prepare) in paths.items()}
    fp32 = logits["eager fp32"] if fp32_logits is None else fp32_logits
    out = {"rows": {k: int((kinds == k).sum()) for k in ("photo", "seeded")}, "cpu_float16_rows": half.stop,
           "paths": {}}
    for name, y in logits.items():
        dtype = "float16" if "fp16" in name else "float32"
        rows = half if dtype == "float16" else slice(None)
        j = judge(f"GENet_{arch} {name} logits", y[rows], truth[rows], reference=bars[dtype][rows], dtype=dtype,
                  candidate_label=f"torch GPU {name}", reference_label=f"torch CPU eager {dtype}")
        entry = {"judgement": {**j.to_dict(), "rows": rows.stop or len(x)},
                 "error_vs_float64_all_rows": max_abs_error(y, truth)}
        for kind in ("photo", "seeded"):
            sel = kinds == kind
            if sel.any():
                entry[f"top1_vs_fp32_{kind}"] = top1_agreement(y[sel], fp32[sel])
                entry[f"top1_vs_float64_{kind}"] = top1_agreement(y[sel], truth[sel])
        out["paths"][name] = entry
    return out, logits["eager fp32"] if "eager fp32" in logits else fp32


def layer_side(arch, state, device, batch, say):
    """Per mapped module: float16 output vs float64, accumulated and isolated."""
    import torch

    dev = torch_device(device)
    table = mapping_table(arch)
    m64 = float64_model(arch, state).to(dev)
    m16 = torch_model(arch, state, device=device, dtype="float16")
    mods64 = [torch_module(m64, r.official) for r in table.modules]
    mods16 = [torch_module(m16, r.official) for r in table.modules]
    inputs, outs64, outs16, handles = {}, {}, {}, []
    for i, (a, b) in enumerate(zip(mods64, mods16)):
        def keep64(module, args, out, i=i):
            inputs[i], outs64[i] = args[0].detach(), out.detach()

        def keep16(module, args, out, i=i):
            outs16[i] = out.detach()
        handles += [a.register_forward_hook(keep64), b.register_forward_hook(keep16)]
    x = torch.from_numpy(seeded_input(arch, batch)).to(dev)
    with torch.no_grad():
        m64(x.double())
        m16(x.half())
        for h in handles:
            h.remove()
        rows = []
        for i, r in enumerate(table.modules):
            ref = outs64[i].cpu().numpy()
            iso = mods16[i](inputs[i].half()).cpu().numpy()
            scale = float(np.max(np.abs(ref))) if ref.size else 0.0
            acc_err, iso_err = max_abs_error(outs16[i].cpu().numpy(), ref), max_abs_error(iso, ref)
            ulp = EPS["float16"] * scale
            rows.append({"module": r.official, "kind": r.kind, "accumulated": acc_err, "isolated": iso_err,
                         "scale": scale, "accumulated_eps": acc_err / ulp if ulp else 0.0,
                         "isolated_eps": iso_err / ulp if ulp else 0.0})
    say(f"  {len(rows)} modules; worst accumulated {max(r['accumulated_eps'] for r in rows):.1f} eps of scale, "
        f"worst isolated {max(r['isolated_eps'] for r in rows):.1f}")
    return {"batch": batch, "input": "seeded noise", "modules": rows}


@contextlib.contextmanager
def stage(entry, name, say):
    """An optional stage whose failure is recorded under entry['errors'] and
    printed, so that one broken stage does not cost the others' figures."""
    try:
        yield
    except Exception as e:  # noqa: BLE001 (recorded and reported; the exit code says so)
        entry.setdefault("errors", {})[name] = f"{type(e).__name__}: {e}"
        say(f"  {name} FAILED: {type(e).__name__}: {e}")


def print_tables(record):
    print("\nGENet fp16 batch-64 latency, torch only, "
          f"{record['environment'].get('gpu', record['environment']['device'])} (ms/img: median, p90, p99)")
    print(f"{'arch':7} {'path':19} {'median':>8} {'p90':>8} {'p99':>8} {'img/s':>9} {'paper V100':>10}")
    for arch, a in record["archs"].items():
        for name, r in a.get("latency", {}).items():
            ms = r["ms_per_image"]
            paper = f"{PAPER_V100_FP16_B64[arch]:.2f}" if name == "eager fp16" else ""
            print(f"{arch:7} {name:19} {ms['median']:8.4f} {ms['p90']:8.4f} {ms['p99']:8.4f} "
                  f"{r['images_per_s']:9.0f} {paper:>10}")
    print("\nLogits vs float64 (bar: torch CPU eager at the same precision); top-1 agreement with eager fp32")
    print(f"{'arch':7} {'path':19} {'margin':>7} {'verdict':>7} {'photos':>7} {'seeded':>7}")
    for arch, a in record["archs"].items():
        for name, c in a.get("correctness", {}).get("paths", {}).items():
            j = c["judgement"]
            print(f"{arch:7} {name:19} {j['margin']:7.3f} {'PASS' if j['passed'] else 'FAIL':>7} "
                  f"{100 * c.get('top1_vs_fp32_photo', float('nan')):6.1f}% "
                  f"{100 * c.get('top1_vs_fp32_seeded', float('nan')):6.1f}%")
    for arch, a in record["archs"].items():
        rows = a.get("layers_fp16", {}).get("modules")
        if rows:
            worst = max(rows, key=lambda r: r["isolated_eps"])
            print(f"\n{arch} float16 layer diff, torch side: {len(rows)} modules, worst isolated "
                  f"{worst['isolated_eps']:.2f} eps of scale at {worst['module']}, logits accumulated "
                  f"{rows[-1]['accumulated_eps']:.1f} eps")


def main(argv=None) -> int:
    import torch

    a = _args(argv)
    device = "cpu" if a.device == "cpu" else ("gpu:0" if a.device == "gpu" else a.device)
    tf32 = pin_tf32_off()
    if device != "cpu" and not torch.cuda.is_available():
        print("gpu_torch: torch sees no CUDA GPU", file=sys.stderr)
        return 2
    torch.set_num_threads(os.cpu_count() or 1)
    os.makedirs(a.out, exist_ok=True)
    say = lambda msg: print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)  # noqa: E731
    report = Report(a.out, {"schema": "genet-parity/gpu-torch/1", "environment": environment(device, "float16"),
                            "tf32": tf32, "weights": "seeded (numpy seed 2020, not trained)",
                            "batch_size": a.batch_size, "warmup": a.warmup, "iters": a.iters,
                            "paper_v100_fp16_b64_ms_per_image": PAPER_V100_FP16_B64, "archs": {}})
    kept = {}  # per arch: the judged batch, its references and eager float32 logits, for the compile pass
    for arch in a.archs:
        say(f"GENet_{arch}: building paths")
        state = seeded_state(arch)
        paths = build_paths(arch, state, device)
        entry = report.record["archs"].setdefault(arch, {})
        entry["latency"] = latency(paths, seeded_input(arch, a.batch_size), device, a.warmup, a.iters, say)
        x, kinds = judged_batch(arch, a.batch_size, a.photos)
        refs = references(arch, state, x, device, a.cpu_half_rows, say)
        entry["correctness"], fp32 = correctness(arch, paths, x, kinds, refs)
        kept[arch] = (x, kinds, refs, fp32)
        report.save()
        if arch in a.layer_archs:
            say(f"GENet_{arch}: float16 layer diff, torch side")
            with stage(entry, "layers_fp16", say):
                entry["layers_fp16"] = layer_side(arch, state, device, a.layer_batch, say)
            report.save()
        del paths
    if a.compile:  # last: compilation is the slowest part, and what came before is already saved
        for arch in a.archs:
            say(f"GENet_{arch}: torch.compile")
            entry = report.record["archs"][arch]
            with stage(entry, "compile", say):
                paths = {"compile fp16": compiled_path(arch, seeded_state(arch), device)}
                entry["latency"].update(latency(paths, seeded_input(arch, a.batch_size), device, a.warmup,
                                                a.iters, say))
                x, kinds, refs, fp32 = kept[arch]
                entry["correctness"]["paths"].update(correctness(arch, paths, x, kinds, refs, fp32)[0]["paths"])
            report.save()
    print_tables(report.record)
    failed = [f"{arch} {name}" for arch, e in report.record["archs"].items()
              for name, c in e["correctness"]["paths"].items() if not c["judgement"]["passed"]]
    errors = [f"{arch} {k}: {v}" for arch, e in report.record["archs"].items() for k, v in e.get("errors", {}).items()]
    if failed:
        print(f"FAILED the rule: {', '.join(failed)}")
    for line in errors:
        print(f"NOT MEASURED: {line}")
    return 1 if failed or errors else 0


if __name__ == "__main__":
    sys.exit(main())
