"""The training loop: AdamW, warmup + cosine, clipping, accumulation, exact resume.

Design choices a seasoned reader will look for:

* **Data order is a pure function of the step.** Epoch `e` visits the blocks in a
  permutation drawn from `seed + e`; the batch at step `s` is slice `s` of that order. So a
  resumed run sees exactly the batches the uninterrupted run would have seen, with no
  data-loader state to save.
* **Everything else lives in the checkpoint**: weights, AdamW moments, the RNG state (for
  dropout) and the metric history. On CPU a run interrupted and resumed logs bit-for-bit
  the losses of an uninterrupted one (tested).
* **A NaN or inf loss stops the run** with a message, without overwriting the last good
  checkpoint.
* **Data parallel under `torchrun`** (see `course.distributed`): each process takes its
  slice of the same global batch and DDP averages gradients, so the loss curve matches a
  single process with that batch; only rank 0 logs and writes checkpoints.
* **On CUDA**: bf16 autocast, `torch.compile`, fused AdamW, and the whole dataset and
  the epoch's batch order on the GPU. A step reads nothing back to the host (token ids
  are checked once, before the first step; the compiled forward is one graph, tested),
  and losses are read back only every `log_interval` steps, so Python runs ahead of the
  GPU instead of waiting on it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from course import distributed
from course.atomic import atomic_write_text
from course.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from course.errors import ConfigError, TrainingDiverged

HISTORY_NAME = "history.json"


@dataclass
class TrainConfig:
    """Optimisation settings. Sizes of the model live in `GPTConfig`, not here."""

    max_steps: int = 300
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 30
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float | None = 1.0
    eval_interval: int = 100
    eval_batches: int = 8
    checkpoint_interval: int | None = None  # None: at every evaluation
    log_interval: int | None = None  # None: 1 on CPU, 10 on CUDA
    device: str = "auto"
    dtype: str = "auto"  # auto | float32 | bfloat16 (autocast)
    compile: bool | None = None  # None: on for CUDA
    # AdamW's fused kernel (one op for all parameters). None: on CUDA only. True: wherever
    # the installed torch has it (CPU since torch 2.4), else the default kernel. Off on CPU
    # by default because it rounds differently, so the shipped results and notebook
    # outputs, recorded with the default kernel, would no longer reproduce bit for bit; the
    # `cpu` preset, measured with it, turns it on.
    fused_adamw: bool | None = None
    doc_mask: bool = False  # attend only within a document (packed-document mask)
    seed: int = 0
    # A wall-time budget instead of a step count: stop after this many seconds of training
    # (evaluations excluded), with the schedule running on the fraction of the budget spent,
    # so warmup and cosine fit the time whatever the machine's speed; max_steps then only
    # sets warmup's share (warmup_steps / max_steps). For comparisons at equal wall time
    # (course.ablation). Such a run depends on the clock, so it cannot be resumed. (On a GPU
    # the clock is read without waiting for queued work, which each log step waits for.)
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "grad_accum", "eval_interval", "eval_batches"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"TrainConfig.lr must be a positive number, got {self.lr}")
        if self.warmup_steps < 0:
            raise ConfigError(f"TrainConfig.warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.max_seconds is not None and not (self.max_seconds > 0 and math.isfinite(self.max_seconds)):
            raise ConfigError(f"TrainConfig.max_seconds must be a positive number of seconds or None, "
                              f"got {self.max_seconds}")
        if self.dtype not in ("auto", "float32", "bfloat16"):
            raise ConfigError(f"TrainConfig.dtype must be auto, float32 or bfloat16, got {self.dtype!r}")
        self.betas = tuple(self.betas)  # JSON round trips give lists


def describe_machine(device: str | torch.device = "cpu") -> str:
    """What a timing was measured on, e.g. "AMD EPYC (AVX512), 2 cores, torch 2.13.0+cpu":
    the CPU's model and the vector instructions torch uses on it, which move a CPU
    benchmark by tens of percent between machines with the same number of cores, and the
    GPU when `device` is one."""
    import os
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    get_capability = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    if get_capability is not None:
        cpu += f" ({get_capability()})"
    gpu = f", {torch.cuda.get_device_name()}" if torch.device(device).type == "cuda" else ""
    return f"{cpu}, {os.cpu_count()} cores{gpu}, torch {torch.__version__}"


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks cuda > mps > cpu; an explicit device must exist."""
    name = (name or "auto").lower()
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps and mps.is_available())
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if has_mps else torch.device("cpu")
    kind = name.split(":")[0]
    if kind not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unknown device {name!r}: use auto, cpu, cuda (or cuda:N) or mps")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was requested but no CUDA GPU is visible; use --device auto or cpu")
    if kind == "mps" and not has_mps:
        raise ConfigError("device 'mps' was requested but Apple's MPS backend is not available; use --device auto or cpu")
    return torch.device(name)


def lr_at(step: int, *, lr: float, warmup_steps: int, max_steps: int, min_lr_ratio: float = 0.1) -> float:
    """Learning rate at `step` (0-based): linear warmup, then cosine decay to `min_lr_ratio·lr`.

    Warmup ramps from lr/warmup_steps at step 0 to lr at step warmup_steps-1, so the
    first update is already non-zero. After `max_steps` the rate stays at the floor.
    """
    min_lr = lr * min_lr_ratio
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices (linear and embedding weights); never biases or LayerNorm gains.

    Decaying a LayerNorm gain pulls it towards 0 and fights the normalisation; biases
    have no scale to control. Tied weights are one Parameter, so they appear once.
    """
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


@functools.cache
def fused_adamw_available(device_type: str) -> bool:
    """Whether this torch has AdamW's fused kernel for `device_type` (CPU: torch >= 2.4)."""
    if device_type == "cuda":
        return True
    try:
        torch.optim.AdamW([torch.zeros(1, device=device_type, requires_grad=True)], fused=True)
    except (RuntimeError, ValueError):
        return False
    return True


def use_fused_adamw(cfg: TrainConfig, device: torch.device) -> bool:
    """The fused kernel on CUDA, or wherever `cfg.fused_adamw` asks for it and this torch has it."""
    wanted = device.type == "cuda" if cfg.fused_adamw is None else cfg.fused_adamw
    return bool(wanted) and fused_adamw_available(device.type)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with decay / no-decay groups (`use_fused_adamw` picks the kernel)."""
    return torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas,
                             fused=use_fused_adamw(cfg, device) or None)


class BatchOrder:
    """Indices of the blocks in the batch at any step: a fresh permutation each epoch.

    The batch at step `s` is a pure function of (`s`, `n_blocks`, `batch_size`, `seed`),
    which is what makes resume exact. The current epoch's permutation is kept on `device`,
    so a step costs one slice: no O(n_blocks) shuffle and no host-to-device copy (a copy
    from host memory would make the CPU wait for the GPU at every step).
    """

    def __init__(self, n_blocks: int, batch_size: int, seed: int, device: torch.device | str = "cpu"):
        self.per_epoch = n_blocks // batch_size
        if self.per_epoch < 1:
            raise ConfigError(
                f"batch_size {batch_size} is larger than the {n_blocks} training blocks; "
                "use a smaller batch size or block size, or a larger corpus"
            )
        self.n_blocks, self.batch_size, self.seed, self.device = n_blocks, batch_size, seed, device
        self._epoch, self._order = -1, torch.empty(0, dtype=torch.long)

    def __call__(self, step: int) -> torch.Tensor:
        epoch, k = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._order = torch.randperm(self.n_blocks, generator=g).to(self.device)
            self._epoch = epoch
        return self._order[k * self.batch_size : (k + 1) * self.batch_size]


def batch_indices(step: int, n_blocks: int, batch_size: int, seed: int) -> torch.Tensor:
    """The batch at `step` (see `BatchOrder`; use that to walk through many steps)."""
    return BatchOrder(n_blocks, batch_size, seed)(step)


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    if cfg.dtype == "float32":
        return None
    if cfg.dtype == "bfloat16":
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


@dataclass
class TrainResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0
    tokens: int = 0
    train_seconds: float = 0.0
    final_train_loss: float = float("nan")
    final_val_loss: float | None = None

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.train_seconds if self.train_seconds > 0 else float("nan")


def _as_tensors(blocks: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Accept a PackedBlocks-like object (input_ids, labels, doc_ids) or a bare tensor."""
    if torch.is_tensor(blocks):
        return blocks, blocks, None
    return blocks.input_ids, blocks.labels, getattr(blocks, "doc_ids", None)


def train(
    model: torch.nn.Module,
    train_blocks: Any,
    val_blocks: Any | None,
    cfg: TrainConfig,
    *,
    out_dir: str | Path | None = None,
    resume: bool = False,
    callback: Callable[[dict[str, Any]], None] | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    extra_state: dict[str, Any] | None = None,
) -> TrainResult:
    """Train `model` on packed blocks; evaluate, log, checkpoint; return the history.

    `train_blocks` / `val_blocks`: PackedBlocks (or anything with `input_ids`, `labels`,
    `doc_ids` tensors of shape (N, T)). `callback(record)` is called at every log and
    evaluation (the live plot uses it). `stop_after` ends the run early at that step with
    a checkpoint, as an interruption would (the schedule still targets `max_steps`).
    `extra_state` is stored in every checkpoint (e.g. configs).
    """
    from tqdm.auto import tqdm

    from course.evaluate import evaluate_nll

    ctx = distributed.context()
    device = distributed.rank_device(resolve_device(cfg.device), ctx)
    x_all, y_all, d_all = _as_tensors(train_blocks)
    n_blocks, T = x_all.shape
    order = BatchOrder(n_blocks, cfg.batch_size, cfg.seed, device)  # validates sizes early
    distributed.local_slice(order(0), ctx)
    block_limit = getattr(getattr(model, "config", None), "block_size", T)
    if T > block_limit:
        raise ConfigError(f"blocks are {T} tokens long but the model's block_size is {block_limit}")
    if callable(getattr(model, "check_inputs", None)):
        model.check_inputs(x_all, y_all)  # once for all data: the compiled step reads nothing back

    model.to(device)
    # The whole (small) dataset lives on the device: no loader, no host-to-device copies.
    x_all, y_all = x_all.to(device), y_all.to(device)
    d_all = d_all.to(device) if (cfg.doc_mask and d_all is not None) else None
    optimizer = make_optimizer(model, cfg, device)
    amp = autocast_dtype(cfg, device)
    use_compile = cfg.compile if cfg.compile is not None else device.type == "cuda"
    wrapped = model
    if ctx.enabled:
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    fwd = torch.compile(wrapped) if use_compile else wrapped
    log_every = cfg.log_interval or (10 if device.type == "cuda" else 1)
    ckpt_every = cfg.checkpoint_interval or cfg.eval_interval
    out = Path(out_dir) if out_dir is not None else None

    result = TrainResult()
    start = 0
    timed = cfg.max_seconds is not None
    if timed and ctx.enabled:
        raise ConfigError("a time budget (max_seconds) would stop each process at a different step; "
                          "train distributed runs for max_steps")
    if resume and timed:
        raise ConfigError("a run with a time budget (max_seconds) depends on the clock and cannot be resumed "
                          "exactly; resume a run with a step count (max_steps) instead")
    if resume:
        if out is None or not (out / CHECKPOINT_NAME).is_file():
            raise ConfigError(
                f"cannot resume: no {CHECKPOINT_NAME} in {out}. Start without --resume, "
                "or point --out at the run directory to continue."
            )
        info = load_checkpoint(out / CHECKPOINT_NAME, model, optimizer)
        start = info["step"]
        saved = info["extra"].get("train", {})
        result.history = saved.get("history", [])
        result.tokens = saved.get("tokens", 0)
        result.train_seconds = saved.get("train_seconds", 0.0)
    else:
        torch.manual_seed(cfg.seed)

    def evaluate_now() -> float | None:
        if val_blocks is None:
            return None
        xv, yv, dv = _as_tensors(val_blocks)
        n = min(len(xv), cfg.eval_batches * cfg.batch_size)
        res = evaluate_nll(
            model, xv[:n], yv[:n], doc_ids=(dv[:n] if (cfg.doc_mask and dv is not None) else None),
            batch_size=cfg.batch_size, device=device, autocast=amp,
        )
        return res.mean_nll

    # Wall time spent training, excluding evaluation and checkpointing.
    seconds_before = result.train_seconds
    t_start = time.perf_counter()
    excluded = 0.0

    def train_seconds() -> float:
        return seconds_before + time.perf_counter() - t_start - excluded

    def checkpoint(step: int) -> None:
        if out is None or not ctx.is_main:
            return
        state = {
            "history": result.history, "tokens": result.tokens,
            "train_seconds": train_seconds(), "train_config": asdict(cfg),
        }
        save_checkpoint(out / CHECKPOINT_NAME, model, optimizer, step=step,
                        extra={"train": state, **(extra_state or {})})
        atomic_write_text(out / HISTORY_NAME, json.dumps(result.history, indent=1))

    end = cfg.max_steps if stop_after is None else min(cfg.max_steps, stop_after)
    if timed:  # as many steps as the budget allows (stop_after still caps them)
        end = stop_after if stop_after is not None else sys.maxsize
    # under a time budget the number of steps is not known in advance: a count and a rate
    bar = tqdm(total=None if timed else cfg.max_steps, initial=start,
               disable=not (progress and ctx.is_main), desc="train", unit="step")
    loss_acc = torch.zeros((), device=device)
    acc_steps = 0
    model.train()
    try:
        for step in range(start, end):
            # with a time budget, the schedule's step is the share of the budget spent
            at = int(cfg.max_steps * min(1.0, train_seconds() / cfg.max_seconds)) if timed else step
            lr = lr_at(at, lr=cfg.lr, warmup_steps=cfg.warmup_steps,
                       max_steps=cfg.max_steps, min_lr_ratio=cfg.min_lr_ratio)
            for group in optimizer.param_groups:
                group["lr"] = lr
            idx = order(step)
            mine = distributed.local_slice(idx, ctx)
            micro = mine.chunk(cfg.grad_accum)
            for i, mi in enumerate(micro):
                kwargs = {"doc_ids": d_all[mi]} if d_all is not None else {}
                # DDP all-reduces gradients on the last micro-batch only
                sync = contextlib.nullcontext() if (not ctx.enabled or i == len(micro) - 1) else wrapped.no_sync()
                with sync:
                    with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                        _, loss = fwd(x_all[mi], y_all[mi], **kwargs)
                    (loss * (len(mi) / len(mine))).backward()
                loss_acc += loss.detach() * (len(mi) / len(mine))
            acc_steps += 1
            grad_norm = None
            if cfg.grad_clip:
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            result.tokens += idx.numel() * T
            done = step + 1
            if timed and train_seconds() >= cfg.max_seconds:
                end = done  # the budget is spent: this is the last step

            is_eval = done % cfg.eval_interval == 0 or done == (end if timed else cfg.max_steps)
            is_ckpt = out is not None and (done % ckpt_every == 0 or done == end)
            # A checkpoint step is always a log step: its loss is checked before it is saved.
            if done % log_every == 0 or is_eval or is_ckpt or done == end:
                mean_loss = distributed.mean_across(loss_acc / acc_steps, ctx).item()
                loss_acc.zero_()
                acc_steps = 0
                if not math.isfinite(mean_loss):
                    where = (f"the last good checkpoint is kept in {out / CHECKPOINT_NAME}"
                             if out is not None and (out / CHECKPOINT_NAME).exists() else "no checkpoint was written")
                    raise TrainingDiverged(
                        f"training loss became {mean_loss} at step {done} (lr {lr:.3g}); {where}. "
                        "Lower the learning rate, keep gradient clipping on, or use float32."
                    )
                record: dict[str, Any] = {"step": done, "train_loss": mean_loss, "lr": lr,
                                          "tokens": result.tokens}
                if grad_norm is not None:
                    record["grad_norm"] = float(grad_norm)
                if is_eval:
                    te = time.perf_counter()
                    val = evaluate_now()
                    model.train()
                    excluded += time.perf_counter() - te
                    if val is not None:
                        record["val_loss"] = val
                result.history.append(record)
                bar.set_postfix(loss=f"{mean_loss:.3f}", **({"val": f"{record['val_loss']:.3f}"} if "val_loss" in record else {}))
                if callback is not None and ctx.is_main:
                    callback(record)
            bar.update(1)
            if is_ckpt:
                tc = time.perf_counter()
                checkpoint(done)
                excluded += time.perf_counter() - tc
            if done == end:
                break
    finally:
        # An interruption keeps the last periodic checkpoint: saving mid-step could
        # record a half-applied update.
        bar.close()
    result.train_seconds = train_seconds()
    result.steps = end
    losses = [r["train_loss"] for r in result.history]
    result.final_train_loss = losses[-1] if losses else float("nan")
    vals = [r["val_loss"] for r in result.history if "val_loss" in r]
    result.final_val_loss = vals[-1] if vals else None
    model.eval()
    return result
