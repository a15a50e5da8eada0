"""Prefix LM: read a prefix as a whole, then continue it left to right.

The first `prefix_len` tokens (a prompt, a source sentence, a document to summarise)
attend to each other in both directions; every later token attends causally, to the
whole prefix and its own past. Only the continuation is predicted:

    L = -(1/(T-P)) Σ_{t=P}^{T-1} log p(x_t | x_<t),   attention bidirectional over x_<P

Why no loss in the prefix: position `t < P` sees the whole prefix, including token `t+1`,
so "predicting" it would be copying. The first suffix token `x_P` is predicted from
position `P-1`, which sees exactly the prefix, so it is a fair prediction.

With the course's labels (the model shifts: logits at `t` are scored against
`labels[t+1]`), "no loss in the prefix" means `labels[:, :P] = -100`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from course.errors import ConfigError
from course.masks import prefix_lm_mask
from course.objectives._common import IGNORE_INDEX

__all__ = ["PrefixLMBatch", "prefix_lm_batch"]


class PrefixLMBatch(NamedTuple):
    """What `GPT.forward(input_ids, labels, attn_mask=...)` needs besides the ids."""

    attn_mask: torch.Tensor  # (T, T) for one prefix length, (B, T, T) for one per row
    labels: torch.Tensor  # (B, T): the ids, -100 over each row's prefix


def prefix_lm_batch(
    ids: torch.Tensor,
    prefix_len: int | Sequence[int] | torch.Tensor,
    *,
    labels: torch.Tensor | None = None,
) -> PrefixLMBatch:
    """Attention mask and labels for prefix-LM training on `ids` (B, T) (or (T,) for one row).

    `prefix_len` is one int for every row (mask (T, T), `course.masks.prefix_lm_mask`) or
    one per row (mask (B, T, T)). `labels` default to `ids`; positions already at -100
    (padding) stay -100. Use: `model(ids, batch.labels, attn_mask=batch.attn_mask)`.
    """
    if not torch.is_tensor(ids) or ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise ConfigError("ids must be an integer tensor of shape (B, T) or (T,)")
    if ids.dim() not in (1, 2):
        raise ConfigError(f"ids must have shape (B, T) or (T,), got {tuple(ids.shape)}")
    squeeze = ids.dim() == 1
    x = ids[None] if squeeze else ids  # (B, T)
    B, T = x.shape
    base = x if labels is None else (labels[None] if squeeze else labels)
    if base.shape != x.shape:
        raise ConfigError(f"labels must have the shape of ids {tuple(ids.shape)}, got {tuple(labels.shape)}")

    if isinstance(prefix_len, (int,)) and not isinstance(prefix_len, bool):
        mask = prefix_lm_mask(T, prefix_len, device=x.device)  # (T, T); validates prefix_len
        lengths = torch.full((B,), prefix_len, device=x.device)
    else:
        lengths = torch.as_tensor(prefix_len, device=x.device)
        if lengths.shape != (B,) or lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
            raise ConfigError(f"prefix_len must be an int or {B} ints (one per row), got {prefix_len!r}")
        if bool((lengths < 0).any()) or bool((lengths > T).any()):
            raise ConfigError(f"every prefix_len must be between 0 and T={T}, got {lengths.tolist()}")
        mask = torch.stack([prefix_lm_mask(T, int(p), device=x.device) for p in lengths])  # (B, T, T)

    in_prefix = torch.arange(T, device=x.device)[None, :] < lengths[:, None]  # (B, T)
    out_labels = base.masked_fill(in_prefix, IGNORE_INDEX)
    return PrefixLMBatch(mask, out_labels[0] if squeeze else out_labels)
