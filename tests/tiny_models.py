"""Small models with non-trivial weights, shared by the export and architecture tests."""

from __future__ import annotations

import torch

from course.model import GPT, GPTConfig


def trained_like(config: GPTConfig, seed: int = 0) -> GPT:
    """A GPT of `config` in eval mode whose weights look trained rather than freshly
    initialised: biases and norm gains moved away from 0 and 1, the rest scaled up, so
    a missing bias, a misplaced norm or a transposed matrix changes the output."""
    torch.manual_seed(seed)
    model = GPT(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln_" in name or "ln_f" in name:
                p.add_(0.1 * torch.randn_like(p))
            else:
                p.mul_(3.0)
    return model.eval()


def token_ids(vocab_size: int, B: int, T: int, seed: int = 0) -> torch.Tensor:
    """(B, T) int64 token ids drawn uniformly with a seeded generator."""
    return torch.randint(0, vocab_size, (B, T), generator=torch.Generator().manual_seed(seed))
