"""Judge a conversion: the file read back holds exactly the tensors meant, and
the destination model computes what the source model computes.

Both models run in float32 on the fixed seeded input of `parity.core.seeded`
(numpy seed 2021, the arch's resolution, batch 1 by default), and so does a
float64 recomputation (`parity.core.reference`) with the source's weights. At
every checkpoint (the output of each super block, of the pool, and the
logits; `checkpoints`) every model that is not torch float32 on the source's
weights is judged by the project's one rule (`parity.core.tolerances`): its max
abs error against the float64 recomputation must stay within FACTOR times
torch float32's own error there plus a few ulp of the output's scale. torch
float32 is the reference framework: for a torch source it is the source
model; for a Paddle source it is the torch destination (its tensors were read
back bit-identical to the mapping table's conversion) or, for a BN-folded
destination, one more torch run.

The bar thus follows the rounding noise of these very weights: a classifier
whose bias cancels the mean feature (small logits, large relative noise)
gets a bar as wide as torch's own error, while a real fault lands far above
it at the block it sits in (docs/convert.md lists the margins). Top-1
agreement, relative L2 and cosine of destination vs source logits are
reported, not judged.

A conversion within one framework and layout (official <-> timm, a timm file
to an official `.pth`, `.pdparams` to `.pdparams`) hands the destination model
the very tensors the source model holds, bit for bit: running both would
compare a model with itself, a check that cannot fail. There the tensors fed
to both models are compared bit for bit instead, and the result says so
(`method` READ_BACK, `proven`): no model comparison is reported.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from converters.table.checks import check_keys
from converters.table.errors import VerificationError
from converters.files.arrays import bf16_to_f32, f32_to_bf16_bits
from converters.files.load import TORCH_STORAGE, LoadedWeights, expected, to_layout
from converters.table.head import state_classes
from parity.core.frameworks import import_paddle


MODELS_COMPARED = "models compared"  # both models run and judged against float64
READ_BACK = "read back only"  # one framework and layout, bit-identical tensors: nothing to compare


@dataclass
class Verification:
    passed: bool
    reference: str  # the truth the models are judged against
    rule: str
    error: Optional[float]  # max abs error vs float64 at the worst judgement (largest margin); None: READ_BACK
    bound: Optional[float]  # its bound
    margin: Optional[float]  # its error / bound (<= 1 passes)
    judgements: List[dict]  # one parity.core.tolerances.Judgement per judged model and checkpoint
    max_abs_diff: Optional[float]  # destination vs source logits (reported)
    ref_max_abs: Optional[float]  # max |source logit|
    rel_l2: Optional[float]
    cosine: Optional[float]
    top1_agreement: Optional[float]
    source_model: str
    destination_model: str
    input: str
    compared: List[str]  # the checkpoints judged, in forward order: every super block, the pool, the logits
    tensors_read_back: int
    seconds: float
    timings: dict = field(default_factory=dict)  # seconds per step
    nonfinite: Optional[str] = None  # which model and layer first produced NaN/Inf, if any did
    first_divergent: Optional[str] = None  # the first checkpoint out of the rule, in forward order
    method: str = MODELS_COMPARED  # or READ_BACK: what was checked
    proven: str = ""  # READ_BACK: what the bit-for-bit comparison proves

    def to_dict(self) -> dict:
        return asdict(self)


def summary_of(v: Mapping) -> str:
    """One line of a verification dict: its worst judgement, the first
    checkpoint out of the rule, or the non-finite layer (or, where no model
    was compared, what was proven)."""
    if v.get("method") == READ_BACK:
        return v["proven"]
    if v.get("nonfinite"):
        return f"non-finite logits: {v['nonfinite']}"
    worst = max(v["judgements"], key=lambda j: j["margin"])
    text = (f"worst of {len(v['judgements'])} checkpoints: {worst['name']} of {worst['candidate']}, max abs error "
            f"{worst['error']:.3g} vs float64, bound {worst['bound']:.3g} ({worst['reference']} error "
            f"{worst['reference_error']:.3g}); margin {worst['margin']:.3g}")
    if v.get("first_divergent"):
        text = f"first out of the rule: {v['first_divergent']}; " + text
    return text


def framework_of(layout: str) -> str:
    return "torch" if layout in TORCH_STORAGE else "paddle"


def _model_layout(layout: str) -> str:
    """The layout a model of that framework and fusing holds."""
    fused = layout in ("fused", "paddle_fused")
    if framework_of(layout) == "torch":
        return "fused" if fused else "official"
    return "paddle_fused" if fused else "paddle"


def _float32(v: np.ndarray) -> np.ndarray:
    return v.astype(np.float32) if v.dtype.kind == "f" and v.dtype != np.float32 else v


def build_model(arch: str, layout: str, tensors: Mapping[str, np.ndarray]):
    """The float32 eval model for `layout` (one of the model layouts) with
    `tensors` loaded strictly (with the head they hold); torch or Paddle by
    the layout."""
    num_classes = state_classes(tensors, arch, layout)
    check_keys({k: tuple(np.shape(v)) for k, v in tensors.items()}, expected(arch, layout, num_classes),
               f"the {layout} layout of GENet_{arch}")
    fused = layout in ("fused", "paddle_fused")
    if framework_of(layout) == "torch":
        import torch

        import torch_ref

        # Built without memory or random init (meta device); the weights are
        # then the arrays themselves (assign=True): nothing is initialised or copied.
        with torch.device("meta"):
            model = torch_ref.build(arch, num_classes, fused=fused)
        with warnings.catch_warnings():
            # Read-only (memory-mapped) arrays: the model only reads them (eval, no_grad).
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            state = {k: torch.from_numpy(_float32(np.asarray(v))) for k, v in tensors.items()}
        model.load_state_dict(state, strict=True, assign=True)
        return model
    paddle = import_paddle()

    import paddle_genet

    # LazyGuard skips the random initialisation every parameter is about to
    # be overwritten with (all of them: the keys were checked above).
    with paddle.LazyGuard():
        model = paddle_genet.build(arch, num_classes, fused=fused)
    own = model.state_dict()
    for k, v in tensors.items():
        own[k].set_value(_float32(np.asarray(v)))
    return model


def _is_torch(model) -> bool:
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def forward(model, x: np.ndarray) -> np.ndarray:
    """Logits of a torch or Paddle model for the batch `x` (float32, or
    float64 for the float64 recomputation)."""
    return forward_capturing(model, x, ())[0]


def _hooks(model):
    """(named leaf/sub modules, how to hook one) of a torch or Paddle model;
    hooks see (module, inputs, output)."""
    if _is_torch(model):
        return model.get_submodule, lambda m, hook: m.register_forward_hook(hook)
    from parity.core.modules import paddle_layer

    return (lambda path: paddle_layer(model, path)), lambda m, hook: m.register_forward_post_hook(hook)


def _leaves(model):
    if _is_torch(model):
        return [(n, m) for n, m in model.named_modules() if n and not list(m.children())]
    return [(n, m) for n, m in model.named_sublayers() if not m.sublayers()]


def forward_capturing(model, x: np.ndarray, paths: Sequence[str]) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """Logits, and the outputs of the modules at `paths`, in one forward pass."""
    captured: Dict[str, np.ndarray] = {}
    find, register = _hooks(model)
    handles = [register(find(p), lambda m, i, o, p=p: captured.__setitem__(p, o.numpy().copy())) for p in paths]
    try:
        return _run(model, x), captured
    finally:
        for h in handles:
            h.remove()


def _run(model, x: np.ndarray) -> np.ndarray:
    """Logits without gradients (so outputs convert to numpy directly)."""
    if _is_torch(model):
        import torch

        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()
    import paddle

    with paddle.no_grad():
        return model(paddle.to_tensor(x)).numpy()


def checkpoints(arch: str) -> List[Tuple[str, Dict[str, str]]]:
    """Where verification compares the models besides the logits: the output
    of every super block and of the pool, as (label, {model layout: module
    path}) in forward order. Paired through the mapping table, so every model
    layout (unfolded, BN-folded, torch, Paddle) names its own module. A fault
    that barely moves 1000 logits moves the block it sits in far more."""
    from genet_arch import naming

    from converters.table.mapping import mapping_table

    table = mapping_table(arch)
    out = []
    for m in table.modules:
        if m.kind == "block":
            fused = naming.block_path(table.arch, m.node, "fused")
            out.append((f"{m.official} (super block {m.node.site.stage})",
                        {"official": m.official, "paddle": m.paddle, "fused": fused, "paddle_fused": fused}))
        elif m.kind == "pool":
            out.append(("pool", {lay: m.official if lay != "paddle" else m.paddle
                                 for lay in ("official", "paddle", "fused", "paddle_fused")}))
    return out


def run_model(arch: str, layout: str, tensors: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Float32 logits of the model for `layout` with `tensors` loaded strictly."""
    return forward(build_model(arch, layout, tensors), x)


def first_nonfinite_layer(model, x: np.ndarray) -> Optional[str]:
    """The first layer, in execution order, whose output holds NaN or Inf
    (None if none does): where finite but huge weights overflow."""
    found: List[str] = []

    def hook(name):
        def record(module, inputs, out):
            if not found and not np.isfinite(out.numpy()).all():
                found.append(name)
        return record

    _, register = _hooks(model)
    handles = [register(m, hook(n)) for n, m in _leaves(model)]
    try:
        logits = _run(model, x)
    finally:
        for h in handles:
            h.remove()
    if found:
        return found[0]
    return "the logits (after every layer)" if not np.isfinite(logits).all() else None


def check_read_back(written: Mapping[str, np.ndarray], read: LoadedWeights, bf16_keys=frozenset()) -> int:
    """Every tensor read back equals, bit for bit, the tensor meant to be written."""
    if list(read.tensors) != list(written):
        raise VerificationError(f"{read.path}: read back with different keys than were written")
    for k, v in written.items():
        want = bf16_to_f32(f32_to_bf16_bits(v)).reshape(np.shape(v)) if k in bf16_keys else np.asarray(v)
        got = read.tensors[k]
        if got.shape != want.shape or got.dtype != want.dtype or not np.array_equal(got, want):
            raise VerificationError(f"{read.path}: {k} read back differs from what was written "
                                    f"({got.dtype}{got.shape} vs {want.dtype}{want.shape}); nothing was written")
    return len(written)


def same_model(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> bool:
    """Whether two state dicts of one model layout load into identical models:
    the same keys and, as the model holds them (float32), the same bits."""
    if set(a) != set(b):  # the model loads by name: order does not matter
        return False
    for k, v in a.items():
        x, y = _float32(np.asarray(v)), _float32(np.asarray(b[k]))
        if x.shape != y.shape or x.dtype != y.dtype or x.tobytes() != y.tobytes():
            return False
    return True


def _read_back_only(source: LoadedWeights, layout: str, n: int, seconds: float, timings: dict) -> Verification:
    label = f"{framework_of(layout)} GENet_{source.arch} ({layout})"
    proven = (f"read back bit-identical ({n} tensors); the destination model is the source model ({label}: same "
              f"framework and layout, the same tensors bit for bit), so no model comparison was run (it would "
              f"compare the model with itself); names proven by the layout specs the mapping table is checked "
              f"against")
    return Verification(passed=True, reference="none: no model was run", rule="read back bit for bit",
                        error=None, bound=None, margin=None, judgements=[], max_abs_diff=None, ref_max_abs=None,
                        rel_l2=None, cosine=None, top1_agreement=None, source_model=label, destination_model=label,
                        input="none", compared=[], tensors_read_back=n, seconds=seconds, timings=timings,
                        method=READ_BACK, proven=proven)


def verify(source: LoadedWeights, written: Mapping[str, np.ndarray], read_back: LoadedWeights,
           bf16_keys=frozenset(), batch: int = 1) -> Verification:
    """Judge the source and destination models (tensors read back from the
    written file) against the float64 recomputation on the seeded input;
    see the module docstring."""
    from parity.core.compare import compare, top1_agreement
    from parity.core.reference import float64_model
    from parity.core.seeded import INPUT_SEED, seeded_input
    from parity.core.tolerances import RULE, judge

    start = time.perf_counter()
    timings = {}
    n = check_read_back(written, read_back, bf16_keys)
    timings["compare_tensors"] = time.perf_counter() - start
    arch = source.arch
    src_layout, dst_layout = _model_layout(source.layout), _model_layout(read_back.layout)
    # The truth: float64 with the source's own weights, in torch storage of the same folding.
    truth_layout = "fused" if source.fused else "official"
    if src_layout == dst_layout:
        t = time.perf_counter()
        same = same_model(to_layout(source, src_layout), to_layout(read_back, dst_layout))
        timings["compare_models_tensors"] = time.perf_counter() - t
        if same:
            return _read_back_only(source, dst_layout, n, time.perf_counter() - start, timings)
    truth_tensors = to_layout(source, truth_layout)
    x = seeded_input(arch, batch)

    def timed(step, fn):
        t = time.perf_counter()
        out = fn()
        timings[step] = time.perf_counter() - t
        return out

    points = checkpoints(arch)

    def run(model, layout, inputs):
        logits, captured = forward_capturing(model, inputs, [where[layout] for _, where in points])
        return [captured[where[layout]] for _, where in points] + [logits]

    names = [label for label, _ in points] + ["logits"]
    models = {"source": timed("build_source", lambda: build_model(arch, src_layout, to_layout(source, src_layout))),
              "destination": timed("build_destination",
                                   lambda: build_model(arch, dst_layout, to_layout(read_back, dst_layout)))}
    layouts = {"source": src_layout, "destination": dst_layout}
    outs = {role: timed(f"{role}_model", lambda m=m, r=role: run(m, layouts[r], x)) for role, m in models.items()}
    labels = {"source": f"{framework_of(src_layout)} GENet_{arch} ({src_layout})",
              "destination": f"{framework_of(dst_layout)} GENet_{arch} ({dst_layout})"}
    reference_role = next((r for r in ("source", "destination") if layouts[r] == truth_layout), None)
    if reference_role is None:  # Paddle source, BN-folded torch destination: torch on the source's weights
        reference_out = timed("reference_model",
                              lambda: run(build_model(arch, truth_layout, truth_tensors), truth_layout, x))
        reference_label = f"torch float32 GENet_{arch} ({truth_layout}, source weights)"
    else:
        reference_out, reference_label = outs[reference_role], f"torch float32 ({reference_role} model)"
    f64 = timed("float64_model", lambda: run(float64_model(arch, truth_tensors, fused=source.fused), truth_layout,
                                             x.astype(np.float64)))
    # Forward order: every checkpoint of a model, then the next model; the first failure names where.
    judged = [judge(name, outs[role][i], f64[i], reference=reference_out[i], candidate_label=labels[role],
                    reference_label=reference_label)
              for role in ("source", "destination") if role != reference_role for i, name in enumerate(names)]
    nonfinite = None
    everything = [reference_out[-1], f64[-1]] + [o[-1] for o in outs.values()]
    if not all(np.isfinite(o).all() for o in everything):
        culprits = []
        for role, model in models.items():
            if not np.isfinite(outs[role][-1]).all():
                culprits.append(f"{labels[role]}: first at {first_nonfinite_layer(model, x)}")
        if not np.isfinite(f64[-1]).all():
            culprits.append("the float64 recomputation overflows too")
        nonfinite = "; ".join(culprits) or "the torch float32 reference overflows"
    d = compare("logits", outs["destination"][-1], outs["source"][-1])
    worst = max(judged, key=lambda j: j.margin)
    first = next((j for j in judged if not j.passed), None)
    passed = nonfinite is None and first is None
    return Verification(passed=passed,
                        reference=f"torch_ref float64 recomputation with the source's weights ({truth_layout} layout)",
                        rule=RULE, error=worst.error, bound=worst.bound, margin=worst.margin,
                        judgements=[j.to_dict() for j in judged], max_abs_diff=d.max_abs, ref_max_abs=d.ref_max_abs,
                        rel_l2=d.rel_l2, cosine=d.cosine, top1_agreement=top1_agreement(outs["destination"][-1],
                                                                                        outs["source"][-1]),
                        source_model=labels["source"], destination_model=labels["destination"],
                        input=f"seeded normal noise (numpy seed {INPUT_SEED}), batch {batch}, float32",
                        compared=names, tensors_read_back=n, seconds=time.perf_counter() - start,
                        timings=timings, nonfinite=nonfinite,
                        first_divergent=None if first is None else f"{first.name} of {first.candidate}")
