"""Training loop: schedule, optimizer groups, data order, exact resume, divergence."""

from __future__ import annotations

import math

import pytest
import torch

from course.checkpoint import CHECKPOINT_NAME, load_checkpoint
from course.errors import ConfigError, TrainingDiverged
from course.model import GPT, GPTConfig
from course.train import (
    TrainConfig,
    batch_indices,
    describe_machine,
    fused_adamw_available,
    lr_at,
    make_optimizer,
    param_groups,
    resolve_device,
    train,
)


def tiny_model(dropout: float = 0.0, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=17, block_size=16, n_layer=2, n_head=2, n_embd=32, dropout=dropout))


def toy_blocks(n: int = 64, T: int = 16, seed: int = 0) -> torch.Tensor:
    """Learnable data: each row counts up modulo 17 from a random start."""
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, 17, (n, 1), generator=g)
    return (start + torch.arange(T)) % 17


def cfg(**kw) -> TrainConfig:
    base = dict(max_steps=12, batch_size=8, lr=3e-3, warmup_steps=3, eval_interval=4,
                eval_batches=2, device="cpu", seed=1)
    return TrainConfig(**{**base, **kw})


# ---------------------------------------------------------------- schedule
def test_lr_warmup_is_linear_and_starts_above_zero():
    lrs = [lr_at(s, lr=1.0, warmup_steps=4, max_steps=100) for s in range(4)]
    assert lrs == pytest.approx([0.25, 0.5, 0.75, 1.0])


def test_lr_cosine_midpoint_end_and_monotone():
    kw = dict(lr=1.0, warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    assert lr_at(10, **kw) == pytest.approx(1.0)
    assert lr_at(60, **kw) == pytest.approx(0.55)  # halfway: mean of max and floor
    assert lr_at(110, **kw) == pytest.approx(0.1)
    assert lr_at(10_000, **kw) == pytest.approx(0.1)
    after = [lr_at(s, **kw) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(after, after[1:], strict=False))


def test_lr_without_warmup_starts_at_peak():
    assert lr_at(0, lr=2.0, warmup_steps=0, max_steps=10) == pytest.approx(2.0)


# ---------------------------------------------------------------- optimizer groups
def test_param_groups_decay_only_matrices_and_cover_everything_once():
    model = tiny_model()
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"])
    assert all(p.dim() < 2 for p in no_decay["params"])
    ids = [id(p) for p in decay["params"] + no_decay["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    ln_gains = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.LayerNorm)}
    assert ln_gains and ln_gains <= {id(p) for p in no_decay["params"]}


# ---------------------------------------------------------------- data order
def test_batch_indices_is_a_pure_function_and_each_epoch_is_a_permutation():
    n, b = 20, 4
    epoch0 = torch.cat([batch_indices(s, n, b, seed=3) for s in range(5)])
    assert sorted(epoch0.tolist()) == list(range(20))
    epoch1 = torch.cat([batch_indices(s, n, b, seed=3) for s in range(5, 10)])
    assert sorted(epoch1.tolist()) == list(range(20))
    assert not torch.equal(epoch0, epoch1)
    assert torch.equal(batch_indices(7, n, b, seed=3), batch_indices(7, n, b, seed=3))
    assert not torch.equal(batch_indices(0, n, b, seed=3), batch_indices(0, n, b, seed=4))


def test_batch_larger_than_data_is_a_clear_error():
    with pytest.raises(ConfigError, match="larger than the 3 training blocks"):
        batch_indices(0, 3, 8, seed=0)


# ---------------------------------------------------------------- the loop
def test_training_reduces_validation_loss():
    model = tiny_model()
    data = toy_blocks(96)
    res = train(model, data[:80], data[80:], cfg(max_steps=60, eval_interval=20), progress=False)
    vals = [r["val_loss"] for r in res.history if "val_loss" in r]
    assert len(vals) == 3
    assert vals[-1] < 0.5 * math.log(17)  # far below the uniform guess
    assert res.tokens == 60 * 8 * 16
    assert [r["step"] for r in res.history] == list(range(1, 61))


def test_resume_continues_exactly(tmp_path):
    """Interrupted at step 6 and resumed == uninterrupted, loss for loss (dropout on)."""
    data = toy_blocks(64)
    full = train(tiny_model(dropout=0.1), data[:48], data[48:], cfg(), out_dir=tmp_path / "a",
                 progress=False)
    part = train(tiny_model(dropout=0.1), data[:48], data[48:], cfg(), out_dir=tmp_path / "b",
                 progress=False, stop_after=6)
    assert part.steps == 6
    resumed_model = tiny_model(dropout=0.1, seed=123)  # different init: must be overwritten
    rest = train(resumed_model, data[:48], data[48:], cfg(), out_dir=tmp_path / "b",
                 resume=True, progress=False)
    a = [(r["step"], r["train_loss"], r.get("val_loss")) for r in full.history]
    b = [(r["step"], r["train_loss"], r.get("val_loss")) for r in rest.history]
    assert a == b  # exact equality, not approximate
    m_full = tiny_model()
    load_checkpoint(tmp_path / "a" / CHECKPOINT_NAME, m_full)
    for p, q in zip(m_full.parameters(), resumed_model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_fused_adamw_is_opt_in_on_cpu_and_trains_like_the_default_kernel(monkeypatch):
    """None keeps the default kernel on CPU (shipped results stay bit-for-bit); True picks
    the fused one where this torch has it, and the default one where it has not."""
    import course.train as course_train

    cpu = torch.device("cpu")
    assert not make_optimizer(tiny_model(), cfg(), cpu).defaults["fused"]
    assert make_optimizer(tiny_model(), cfg(fused_adamw=True), cpu).defaults["fused"] is True
    assert fused_adamw_available("cpu")  # torch >= 2.4, which CI installs
    monkeypatch.setattr(course_train, "fused_adamw_available", lambda device_type: False)
    assert not make_optimizer(tiny_model(), cfg(fused_adamw=True), cpu).defaults["fused"]
    monkeypatch.undo()

    data = toy_blocks(64)
    runs = [train(tiny_model(), data[:48], data[48:], cfg(fused_adamw=f), progress=False) for f in (None, True)]
    a, b = ([r["train_loss"] for r in res.history] for res in runs)
    assert a == pytest.approx(b, rel=1e-4)  # the same update, rounded differently


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot resume"):
        train(tiny_model(), toy_blocks(32), None, cfg(), out_dir=tmp_path, resume=True, progress=False)


def test_gradient_accumulation_matches_the_full_batch():
    data = toy_blocks(64)
    one = train(tiny_model(), data, None, cfg(max_steps=5, grad_accum=1), progress=False)
    two = train(tiny_model(), data, None, cfg(max_steps=5, grad_accum=2), progress=False)
    for r1, r2 in zip(one.history, two.history, strict=True):
        assert r1["train_loss"] == pytest.approx(r2["train_loss"], rel=1e-4, abs=1e-5)


class _Poisoned(GPT):
    """A GPT whose loss turns NaN once `poison` is set (simulates a divergence)."""

    poison = False

    def forward(self, idx, labels=None, **kw):
        logits, loss = super().forward(idx, labels, **kw)
        if self.poison and loss is not None:
            loss = loss * float("nan")
        return logits, loss


@pytest.mark.parametrize(("log_interval", "poison_after", "nan_at", "good"), [
    (1, 4, 5, 4),
    # logs every 3 steps, checkpoints every 2: the step-4 checkpoint would hold the
    # diverged weights unless its loss is checked before it is saved
    (3, 3, 4, 2),
])
def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(
        tmp_path, log_interval, poison_after, nan_at, good):
    torch.manual_seed(0)
    model = _Poisoned(GPTConfig(vocab_size=17, block_size=16, n_layer=1, n_head=2, n_embd=16))

    def poison(record):
        if record["step"] == poison_after:
            model.poison = True

    with pytest.raises(TrainingDiverged, match=rf"became nan at step {nan_at}.*last good checkpoint"):
        train(model, toy_blocks(32), None,
              cfg(checkpoint_interval=2, eval_interval=100, log_interval=log_interval),
              out_dir=tmp_path, callback=poison, progress=False)
    fresh = GPT(model.config)
    info = load_checkpoint(tmp_path / CHECKPOINT_NAME, fresh)
    assert info["step"] == good
    assert all(torch.isfinite(p).all() for p in fresh.parameters())


def test_callback_sees_every_log_and_eval():
    seen = []
    train(tiny_model(), toy_blocks(32), toy_blocks(16, seed=1), cfg(max_steps=8),
          callback=seen.append, progress=False)
    assert [r["step"] for r in seen] == list(range(1, 9))
    assert [r["step"] for r in seen if "val_loss" in r] == [4, 8]
    assert all({"train_loss", "lr", "tokens"} <= set(r) for r in seen)


class FakeClock:
    """time.perf_counter that advances `tick` seconds at every call: a time budget without
    timing anything."""

    def __init__(self, tick: float) -> None:
        self.t, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.t += self.tick
        return self.t


def test_a_time_budget_stops_when_spent_with_the_schedule_fitted_to_it(monkeypatch):
    import course.train as train_module

    monkeypatch.setattr(train_module.time, "perf_counter", FakeClock(0.05))
    seen = []
    res = train(tiny_model(), toy_blocks(32), toy_blocks(16, seed=1),
                cfg(max_steps=4, warmup_steps=1, eval_interval=1000, max_seconds=3.0),
                callback=seen.append, progress=False)
    assert res.steps > 4  # max_steps only shapes the schedule; the budget decides the length
    assert res.steps == seen[-1]["step"] == len(seen)
    assert 3.0 <= res.train_seconds < 3.5
    assert "val_loss" in seen[-1] and all("val_loss" not in r for r in seen[:-1])  # one final evaluation
    lrs = [r["lr"] for r in seen]
    peak = lrs.index(max(lrs))
    assert max(lrs) == 3e-3 and peak < len(lrs) // 2
    assert all(a >= b for a, b in zip(lrs[peak:-1], lrs[peak + 1:], strict=True))  # the cosine, by time
    assert lrs[-1] < 0.2 * 3e-3  # near the floor (min_lr_ratio 0.1) when the budget ends


def test_a_time_budget_is_not_resumable(tmp_path):
    with pytest.raises(ConfigError, match="cannot be resumed"):
        train(tiny_model(), toy_blocks(32), None, cfg(max_seconds=1.0), out_dir=tmp_path, resume=True,
              progress=False)


def test_blocks_longer_than_the_model_context_are_rejected():
    with pytest.raises(ConfigError, match="block_size is 16"):
        train(tiny_model(), torch.zeros(32, 20, dtype=torch.long), None, cfg(), progress=False)


# ---------------------------------------------------------------- config and device
@pytest.mark.parametrize("bad", [dict(max_steps=0), dict(lr=-1.0), dict(lr=float("nan")),
                                 dict(batch_size=0), dict(dtype="float8"), dict(max_seconds=0),
                                 dict(max_seconds=-1.0), dict(max_seconds=float("inf"))])
def test_bad_train_config_is_rejected(bad):
    with pytest.raises(ConfigError):
        TrainConfig(**bad)


def test_describe_machine_names_the_cpu_its_cores_and_torch():
    import os
    import platform

    text = describe_machine("cpu")
    assert text.endswith(f", {os.cpu_count()} cores, torch {torch.__version__}")
    if platform.system() == "Linux":  # the model name from /proc/cpuinfo, not just "x86_64"
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
        if model:
            assert text.startswith(model)
    assert torch.backends.cpu.get_cpu_capability() in text  # e.g. AVX2 or AVX512


def test_resolve_device():
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_device("cuda")
