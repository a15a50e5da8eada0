"""Contrastive pretraining in brief: in-batch InfoNCE over pooled hidden states.

Give the model pairs of "views" that belong together (two halves of one document, a
question and its answer, a caption and its image) and push each pair's embeddings
together and apart from the other pairs of the batch. With embeddings `a_i`, `b_i`
(normalised to unit length) and a temperature `τ`:

    S_ij = a_i · b_j / τ          L = -(1/B) Σ_i log softmax_j(S_ij)[j = i]

i.e. a cross-entropy over the similarity matrix whose correct "class" for row `i` is
column `i`; the other B - 1 pairs of the batch are the negatives, for free. The symmetric
form (CLIP) averages that with the same loss on the columns (`b` → `a`). Embeddings for a
decoder like ours are the mean of the final hidden states over the real tokens.

This objective trains *embeddings* (retrieval, deduplication, similarity), not a
generator; it is shown here because it is the other big family of pretraining losses.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from course.errors import ConfigError

__all__ = ["hidden_states", "info_nce", "mean_pool"]


def hidden_states(model: nn.Module, idx: torch.Tensor, *,
                  attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The final hidden states (B, T, C) of a `GPT`: the output of `ln_f`, before `lm_head`.

    Read with a forward hook, so the model's code is not duplicated. Gradients flow
    (use `torch.no_grad()` around the call for inference).
    """
    captured: list[torch.Tensor] = []
    handle = model.transformer.ln_f.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        model(idx, attn_mask=attn_mask)
    finally:
        handle.remove()
    return captured[-1]  # (B, T, C)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over time of `hidden` (B, T, C) → (B, C), over positions where `mask` (B, T) is True."""
    if not torch.is_tensor(hidden) or hidden.dim() != 3:
        raise ConfigError("hidden must be a tensor of shape (B, T, C)")
    if mask is None:
        return hidden.mean(dim=1)
    if mask.shape != hidden.shape[:2]:
        raise ConfigError(f"mask must have shape {tuple(hidden.shape[:2])}, got {tuple(mask.shape)}")
    w = mask.to(hidden.dtype)[..., None]  # (B, T, 1)
    count = w.sum(dim=1).clamp_min(1.0)  # (B, 1): an all-False row pools to zeros, not NaN
    return (hidden * w).sum(dim=1) / count  # (B, C)


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.07, *,
             symmetric: bool = False) -> torch.Tensor:
    """In-batch InfoNCE between paired embeddings `a` (B, C) and `b` (B, C): a scalar.

    Row `i` of `a` must pick `b[i]` among all rows of `b` (cosine similarities divided by
    `temperature`, cross-entropy with the diagonal as targets). `symmetric=True` averages
    the `a → b` and `b → a` losses, so `info_nce(a, b) == info_nce(b, a)`.
    """
    if not (torch.is_tensor(a) and torch.is_tensor(b)) or a.dim() != 2 or a.shape != b.shape:
        raise ConfigError(f"a and b must be tensors of the same shape (B, C), got "
                          f"{getattr(a, 'shape', type(a).__name__)} and {getattr(b, 'shape', type(b).__name__)}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature <= 0:
        raise ConfigError(f"temperature must be a positive number, got {temperature!r}")
    a = F.normalize(a.float(), dim=-1)
    b = F.normalize(b.float(), dim=-1)
    sim = a @ b.T / temperature  # (B, B): sim[i, j] = cos(a_i, b_j) / τ
    target = torch.arange(a.size(0), device=a.device)  # row i's positive is column i
    loss = F.cross_entropy(sim, target)
    if symmetric:
        loss = 0.5 * (loss + F.cross_entropy(sim.T, target))
    return loss
