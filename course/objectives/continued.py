"""Continued pretraining: go on training a model on a new corpus, and watch both domains.

A model pretrained on corpus A is trained further on corpus B (a new language, code,
a specialised domain). Its perplexity on B falls (adaptation) while its perplexity on A
rises (forgetting): nothing in the loss asks it to keep A. The common remedy is *replay*:
mix a fraction of A's blocks into every batch.

`continued_pretraining` runs exactly that with `course.train.train` and records the
perplexity on A's and B's validation blocks every `eval_every` steps.

How the mixing stays deterministic: `train` visits its blocks in an order that is a pure
function of the step (`course.train.BatchOrder`: one seeded permutation per epoch).
`mixed_blocks` builds a training set of exactly `steps · batch_size` blocks, one epoch,
and lays them out along that permutation so that the batch `train` draws at step `s` is
the batch we chose for step `s`: `round(replay_fraction · batch_size)` blocks of A and the
rest from B, each corpus visited in its own seeded random order (re-shuffled when used up).
The price is memory: all `steps · batch_size` blocks are materialised (fine for the
course's sizes; a streaming loader would avoid it).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn as nn

from course.errors import ConfigError
from course.evaluate import evaluate_nll
from course.train import BatchOrder, TrainConfig, TrainResult, train

__all__ = ["ContinuedResult", "continued_pretraining", "mixed_blocks"]


@dataclass
class MixedBlocks:
    """Training blocks laid out for `train` (input_ids / labels / doc_ids, like PackedBlocks).

    `from_a[r]` says whether row `r` came from corpus A; `source_index[r]` which block of
    its corpus it is.
    """

    input_ids: torch.Tensor  # (steps * batch_size, T)
    labels: torch.Tensor  # (steps * batch_size, T)
    doc_ids: torch.Tensor | None
    from_a: torch.Tensor  # (steps * batch_size,) bool
    source_index: torch.Tensor  # (steps * batch_size,) long
    a_per_batch: int = 0  # blocks of A in every batch


@dataclass
class ContinuedResult:
    """History of a continued-pretraining run.

    `history`: one dict per evaluation, `{"step", "nll_a", "nll_b", "ppl_a", "ppl_b"}`
    plus `"train_loss"` (mean over the steps since the previous evaluation; absent at
    step 0). `a_per_batch`: blocks of A in every batch. `train`: `train`'s own result.
    """

    history: list[dict[str, Any]] = field(default_factory=list)
    a_per_batch: int = 0
    batch_size: int = 0
    train: TrainResult | None = None

    @property
    def replay_fraction(self) -> float:
        """The fraction of A blocks in every batch, as actually used (after rounding)."""
        return self.a_per_batch / self.batch_size if self.batch_size else 0.0


def _tensors(blocks: Any, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    if torch.is_tensor(blocks):
        x, y, d = blocks, blocks, None
    elif hasattr(blocks, "input_ids"):
        x, y, d = blocks.input_ids, getattr(blocks, "labels", blocks.input_ids), getattr(blocks, "doc_ids", None)
    else:
        raise ConfigError(f"{name} must be PackedBlocks or a (N, T) tensor of ids, got {type(blocks).__name__}")
    if x.dim() != 2 or len(x) == 0:
        raise ConfigError(f"{name} must hold at least one block, as an (N, T) tensor; got shape {tuple(x.shape)}")
    return x, y, d


def _visit_order(n: int, count: int, seed: int, stream: int) -> torch.Tensor:
    """`count` indices into `n` blocks: seeded permutations, one after the other."""
    out = []
    epoch = 0
    while sum(len(p) for p in out) < count:
        g = torch.Generator().manual_seed(seed * 1_000_003 + stream * 10_007 + epoch)
        out.append(torch.randperm(n, generator=g))
        epoch += 1
    return torch.cat(out)[:count] if out else torch.zeros(0, dtype=torch.long)


def mixed_blocks(blocks_a: Any, blocks_b: Any, *, steps: int, batch_size: int,
                 replay_fraction: float = 0.0, seed: int = 0, order_seed: int = 0) -> MixedBlocks:
    """Lay out `steps` batches of `batch_size` blocks (A and B mixed) in `train`'s visiting order.

    Batch `s` holds `round(replay_fraction · batch_size)` blocks of A and the rest of B;
    `seed` picks which blocks, `order_seed` must be the `TrainConfig.seed` of the run.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"steps must be a positive int, got {steps!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}")
    if isinstance(replay_fraction, bool) or not isinstance(replay_fraction, (int, float)) or not (
        0.0 <= replay_fraction <= 1.0
    ):
        raise ConfigError(f"replay_fraction must be a number in [0, 1], got {replay_fraction!r}")
    xa, ya, da = _tensors(blocks_a, "blocks_a")
    xb, yb, db = _tensors(blocks_b, "blocks_b")
    if xa.size(1) != xb.size(1):
        raise ConfigError(f"blocks_a and blocks_b must have the same block length, got "
                          f"{xa.size(1)} and {xb.size(1)}; pack both with the same block_size")
    n_a = int(round(replay_fraction * batch_size))
    n_b = batch_size - n_a
    pick_a = _visit_order(len(xa), steps * n_a, seed, stream=1).view(steps, n_a)
    pick_b = _visit_order(len(xb), steps * n_b, seed, stream=2).view(steps, n_b)

    total = steps * batch_size
    order = BatchOrder(total, batch_size, order_seed)
    rows = torch.stack([order(s) for s in range(steps)])  # (steps, batch_size)
    rows_a, rows_b = rows[:, :n_a].reshape(-1), rows[:, n_a:].reshape(-1)

    T = xa.size(1)
    x = torch.empty(total, T, dtype=xa.dtype)
    y = torch.empty(total, T, dtype=ya.dtype)
    x[rows_a], y[rows_a] = xa[pick_a.reshape(-1)], ya[pick_a.reshape(-1)]
    x[rows_b], y[rows_b] = xb[pick_b.reshape(-1)], yb[pick_b.reshape(-1)]
    d = None
    if da is not None and db is not None:
        d = torch.empty(total, T, dtype=da.dtype)
        d[rows_a], d[rows_b] = da[pick_a.reshape(-1)], db[pick_b.reshape(-1)]
    from_a = torch.zeros(total, dtype=torch.bool)
    from_a[rows_a] = True
    source = torch.empty(total, dtype=torch.long)
    source[rows_a], source[rows_b] = pick_a.reshape(-1), pick_b.reshape(-1)
    return MixedBlocks(x, y, d, from_a, source, n_a)


def continued_pretraining(
    model: nn.Module,
    blocks_a: Any,
    blocks_b: Any,
    *,
    steps: int,
    val_a: Any,
    val_b: Any,
    replay_fraction: float = 0.0,
    eval_every: int = 50,
    cfg: TrainConfig | None = None,
    seed: int = 0,
    progress: bool = False,
) -> ContinuedResult:
    """Train `model` (already trained on A) for `steps` more steps on B, replaying A.

    `blocks_a` / `blocks_b`: training blocks of each corpus (PackedBlocks or (N, T) ids);
    `val_a` / `val_b`: their validation blocks, scored with `evaluate_nll` before training
    and every `eval_every` steps (and at the end). `cfg` gives the optimiser settings
    (batch size, learning rate, warmup, ...; its `max_steps`, `eval_interval` and
    `log_interval` are replaced); `seed` picks which blocks fill each batch. The model is
    trained in place. Returns the perplexity history on both domains.
    """
    if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every < 1:
        raise ConfigError(f"eval_every must be a positive int, got {eval_every!r}")
    cfg = replace(cfg or TrainConfig(), max_steps=steps, eval_interval=eval_every, log_interval=eval_every)
    data = mixed_blocks(blocks_a, blocks_b, steps=steps, batch_size=cfg.batch_size,
                        replay_fraction=replay_fraction, seed=seed, order_seed=cfg.seed)
    xa, ya, _ = _tensors(val_a, "val_a")
    xb, yb, _ = _tensors(val_b, "val_b")
    result = ContinuedResult(a_per_batch=data.a_per_batch, batch_size=cfg.batch_size)

    def measure(step: int, train_loss: float | None) -> None:
        ea = evaluate_nll(model, xa, ya, batch_size=cfg.batch_size)
        eb = evaluate_nll(model, xb, yb, batch_size=cfg.batch_size)
        record: dict[str, Any] = {"step": step, "nll_a": ea.mean_nll, "nll_b": eb.mean_nll,
                                  "ppl_a": ea.perplexity, "ppl_b": eb.perplexity}
        if train_loss is not None:
            record["train_loss"] = train_loss
        result.history.append(record)

    measure(0, None)

    def on_log(record: dict[str, Any]) -> None:
        measure(record["step"], record["train_loss"])

    result.train = train(model, data, None, cfg, callback=on_log, progress=progress)
    return result
