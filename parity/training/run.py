"""The K-step run: torch float32 and Paddle float32 each train their own
GENet on the same batches with the same recipe; after every step of each, a
float64 twin recomputes that very step (`float64_step`), and every Paddle
quantity is judged by the project's rule (parity.core.tolerances): its error
against the float64 recomputation of Paddle's step may be at most FACTOR x
torch's error against the recomputation of torch's step, plus a few ulp.

Quantities are paired only through the shared mapping table: its module rows
for the layers (hooked by path in both frameworks), its tensor rows for
parameters, gradients and BN statistics, with the fc weight transposed back
from Paddle's [in, out].

Per step the models run one after the other, and each candidate's outputs are
held only until its twin's forward has been compared with them. The update is
judged on the optimizer's arithmetic: each twin steps from its candidate's
gradients (float64_step.Float64Twin.step_with), whose errors the backward
checks judged.
"""
from __future__ import annotations

import time
from typing import Mapping, Optional, Sequence

import numpy as np

from converters.table.mapping import DROP, TRANSPOSE, mapping_table
from genet_arch import canonical_arch
from genet_arch.naming import fc_path

from parity.core import tolerances
from parity.core.compare import rel_l2_cosine
from parity.core.reference import torch_state_of_paddle
from parity.training.batches import Batches
from parity.training.mistakes import check_mistakes
from parity.training.recipe import Recipe
from parity.training.result import QuantityCheck, StepSummary, TrainResult

CANDIDATE, REFERENCE = "Paddle float32", "torch float32"
TENSOR_ROLES = ("weight", "bias", "mean", "variance")
PARAM_ROLES = ("weight", "bias")


def paddle_to_torch_storage(row, value: np.ndarray) -> np.ndarray:
    """A Paddle tensor (value or gradient) in torch storage, by its mapping row."""
    if row.action == TRANSPOSE:
        return np.ascontiguousarray(np.asarray(value).T)
    return np.asarray(value)


def _np(t):
    return t.detach().numpy()


class _Hooks:
    """Forward hooks on every mapping-table module of one model; `sink(index,
    output)` receives each output while set."""

    def __init__(self, model, rows, paddle: bool):
        from parity.core.modules import paddle_layer, torch_module

        self.sink = None
        self.handles = []
        for i, row in enumerate(rows):
            if paddle:
                self.handles.append(paddle_layer(model, row.paddle).register_forward_post_hook(self._hook(i)))
            else:
                self.handles.append(torch_module(model, row.official).register_forward_hook(self._hook(i)))

    def _hook(self, index):
        def hook(module, inputs, out):
            if self.sink is not None:
                self.sink(index, out)
        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


def run_training_parity(arch: str, official_state: Mapping[str, np.ndarray], batches: Batches,
                        recipe: Optional[Recipe] = None, freeze_backbone: bool = False,
                        mistakes: Sequence[str] = (), progress=False, weights_info: Optional[dict] = None,
                        head_info: Optional[dict] = None) -> TrainResult:
    """Train both frameworks len(batches) steps from `official_state` (official
    layout; its fc fixes the number of classes) and judge every quantity.

    freeze_backbone: only the fc trains (the backbone's BN layers still run in
      train mode, normalising with batch statistics and updating their
      running statistics, as in torch when parameters are merely frozen).
    mistakes: names from parity.training.MISTAKES to inject.
    progress: True for a progress display, or a callable(done, total, label).
    """
    import paddle
    import torch

    import paddle_genet
    import torch_ref

    from parity.core.environment import environment
    from parity.core.progress import PhaseClock, step_callback
    from parity.training.float64_step import Float64Twin
    from parity.training.paddle_recipe import apply_model_mistakes, paddle_loss, paddle_optimizer

    start = time.perf_counter()
    recipe = recipe or Recipe()
    arch = canonical_arch(arch)
    fc_key = f"{fc_path('official')}.weight"
    if fc_key not in official_state:
        raise ValueError(f"official_state has no {fc_key}")
    num_classes, in_features = (int(d) for d in np.shape(official_state[fc_key]))
    table = mapping_table(arch, num_classes)
    mistakes = check_mistakes(mistakes, recipe.optimizer, square_head=num_classes == in_features)
    for s, (x, y) in enumerate(zip(batches.inputs, batches.labels)):
        if x.ndim != 4 or x.shape[1] != 3 or x.dtype != np.float32:
            raise ValueError(f"batch {s + 1}: expected float32 (N, 3, H, W), got {x.dtype} {x.shape}")
        if y.shape != (x.shape[0],) or y.min() < 0 or y.max() >= num_classes:
            raise ValueError(f"batch {s + 1}: expected {x.shape[0]} labels in [0, {num_classes}), got {y}")
    rows = table.modules
    if rows[-1].kind != "fc":
        raise AssertionError("the mapping table's last module row must be the fc (the loss reads its error)")
    relu_rows = [i for i, r in enumerate(rows) if r.kind in ("relu", "unit")]
    fc_module = rows[-1].official
    tensor_rows = [r for r in table.rows if r.action != DROP and r.role in TENSOR_ROLES]
    trainable = {r.official for r in tensor_rows if r.role in PARAM_ROLES and (not freeze_backbone
                                                                              or r.module == fc_module)}
    param_rows = [r for r in tensor_rows if r.official in trainable]

    clock = PhaseClock()
    with clock("build"):
        t_model = torch_ref.load_state(torch_ref.build(arch, num_classes), official_state, source="official weights")
        t_model.train()
        twins = {side: Float64Twin(t_model, [rows[i].official for i in relu_rows], trainable, recipe)
                 for side in ("torch", "paddle")}
        for name, p in t_model.named_parameters():
            p.requires_grad_(name in trainable)
        t_opt = recipe.torch_optimizer(p for p in t_model.parameters() if p.requires_grad)
        with paddle.LazyGuard():  # every tensor is overwritten by load_state
            p_model = paddle_genet.build(arch, num_classes)
        paddle_genet.load_state(p_model, table.convert(official_state, "official", "paddle"),
                                source="official weights via the mapping table")
        p_model.train()
        apply_model_mistakes(p_model, mistakes)
        p_params = dict(p_model.named_parameters())
        paddle_trainable = {table.row("paddle", k).official: p for k, p in p_params.items()
                            if table.row("paddle", k).official in trainable}
        for k, p in p_params.items():
            p.stop_gradient = table.row("paddle", k).official not in trainable
        p_opt = paddle_optimizer(recipe, [paddle_trainable[r.official] for r in param_rows], mistakes)
        t_params = dict(t_model.named_parameters())
    hooks = {"torch": _Hooks(t_model, rows, False), "paddle": _Hooks(p_model, rows, True),
             "torch_f64": _Hooks(twins["torch"].model, rows, False),
             "paddle_f64": _Hooks(twins["paddle"].model, rows, False)}
    untransposed = "fc-grad-untransposed" in mistakes

    relu_set = set(relu_rows)
    order = {r.official: k for k, r in enumerate(tensor_rows)}
    checks = []
    summaries = []
    report, bar = step_callback(progress, len(batches), "training")
    try:
        for step, (x, y) in enumerate(zip(batches.inputs, batches.labels), start=1):
            t0 = time.perf_counter()
            report(step - 1, len(batches), f"GENet_{arch}: step {step}/{len(batches)}")
            pre_t = {k: v.detach().clone() for k, v in t_model.state_dict().items()}
            pre_p = torch_state_of_paddle(p_model, arch)
            xt, yt = torch.from_numpy(x), torch.from_numpy(y)

            # ---- torch float32, then the float64 recomputation of its step: torch's own errors
            t_out, t_masks, t_fwd_err = {}, {}, {}

            def t_sink(i, out):
                t_out[i] = out.detach()
                if i in relu_set:
                    t_masks[rows[i].official] = out.detach() > 0

            def tr_sink(i, out):
                t_fwd_err[i] = tolerances.max_abs_error(_np(t_out.pop(i)), _np(out))

            with clock("torch"):
                hooks["torch"].sink = t_sink
                t_opt.zero_grad(set_to_none=True)
                t_loss = recipe.torch_loss(t_model(xt), yt)
                t_loss.backward()
                hooks["torch"].sink = None
                t_grads = {r.official: t_params[r.official].grad for r in param_rows}
                t_opt.step()
            twin = twins["torch"]
            with clock("float64"):
                twin.load(pre_t)
                twin.set_masks(t_masks)
                hooks["torch_f64"].sink = tr_sink
                twin.optimizer.zero_grad(set_to_none=True)
                tr_logits = twin.model(xt.double())
                tr_logits.retain_grad()
                tr_loss = recipe.torch_loss(tr_logits, yt)
                hooks["torch_f64"].sink = None
                tr_loss.backward()
            with clock("compare"):
                r_params = dict(twin.model.named_parameters())
                t_grad_err = {k: tolerances.max_abs_error(_np(g), _np(r_params[k].grad)) for k, g in t_grads.items()}
                # One number: torch's own loss error is one draw of ~B x classes rounding errors that can
                # cancel (3e-9 against 6e-6 on the logits, GENet_large); its bar is that logit error
                # carried to the loss to first order, or the loss error itself where larger.
                t_loss_err = max(tolerances.max_abs_error(t_loss.item(), tr_loss.item()),
                                 t_fwd_err[len(rows) - 1] * float(tr_logits.grad.abs().sum()))
            with clock("float64"):
                twin.step_with(t_grads)
            t_flips = twin.flips()
            with clock("compare"):
                t_state, r_state = t_model.state_dict(), twin.model.state_dict()
                t_upd_err = {r.official: tolerances.max_abs_error(_np(t_state[r.official]), _np(r_state[r.official]))
                             for r in tensor_rows}
                t_after = {r.official: _np(t_state[r.official]) for r in param_rows}
            t_out.clear(), t_masks.clear(), t_grads.clear()  # free this side's tensors before Paddle runs

            # ---- Paddle float32, then the float64 recomputation of its step: judged against torch's errors
            p_out, p_masks, fwd = {}, {}, {}

            def p_sink(i, out):
                p_out[i] = out.numpy()
                if i in relu_set:
                    p_masks[rows[i].official] = torch.from_numpy(p_out[i] > 0)

            def pr_sink(i, out):
                row = rows[i]
                j = tolerances.judge(row.official, p_out.pop(i), _np(out), reference_error=t_fwd_err[i],
                                     candidate_label=CANDIDATE, reference_label=REFERENCE)
                fwd[i] = QuantityCheck.of(step, "forward", row.kind, row.official, row.paddle, i, out.shape, j)

            with clock("paddle"):
                hooks["paddle"].sink = p_sink
                p_opt.clear_grad()
                p_loss = paddle_loss(recipe, p_model(paddle.to_tensor(x)), paddle.to_tensor(y), mistakes)
                p_loss.backward()
                hooks["paddle"].sink = None
                p_grads = {r.official: paddle_to_torch_storage(r, paddle_trainable[r.official].grad.numpy())
                           for r in param_rows}
                p_opt.step()
            twin = twins["paddle"]
            with clock("float64"):
                twin.load(pre_p)
                twin.set_masks(p_masks)
                hooks["paddle_f64"].sink = pr_sink
                twin.optimizer.zero_grad(set_to_none=True)
                pr_loss = recipe.torch_loss(twin.model(xt.double()), yt)
                hooks["paddle_f64"].sink = None
                pr_loss.backward()
            p_out.clear(), p_masks.clear()
            with clock("compare"):
                if len(fwd) != len(rows):
                    missing = [rows[i].official for i in range(len(rows)) if i not in fwd]
                    raise AssertionError(f"step {step}: modules never ran in both models: {', '.join(missing)}")
                checks += [fwd[i] for i in range(len(rows))]
                j = tolerances.judge("loss", float(p_loss.item()), pr_loss.item(), reference_error=t_loss_err,
                                     candidate_label=CANDIDATE, reference_label=REFERENCE)
                checks.append(QuantityCheck.of(step, "loss", "loss", "loss", "loss", len(rows), (), j))
                r_params = dict(twin.model.named_parameters())
                for r in reversed(param_rows):  # backpropagation order: the fc first
                    g = p_grads[r.official]
                    if untransposed and r.action == TRANSPOSE:  # the injected comparison mistake
                        g = np.ascontiguousarray(g.T)
                    f64 = _np(r_params[r.official].grad)
                    if g.shape != f64.shape:
                        raise AssertionError(f"{r.official}: Paddle gradient {g.shape} vs torch {f64.shape}")
                    j = tolerances.judge(r.official, g, f64, reference_error=t_grad_err[r.official],
                                         candidate_label=CANDIDATE, reference_label=REFERENCE)
                    checks.append(QuantityCheck.of(step, "backward", r.role, r.official, r.paddle, order[r.official],
                                           f64.shape, j, *rel_l2_cosine(g, f64)))
            with clock("float64"):
                twin.step_with(p_grads)
            p_flips = twin.flips()
            with clock("compare"):
                p_state = torch_state_of_paddle(p_model, arch)
                r_state = twin.model.state_dict()
                for r in tensor_rows:
                    j = tolerances.judge(r.official, p_state[r.official], _np(r_state[r.official]),
                                         reference_error=t_upd_err[r.official], candidate_label=CANDIDATE,
                                         reference_label=REFERENCE)
                    checks.append(QuantityCheck.of(step, "update", r.role, r.official, r.paddle, order[r.official],
                                           r.torch_shape, j))
                drift = max(((tolerances.max_abs_error(p_state[k], v) / max(float(np.max(np.abs(v))), 1e-30), k)
                             for k, v in t_after.items()), default=(0.0, ""))
            summaries.append(StepSummary(
                step=step, losses={"torch": float(t_loss.item()), "paddle": float(p_loss.item()),
                                   "torch_float64": float(tr_loss.item()), "paddle_float64": float(pr_loss.item())},
                relu_branches={"torch": t_flips, "paddle": p_flips},
                drift={"name": drift[1], "relative": drift[0]}, seconds=time.perf_counter() - t0))
        report(len(batches), len(batches), f"GENet_{arch}: done")
    finally:
        for h in hooks.values():
            h.remove()
        if bar is not None:
            bar.stop()

    notes = []
    if mistakes:
        notes.append("INJECTED MISTAKES (this run is meant to fail): " + ", ".join(mistakes))
    tolerance = tolerances.describe(None, None, "float32")
    tolerance["loss_reference_error"] = ("torch's logit error x ||dL/dlogits||_1 (first order), or torch's loss "
                                         "error where larger: a single number's own error can cancel to nothing")
    tolerance["truth"] = ("float64 torch_ref recomputing each framework's own step from that framework's state, "
                          "its ReLU branches taken from that framework")
    return TrainResult(arch=arch, num_classes=num_classes, recipe=recipe.to_dict(), steps=len(batches),
                       frozen_backbone=freeze_backbone, mistakes=list(mistakes), batches=dict(batches.info),
                       weights=dict(weights_info or {}), head=dict(head_info or {}), checks=checks,
                       step_summaries=summaries, tolerance=tolerance, environment=environment("cpu", "float32"),
                       seconds=time.perf_counter() - start, timings=clock.totals(), notes=notes)
