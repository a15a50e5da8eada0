"""Checks of lesson 06 (training): references pass, realistic mistakes fail with the right hint."""

from __future__ import annotations

import math

import pytest
import torch
from lookalikes import AlwaysEqualFloat as AlwaysEqual

from course import checks as check
from course.checks import CheckFailed, NotAttempted
from course.train import lr_at

# ------------------------------------------------------------------------ schedule


def schedule_ok(step, max_lr, warmup_steps, max_steps, min_lr):
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (max_lr - min_lr)


def schedule_warmup_from_zero(step, max_lr, warmup_steps, max_steps, min_lr):
    if step < warmup_steps:
        return max_lr * step / warmup_steps
    return schedule_ok(step, max_lr, warmup_steps, max_steps, min_lr)


def schedule_cosine_to_zero(step, max_lr, warmup_steps, max_steps, min_lr):
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return 0.0
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * progress)) * max_lr


def schedule_no_floor(step, max_lr, warmup_steps, max_steps, min_lr):
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (max_lr - min_lr)


def schedule_warmup_off_by_one(step, max_lr, warmup_steps, max_steps, min_lr):
    if step < warmup_steps:
        return max_lr * (step + 1) / (warmup_steps + 1)  # never quite reaches max_lr
    return schedule_ok(step, max_lr, warmup_steps, max_steps, min_lr)


def schedule_cosine_off_by_one(step, max_lr, warmup_steps, max_steps, min_lr):
    # the denominator counts one step too many: at max_steps - 1 the rate is still above
    # min_lr, and the cosine never gets there
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return min_lr
    progress = (step - warmup_steps) / (max_steps - warmup_steps + 1)
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (max_lr - min_lr)


def schedule_cosine_from_step_zero(step, max_lr, warmup_steps, max_steps, min_lr):
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return min_lr
    progress = step / max_steps  # forgets that the cosine starts after the warmup
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (max_lr - min_lr)


def schedule_hf_convention(step, max_lr, warmup_steps, max_steps, min_lr):
    # transformers' get_cosine_with_min_lr_schedule_with_warmup: warmup from 0
    if step < warmup_steps:
        return max_lr * step / max(1, warmup_steps)
    return schedule_ok(step, max_lr, warmup_steps, max_steps, min_lr)


def schedule_float32(step, max_lr, warmup_steps, max_steps, min_lr):
    """Correct, computed on float32 tensors (torch.cos), returned as a Python float."""
    if step < warmup_steps:
        return (torch.tensor(max_lr, dtype=torch.float32) * (step + 1) / warmup_steps).item()
    if step >= max_steps:
        return torch.tensor(min_lr, dtype=torch.float32).item()
    progress = torch.tensor((step - warmup_steps) / max(1, max_steps - warmup_steps),
                            dtype=torch.float32)
    lo, hi = torch.tensor(min_lr, dtype=torch.float32), torch.tensor(max_lr, dtype=torch.float32)
    return (lo + 0.5 * (1 + torch.cos(torch.pi * progress)) * (hi - lo)).item()


def schedule_numpy_float32(step, max_lr, warmup_steps, max_steps, min_lr):
    import numpy as np

    return np.float32(schedule_ok(step, max_lr, warmup_steps, max_steps, min_lr))


def schedule_strict_after_max(step, max_lr, warmup_steps, max_steps, min_lr):
    # `step > max_steps` instead of `>=`: only wrong when warmup_steps == max_steps, where
    # step == max_steps would start a cosine of 0 steps (progress 0 -> max_lr)
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step > max_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (max_lr - min_lr)


def schedule_returns_tensor(step, max_lr, warmup_steps, max_steps, min_lr):
    return torch.tensor(schedule_ok(step, max_lr, warmup_steps, max_steps, min_lr),
                        dtype=torch.float64)


def schedule_mutates_nothing_but_returns_a_list(step, max_lr, warmup_steps, max_steps, min_lr):
    return [schedule_ok(step, max_lr, warmup_steps, max_steps, min_lr)]


def test_schedule_reference_passes(capsys):
    check.lr_schedule(schedule_ok)
    out = capsys.readouterr().out
    assert out.startswith("✓ lr_schedule: ") and out.endswith(" cases passed\n")


@pytest.mark.parametrize("fn", [schedule_float32, schedule_numpy_float32])
def test_schedule_float32_accuracy_is_accepted(fn, capsys):
    check.lr_schedule(fn)
    assert capsys.readouterr().out.startswith("✓ lr_schedule: ")


def test_float32_schedule_really_differs_from_float64_beyond_the_old_tolerance():
    worst = max(abs(schedule_float32(s, 5e-4, 5, 40, 0.0) - schedule_ok(s, 5e-4, 5, 40, 0.0))
                / max(schedule_ok(s, 5e-4, 5, 40, 0.0), 1e-30) for s in range(5, 40))
    assert worst > 1e-9  # the old rtol=1e-9 rejected it


def test_step_beyond_max_with_warmup_equal_to_max_steps_gets_its_own_hint():
    with pytest.raises(CheckFailed, match="step=25, max_lr=0.002, warmup_steps=25") as info:
        check.lr_schedule(schedule_strict_after_max)
    msg = str(info.value)
    assert "no cosine phase" in msg and "step >= max_steps" in msg
    assert "decays to 0" not in msg


@pytest.mark.parametrize("fn, fragment", [
    (schedule_returns_tensor, "expected float, got a torch.Tensor"),
    (schedule_mutates_nothing_but_returns_a_list, "expected float, got a list"),
    (lambda *a: None, "forget to `return`"),
])
def test_schedule_wrong_return_types_are_rejected(fn, fragment):
    with pytest.raises(CheckFailed) as info:
        check.lr_schedule(fn)
    assert fragment in str(info.value)
    assert "Python float" in str(info.value)


def test_schedule_always_equal_float_is_rejected():
    with pytest.raises(CheckFailed, match="expected float, got an AlwaysEqual"):
        check.lr_schedule(lambda *a: AlwaysEqual(1.0))


@pytest.mark.parametrize("step, warmup, max_steps", [(0, 10, 100), (9, 10, 100), (10, 10, 100),
                                                     (55, 10, 100), (100, 10, 100), (0, 0, 30),
                                                     (31, 0, 30), (24, 25, 25)])
def test_reference_schedule_is_lr_at(step, warmup, max_steps):
    assert math.isclose(schedule_ok(step, 3e-3, warmup, max_steps, 3e-4),
                        lr_at(step, lr=3e-3, warmup_steps=warmup, max_steps=max_steps,
                              min_lr_ratio=0.1), rel_tol=1e-12)


@pytest.mark.parametrize("wrong, hint", [
    (schedule_warmup_from_zero, "warmup starts at 0"),
    (schedule_hf_convention, "warmup starts at 0"),
    (schedule_warmup_off_by_one, "off by one in the warmup"),
    (schedule_cosine_to_zero, "decays to 0 instead of min_lr"),
    (schedule_no_floor, "after max_steps the rate stays at min_lr"),
    (schedule_cosine_off_by_one, "off by one in the cosine"),
    (schedule_cosine_from_step_zero, "must start after the warmup"),
])
def test_schedule_mistakes_are_named(wrong, hint):
    with pytest.raises(CheckFailed, match="lr_schedule: on input step=") as info:
        check.lr_schedule(wrong)
    assert hint in str(info.value)


def test_hint_levels_exist_and_do_not_print_the_answer_line():
    from course.checks._core import HINTS

    for name in ("lr_schedule", "train_step"):
        assert len(HINTS[name]) == 2, name
    joined = " ".join(HINTS["lr_schedule"])
    assert "(step + 1) / warmup_steps" not in joined and "min_lr +" not in joined
    assert "clip_grad_norm_(model.parameters(), grad_clip)" not in " ".join(HINTS["train_step"])


def test_schedule_not_attempted():
    def todo(*args):
        raise NotImplementedError("Exercise: implement lr_schedule()")

    with pytest.raises(NotAttempted):
        check.lr_schedule(todo)


# -------------------------------------------------------------------------- step


def step_ok(model, optimizer, x, y, grad_clip):
    _, loss = model(x, y)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad()
    return loss.item()


def step_zero_grad_first(model, optimizer, x, y, grad_clip):
    optimizer.zero_grad(set_to_none=True)  # the other common, equally valid placement
    _, loss = model(x, y)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item()


def step_no_zero_grad(model, optimizer, x, y, grad_clip):
    _, loss = model(x, y)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item()


def step_clip_after_step(model, optimizer, x, y, grad_clip):
    _, loss = model(x, y)
    loss.backward()
    optimizer.step()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.zero_grad()
    return loss.item()


def step_no_clip(model, optimizer, x, y, grad_clip):
    _, loss = model(x, y)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return loss.item()


def step_returns_tensor(model, optimizer, x, y, grad_clip):
    _, loss = model(x, y)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad()
    return loss


def step_zero_grad_before_step(model, optimizer, x, y, grad_clip):
    _, loss = model(x, y)
    loss.backward()
    optimizer.zero_grad()
    optimizer.step()
    return loss.item()


def step_clip_each_tensor(model, optimizer, x, y, grad_clip):
    _, loss = model(x, y)
    loss.backward()
    if grad_clip:
        for p in model.parameters():  # clips every tensor on its own
            torch.nn.utils.clip_grad_norm_([p], grad_clip)
    optimizer.step()
    optimizer.zero_grad()
    return loss.item()


def step_clip_values(model, optimizer, x, y, grad_clip):
    _, loss = model(x, y)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_value_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad()
    return loss.item()


def step_loss_after_update(model, optimizer, x, y, grad_clip):
    _, loss = model(x, y)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad()
    with torch.no_grad():
        return model(x, y)[1].item()  # the loss of the updated model, not of this step


def step_forgets_backward(model, optimizer, x, y, grad_clip):
    _, loss = model(x, y)
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad()
    return loss.item()


def test_step_reference_passes(capsys):
    check.train_step(step_ok)
    assert capsys.readouterr().out == "✓ train_step: 5 cases passed\n"


def test_step_zeroing_at_the_start_is_accepted(capsys):
    check.train_step(step_zero_grad_first)
    assert capsys.readouterr().out == "✓ train_step: 5 cases passed\n"


@pytest.mark.parametrize("wrong, hint", [
    (step_no_zero_grad, "call optimizer.zero_grad() after optimizer.step()"),
    (step_clip_after_step, "clip the gradients BEFORE optimizer.step()"),
    (step_no_clip, "clip the gradients BEFORE optimizer.step()"),
    (step_returns_tensor, "return the loss as a Python float"),
    (step_zero_grad_before_step, "gradients were all zero"),
    (step_forgets_backward, "gradients were all zero"),
    (step_clip_each_tensor, "clipped on its own"),
    (step_clip_values, "clip_grad_value_"),
    (step_loss_after_update, "computed before the update"),
])
def test_step_mistakes_are_named(wrong, hint):
    with pytest.raises(CheckFailed, match="train_step: on input step ") as info:
        check.train_step(wrong)
    assert hint in str(info.value)


def test_no_zero_grad_passes_the_first_step_and_fails_a_later_one():
    with pytest.raises(CheckFailed, match="on input step 2 of 3") as info:
        check.train_step(step_no_zero_grad)
    assert "backward() added to them" in str(info.value)


def step_edits_labels(model, optimizer, x, y, grad_clip):
    y[y == -100] = 0  # "fixes" the padding in the caller's labels
    return step_ok(model, optimizer, x, y, grad_clip)


def step_edits_inputs(model, optimizer, x, y, grad_clip):
    x.clamp_(max=15)
    return step_ok(model, optimizer, x, y, grad_clip)


def step_numpy_float(model, optimizer, x, y, grad_clip):
    import numpy as np

    return np.float64(step_ok(model, optimizer, x, y, grad_clip))


def step_returns_list(model, optimizer, x, y, grad_clip):
    return [step_ok(model, optimizer, x, y, grad_clip)]


@pytest.mark.parametrize("wrong, argument", [(step_edits_labels, "argument 4"),
                                             (step_edits_inputs, "argument 3")])
def test_step_must_not_change_x_or_y(wrong, argument):
    with pytest.raises(CheckFailed, match=f"changed its {argument} in place"):
        check.train_step(wrong)


def test_step_may_change_the_model_and_the_optimizer_and_return_a_numpy_float(capsys):
    check.train_step(step_numpy_float)  # model and optimizer change: that is the point
    assert capsys.readouterr().out == "✓ train_step: 5 cases passed\n"


def test_step_wrong_container_and_always_equal_are_rejected():
    with pytest.raises(CheckFailed, match="expected float, got a list"):
        check.train_step(step_returns_list)

    def always_equal(model, optimizer, x, y, grad_clip):
        step_ok(model, optimizer, x, y, grad_clip)
        return AlwaysEqual(123.0)

    with pytest.raises(CheckFailed, match="expected float, got an AlwaysEqual"):
        check.train_step(always_equal)


def test_step_not_attempted():
    def todo(*args):
        raise NotImplementedError("Exercise: implement train_step()")

    with pytest.raises(NotAttempted):
        check.train_step(todo)


def test_the_checks_leave_the_global_rng_and_the_thread_setting_alone():
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check.lr_schedule(schedule_ok)
    check.train_step(step_ok)
    torch.testing.assert_close(torch.rand(3), expected)
    assert torch.get_num_threads() == threads
