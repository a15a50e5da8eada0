"""Checks for lesson 06 (training): the learning-rate schedule and one optimisation step.

`lr_schedule` is compared with `course.train.lr_at` (the schedule the package trains
with) on a grid of steps that covers the edges: step 0, the last warmup step, the first
cosine step, `max_steps` and beyond.

`train_step` is compared with a reference step run on an identical copy of a tiny GPT.
The optimiser is plain SGD for most cases: Adam's first update is nearly the sign of the
gradient whatever its size, so it would hide a missing clip, while SGD moves every
weight by exactly lr × gradient. A step pre-hook on the optimiser records the gradients
the update actually used (their global norm, the largest per-tensor norm, the largest
value), which tells "clipped too late / not at all" apart from "clipped each tensor" and
"clipped each value", and those apart from other mistakes.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

from course.checks._core import (
    CheckFailed,
    call,
    exercise,
    expect_close,
    expect_contract,
    one_thread,
    show,
)

# A float32 computation (torch.cos on float32 tensors, then .item()) is as right as a float64
# one: its relative error is a few 1e-7, and next to a rate of ~1e-4 the absolute error of a
# float32 cosine (~6e-8 of max_lr) dominates. The mistakes below differ by far more.
_RTOL = 1e-6
_ATOL_OF_MAX_LR = 1e-6

# ------------------------------------------------------------------------ schedule


def _reference_lr(step: int, max_lr: float, warmup_steps: int, max_steps: int,
                  min_lr: float) -> float:
    from course.train import lr_at

    return lr_at(step, lr=max_lr, warmup_steps=warmup_steps, max_steps=max_steps,
                 min_lr_ratio=min_lr / max_lr)


def _schedule_mistake(fn_value: float, step: int, max_lr: float, warmup_steps: int,
                      max_steps: int, min_lr: float) -> str:
    """A hint naming the typical mistake that produces `fn_value`, or a generic one."""

    def near(x: float) -> bool:
        return math.isclose(fn_value, x, rel_tol=_RTOL, abs_tol=_ATOL_OF_MAX_LR * max_lr)

    if step < warmup_steps:
        if near(max_lr * step / warmup_steps):
            return ("warmup starts at 0: then the first update does nothing. The convention here "
                    "counts the current step as done, so step 0 already moves and the warmup "
                    "reaches max_lr exactly at step warmup_steps - 1")
        if near(max_lr * (step + 1) / (warmup_steps + 1)) or near(max_lr * step / (warmup_steps - 1)
                                                                   if warmup_steps > 1 else -1.0):
            return ("off by one in the warmup: it must reach max_lr exactly at step "
                    "warmup_steps - 1 (the last warmup step), rising by max_lr/warmup_steps "
                    "per step from step 0")
        return ("during warmup (step < warmup_steps) the rate rises linearly, by "
                "max_lr/warmup_steps per step, from one step's worth at step 0 to max_lr at "
                "step warmup_steps - 1")
    if step >= max_steps:
        if min_lr != 0 and near(0.0):
            return ("the cosine decays to 0 instead of min_lr: from max_steps on the rate is "
                    f"min_lr (here {min_lr!r}), the floor of the whole schedule")
        if warmup_steps >= max_steps and near(max_lr):
            return ("with warmup_steps == max_steps there is no cosine phase at all: the step "
                    "right after the warmup is already max_steps, where the rate is min_lr. "
                    "Test step >= max_steps (not step > max_steps) before computing the cosine, "
                    "whose progress would otherwise be 0/0")
        if step == max_steps:
            return ("at step == max_steps the cosine has finished: the rate is exactly min_lr "
                    "(test step >= max_steps, not step > max_steps)")
        return (f"after max_steps the rate stays at min_lr (here {min_lr!r}); did the cosine "
                "go on (and rise again) past max_steps?")
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    if near(cosine * max_lr):
        return ("the cosine decays to 0 instead of min_lr: the half cosine must go from max_lr "
                "down to min_lr, so it scales the distance max_lr - min_lr and sits on top of "
                "min_lr")
    other = 0.5 * (1.0 + math.cos(math.pi * min(1.0, step / max(1, max_steps))))
    if near(min_lr + other * (max_lr - min_lr)):
        return ("the cosine's progress must start after the warmup: it is 0 at step "
                "warmup_steps and 1 at max_steps (the fraction of the decay steps done)")
    for span in (max_steps - warmup_steps + 1, max_steps - warmup_steps - 1):
        for start in (warmup_steps, warmup_steps - 1):
            if span < 1 or (span == max_steps - warmup_steps and start == warmup_steps):
                continue
            shifted = 0.5 * (1.0 + math.cos(math.pi * (step - start) / span))
            if near(min_lr + shifted * (max_lr - min_lr)):
                return ("off by one in the cosine: it must start at max_lr at step warmup_steps "
                        "and reach min_lr exactly at max_steps, so its progress counts the steps "
                        "since warmup_steps out of max_steps - warmup_steps")
    return ("after the warmup the rate follows half a cosine from max_lr (progress 0, at step "
            "warmup_steps) down to min_lr (progress 1, at max_steps): compare your function "
            "with the lesson's formula at the failing step")


@exercise("lr_schedule", hints=(
    "Three phases, in this order of tests: step < warmup_steps (a linear ramp that reaches "
    "max_lr at step warmup_steps - 1), step >= max_steps (the floor min_lr), and in between "
    "half a cosine from max_lr down to min_lr. Return a Python float.",
    "For the cosine, first compute progress, the fraction of the decay done: 0 at step "
    "warmup_steps, 1 at max_steps. The factor 0.5·(1 + cos(π·progress)) falls from 1 to 0; "
    "use it to interpolate between min_lr and max_lr. Try warmup_steps = 0 and "
    "warmup_steps = max_steps by hand.",
))
def lr_schedule(fn: Callable[..., Any]) -> int:
    """`fn(step, max_lr, warmup_steps, max_steps, min_lr)` against `course.train.lr_at`."""
    name = "lr_schedule"
    configs = [
        # (max_lr, warmup_steps, max_steps, min_lr)
        (3e-3, 10, 100, 3e-4),
        (1.0, 4, 20, 0.1),
        (6e-4, 1, 50, 6e-5),  # a single warmup step
        (1e-3, 0, 30, 1e-4),  # no warmup at all
        (2e-3, 25, 25, 2e-4),  # warmup all the way: never any cosine
        (5e-4, 5, 40, 0.0),  # decay to zero
    ]
    n = 0
    for max_lr, warmup, max_steps, min_lr in configs:
        steps = sorted({0, 1, 2, warmup - 1, warmup, warmup + 1, (warmup + max_steps) // 2,
                        max_steps - 1, max_steps, max_steps + 7} - {-1})
        for step in steps:
            desc = (f"step={step}, max_lr={max_lr!r}, warmup_steps={warmup}, "
                    f"max_steps={max_steps}, min_lr={min_lr!r}")
            got = call(name, fn, step, max_lr, warmup, max_steps, min_lr, inputs_desc=desc)
            n += 1
            expect_contract(name, desc, float, got,
                            hint="return the learning rate as a Python float (call .item() on "
                                 "a one-element tensor): the optimizer's param groups and the "
                                 "plot below expect a number")
            expected = _reference_lr(step, max_lr, warmup, max_steps, min_lr)
            atol = _ATOL_OF_MAX_LR * max_lr
            if not math.isclose(float(got), expected, rel_tol=_RTOL, abs_tol=atol):
                hint = _schedule_mistake(float(got), step, max_lr, warmup, max_steps, min_lr)
                expect_close(name, desc, expected, float(got), rtol=_RTOL, atol=atol, hint=hint)
    return n


# -------------------------------------------------------------------------- step


def _tiny_model(seed: int) -> Any:
    import torch

    from course.model import GPT, GPTConfig

    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=17, block_size=8, n_layer=1, n_head=2, n_embd=16)).train()


def _grad_norm(params: list[Any]) -> float:
    import torch

    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))


def _reference_step(model: Any, optimizer: Any, x: Any, y: Any, grad_clip: float | None) -> float:
    import torch

    _, loss = model(x, y)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def _max_param_diff(a: Any, b: Any) -> float:
    return max(float((p.detach() - q.detach()).abs().max())
               for p, q in zip(a.parameters(), b.parameters(), strict=True))


def _batch(g: Any, B: int = 4, T: int = 8, V: int = 17, pad: bool = False) -> tuple[Any, Any]:
    import torch

    x = torch.randint(0, V, (B, T), generator=g)
    y = x.clone()
    if pad:
        y[-1, T // 2 :] = -100  # a padded tail, as tail="pad" makes
    return x, y


def _step_case(fn: Callable[..., Any], k: int, kind: str, lr: float, clip_kind: str | None,
               n_steps: int, pad: bool, g: Any) -> None:
    """Run `n_steps` of the learner's step and of the reference on copies of one model."""
    import torch

    name = "train_step"
    model = _tiny_model(seed=k)
    ref = copy.deepcopy(model)
    batches = [_batch(g, pad=pad) for _ in range(n_steps)]

    # The clip threshold, from the gradient norm of the first batch (on a throwaway copy).
    probe = copy.deepcopy(model)
    probe(*batches[0])[1].backward()
    norm0 = _grad_norm(list(probe.parameters()))
    max0 = max(float(p.grad.abs().max()) for p in probe.parameters() if p.grad is not None)
    # "tight": below the global norm AND below the largest single value, so that clipping
    # the norm, clipping each tensor and clipping each value all give different updates.
    tight = min(norm0 / 4, max0 / 2)
    grad_clip = None if clip_kind is None else (tight if clip_kind == "tight" else norm0 * 10)

    def make_opt(m: Any) -> Any:
        if kind == "sgd":
            return torch.optim.SGD(m.parameters(), lr=lr)
        from course.train import param_groups

        return torch.optim.AdamW(param_groups(m, 0.1), lr=lr, betas=(0.9, 0.95))

    opt, ref_opt = make_opt(model), make_opt(ref)
    seen_norms: list[float] = []  # the global gradient norm each optimizer.step() used
    seen_parts: list[tuple[float, float]] = []  # (largest per-tensor norm, largest |value|)

    def record(o: Any, args: Any, kwargs: Any) -> None:
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        seen_norms.append(_grad_norm(list(model.parameters())))
        seen_parts.append((max((float(g.norm()) for g in grads), default=0.0),
                           max((float(g.abs().max()) for g in grads), default=0.0)))

    opt.register_step_pre_hook(record)

    clip_desc = "None" if grad_clip is None else f"{grad_clip:.3g}"
    for s, (x, y) in enumerate(batches):
        desc = (f"step {s + 1} of {n_steps} on a tiny GPT with {type(opt).__name__}(lr={lr}), "
                f"x and y of shape {tuple(x.shape)}{' (y with -100 padding)' if pad else ''}, "
                f"grad_clip={clip_desc}")
        before = len(seen_norms)
        leftover = any(p.grad is not None and bool(p.grad.any()) for p in model.parameters())
        expected_loss = _reference_step(ref, ref_opt, x, y, grad_clip)
        # the step is meant to change the model and the optimizer's state; x and y must stay
        got = call(name, fn, model, opt, x, y, grad_clip, inputs_desc=desc, may_change=(0, 1))
        if isinstance(got, torch.Tensor):
            raise CheckFailed(name, f"on input {desc} — expected float, got {show(got)}",
                              hint="return the loss as a Python float (.item() of the loss "
                                   "tensor): keeping the tensor would also keep its whole "
                                   "autograd graph alive")
        expect_contract(name, desc, float, got,
                        hint="return the loss of this batch as a Python float")
        if len(seen_norms) == before:
            raise CheckFailed(name, f"on input {desc} — optimizer.step() was never called",
                              hint="after backward() (and clipping), call optimizer.step()")
        if len(seen_norms) > before + 1:
            raise CheckFailed(name, f"on input {desc} — optimizer.step() was called "
                              f"{len(seen_norms) - before} times", hint="one step per call")
        step_norm = seen_norms[-1]
        if step_norm == 0.0:
            raise CheckFailed(name, f"on input {desc} — the gradients were all zero (or None) "
                              "when optimizer.step() ran",
                              hint="the order is: forward, loss.backward(), clip, "
                                   "optimizer.step(), optimizer.zero_grad()")
        if grad_clip is not None and step_norm > grad_clip * (1 + 1e-3):
            largest_tensor_norm, largest_value = seen_parts[-1]
            if abs(largest_tensor_norm - grad_clip) <= 1e-3 * grad_clip:
                hint = ("every parameter's gradient was clipped on its own; clip_grad_norm_ "
                        "clips the norm of ALL gradients together: call it once with "
                        "model.parameters(), not in a loop over the parameters")
            elif abs(largest_value - grad_clip) <= 1e-5 * grad_clip:
                hint = ("that clips each gradient value (clip_grad_value_); GPT training clips "
                        "the global norm of all gradients together (clip_grad_norm_), which "
                        "keeps the gradient's direction")
            else:
                hint = ("clip the gradients BEFORE optimizer.step(): the clipping belongs "
                        "between loss.backward(), which fills the gradients, and the step, "
                        "which uses them (clipping after the step, or not at all, lets the full "
                        "gradient through)")
            raise CheckFailed(name, f"on input {desc} — optimizer.step() saw a gradient norm "
                              f"of {step_norm:.4g}, above grad_clip={grad_clip:.4g}", hint=hint)
        expect_close(name, desc, expected_loss, float(got), rtol=1e-5, atol=1e-6,
                     hint="return the loss of this batch, computed before the update (the "
                          "loss of the forward pass whose gradients you used)")
        diff = _max_param_diff(model, ref)
        if diff > 1e-5:
            if leftover:
                hint = ("the gradients of the previous step were still there when this one "
                        "started, so backward() added to them: call optimizer.zero_grad() "
                        "after optimizer.step()")
            elif s > 0:
                hint = ("the first step was right but a later one was not; does your "
                        "function keep any state between calls?")
            else:
                hint = ("the update differs from the reference step; the order is: forward, "
                        "backward, clip the global gradient norm (when grad_clip is not None), "
                        "optimizer step, reset the gradients")
            raise CheckFailed(name, f"on input {desc} — after the step the parameters differ "
                              f"from the reference by up to {diff:.3g}", hint=hint)


@exercise("train_step", hints=(
    "Five things, in order: the forward pass (the model returns logits and the loss), "
    "backward, clip the gradients when grad_clip is not None, the optimizer's step, and "
    "resetting the gradients; then return the loss as a Python float.",
    "Clipping uses the global norm of ALL parameters' gradients at once (one call of "
    "torch.nn.utils.clip_grad_norm_ on the model's parameters), after backward() and before "
    "step(). Without resetting, the next backward() adds its gradients to these ones.",
))
def train_step(fn: Callable[..., Any]) -> int:
    """`fn(model, optimizer, x, y, grad_clip) -> float` against a reference step on a copy."""
    import torch

    g = torch.Generator().manual_seed(3)
    # (optimizer kind, lr, clip: "tight" = below the gradient norm, so clipping acts; "loose" =
    #  far above it, so clipping must change nothing; or None,
    #  number of consecutive steps, pad the labels)
    cases = [
        ("sgd", 0.5, "tight", 1, False),
        ("sgd", 0.5, "tight", 3, True),  # several steps: gradients must not pile up
        ("sgd", 0.5, "loose", 2, False),  # clip above the norm: clipping changes nothing
        ("adamw", 1e-2, "tight", 3, False),  # the real optimiser, with decay groups
        ("sgd", 0.5, None, 2, False),  # no clipping at all
    ]
    # the learner's global RNG and thread setting are left as they were
    with torch.random.fork_rng(devices=[]), one_thread():
        for k, (kind, lr, clip_kind, n_steps, pad) in enumerate(cases):
            _step_case(fn, k, kind, lr, clip_kind, n_steps, pad, g)
    return len(cases)
