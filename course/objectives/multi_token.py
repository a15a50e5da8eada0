"""Multi-token prediction (Gloeckle et al., 2024): predict the next N tokens at once.

A shared trunk computes one hidden state per position; N heads read it, head `k`
(k = 1..N) predicting the token `k` steps ahead. The loss is the mean over heads of each
head's cross-entropy:

    L = (1/N) Σ_{k=1..N}  -(1/|S_k|) Σ_{t ∈ S_k} log p_k(x_{t+k} | x_≤t)

where `S_k` are the positions whose token `k` steps ahead exists and has a label.
The paper's layout, used here: the trunk is the GPT's first `n_layer - 1` blocks; head 1
is the GPT's own last block, heads 2..N are extra blocks of the same shape (initialised
as copies of the last one); every head ends with the GPT's shared `ln_f` and `lm_head`.
Head 1 is therefore exactly the wrapped GPT: with N = 1 this is ordinary causal LM, and
after training `model.gpt` is a normal GPT for `generate` (the extra heads are dropped,
or kept for speculative decoding). The extra heads only add a training signal: every
position must also encode what comes after the next token.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from course.errors import ConfigError
from course.model import GPT
from course.objectives._common import IGNORE_INDEX

__all__ = ["MultiTokenGPT"]


class MultiTokenGPT(nn.Module):
    """A `GPT` with `n_future` output heads; head `k` predicts token `t + k`.

    `forward(idx, labels)` returns `(logits of head 1, mean loss over heads)`, so the model
    drops into `course.train.train` and `course.evaluate.evaluate_nll` (which then
    measures head 1, the next-token head). `head_logits` and `head_losses` give every head.
    """

    def __init__(self, gpt: GPT, n_future: int = 2) -> None:
        super().__init__()
        if not isinstance(gpt, GPT):
            raise ConfigError(f"MultiTokenGPT wraps a course.model.GPT, got {type(gpt).__name__}")
        if isinstance(n_future, bool) or not isinstance(n_future, int) or n_future < 1:
            raise ConfigError(f"n_future must be an int >= 1 (1 = ordinary causal LM), got {n_future!r}")
        self.gpt = gpt
        self.config = gpt.config
        self.n_future = n_future
        last = gpt.transformer.h[-1]
        self.extra_heads = nn.ModuleList(copy.deepcopy(last) for _ in range(n_future - 1))

    @property
    def heads(self) -> list[nn.Module]:
        """The N head blocks: the GPT's last block, then the extra ones."""
        return [self.gpt.transformer.h[-1], *self.extra_heads]

    def _trunk(self, idx: torch.Tensor, attn_mask: torch.Tensor | None,
               doc_ids: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        gpt = self.gpt
        gpt._check_idx(idx, 0)
        mask = gpt._build_mask(idx, 0, attn_mask, doc_ids)
        x = gpt._embed(idx, 0)  # (B, T, C)
        for block in gpt.transformer.h[:-1]:
            x, _ = block(x, mask)  # (B, T, C)
        return x, mask

    def _head(self, k: int, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        h, _ = self.heads[k - 1](x, mask)  # (B, T, C)
        return self.gpt.lm_head(self.gpt.transformer.ln_f(h))  # (B, T, V)

    def head_logits(self, idx: torch.Tensor, *, attn_mask: torch.Tensor | None = None,
                    doc_ids: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Logits (B, T, V) of every head; entry k-1 at position t scores token t + k."""
        x, mask = self._trunk(idx, attn_mask, doc_ids)
        return [self._head(k, x, mask) for k in range(1, self.n_future + 1)]

    @staticmethod
    def _shifted_loss(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor | None:
        """Cross-entropy of logits[:, t] against labels[:, t + k]; None if no position has one."""
        target = labels[:, k:]  # (B, T - k)
        if target.numel() == 0 or not bool((target != IGNORE_INDEX).any()):
            return None
        V = logits.size(-1)
        return F.cross_entropy(logits[:, :-k].reshape(-1, V).float(), target.reshape(-1),
                               ignore_index=IGNORE_INDEX)

    def head_losses(self, idx: torch.Tensor, labels: torch.Tensor, *,
                    attn_mask: torch.Tensor | None = None,
                    doc_ids: torch.Tensor | None = None) -> list[torch.Tensor | None]:
        """Loss of each head (None for a head with nothing to predict, e.g. T <= k)."""
        self.gpt._check_labels(labels, idx)
        x, mask = self._trunk(idx, attn_mask, doc_ids)
        return [self._shifted_loss(self._head(k, x, mask), labels, k)
                for k in range(1, self.n_future + 1)]

    def forward(
        self,
        idx: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        attn_mask: torch.Tensor | None = None,
        doc_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if labels is None:
            x, mask = self._trunk(idx, attn_mask, doc_ids)
            return self._head(1, x, mask), None
        self.gpt._check_labels(labels, idx)
        x, mask = self._trunk(idx, attn_mask, doc_ids)
        first = None
        losses = []
        for k in range(1, self.n_future + 1):
            logits = self._head(k, x, mask)
            if k == 1:
                first = logits
            loss = self._shifted_loss(logits, labels, k)
            if loss is not None:
                losses.append(loss)
        if not losses:
            raise ConfigError("no head has a target: the block is too short or every label is -100")
        return first, torch.stack(losses).mean()
