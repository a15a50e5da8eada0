"""Mean NLL, perplexity and bits per byte.

* `PPL = exp(mean NLL)`, the mean taken over every *predicted* token (labels != -100,
  after the one-position shift). Perplexity depends on the tokenizer: a model with a
  bigger vocabulary predicts fewer, harder tokens.
* **Bits per byte** divides the total NLL (converted to bits) by the number of UTF-8
  bytes those tokens spell, so a char model and a BPE model on the same text become
  comparable: `bpb = sum NLL / (ln 2 · bytes)`.
* **Strided evaluation** scores text longer than the context with overlapping windows,
  each token scored once with up to `block_size - stride` tokens of left context.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class EvalResult:
    nll_sum: float  # nats, summed over predicted tokens
    n_tokens: int
    n_bytes: int | None = None  # UTF-8 bytes spelled by the predicted tokens, if known

    @property
    def mean_nll(self) -> float:
        return self.nll_sum / self.n_tokens if self.n_tokens else float("nan")

    @property
    def perplexity(self) -> float:
        return perplexity(self.mean_nll)

    @property
    def bits_per_byte(self) -> float | None:
        return None if not self.n_bytes else bits_per_byte(self.nll_sum, self.n_bytes)

    def to_dict(self) -> dict[str, float | int | None]:
        return {"nll": self.mean_nll, "perplexity": self.perplexity,
                "bits_per_byte": self.bits_per_byte, "tokens": self.n_tokens, "bytes": self.n_bytes}


def perplexity(mean_nll: float) -> float:
    """`exp(mean NLL)`; overflows to inf for a hopeless model rather than erroring."""
    try:
        return math.exp(mean_nll)
    except OverflowError:
        return float("inf")


def bits_per_byte(nll_sum_nats: float, n_bytes: int) -> float:
    """Total NLL in nats → bits, per UTF-8 byte of the text that was predicted."""
    return nll_sum_nats / (math.log(2) * n_bytes)


def token_byte_lengths(tokenizer, vocab_size: int | None = None) -> torch.Tensor:
    """UTF-8 byte count of every token id (special tokens count 0 bytes).

    Uses `tokenizer.token_bytes(id)` where available (byte-level tokenizers: a token can
    be a fragment of a multi-byte character, which `decode` could not count correctly).
    """
    n = vocab_size or tokenizer.vocab_size
    specials = set(getattr(tokenizer, "special_tokens", {}).values())
    out = torch.zeros(n, dtype=torch.long)
    getter = getattr(tokenizer, "token_bytes", None)
    for i in range(min(n, tokenizer.vocab_size)):
        if i in specials:
            continue
        out[i] = len(getter(i)) if getter is not None else len(tokenizer.decode([i]).encode("utf-8"))
    return out


@torch.no_grad()
def evaluate_nll(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    doc_ids: torch.Tensor | None = None,
    batch_size: int = 32,
    device: torch.device | str | None = None,
    autocast: torch.dtype | None = None,
    byte_lengths: torch.Tensor | None = None,
) -> EvalResult:
    """Sum the NLL of every predicted token of (N, T) blocks, in eval mode.

    `labels` default to `input_ids` (plain causal LM). With `byte_lengths` (from
    `token_byte_lengths`) the result also carries the byte count for bits per byte.
    """
    labels = input_ids if labels is None else labels
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    nll_sum = torch.zeros((), dtype=torch.float64, device=device)
    n_tok = 0
    n_bytes = 0
    try:
        for i in range(0, len(input_ids), batch_size):
            x = input_ids[i : i + batch_size].to(device)
            y = labels[i : i + batch_size].to(device)
            kwargs = {} if doc_ids is None else {"doc_ids": doc_ids[i : i + batch_size].to(device)}
            with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
                logits, _ = model(x, **kwargs)
            target = y[:, 1:]
            nll = F.cross_entropy(
                logits[:, :-1].float().reshape(-1, logits.size(-1)), target.reshape(-1),
                ignore_index=-100, reduction="sum",
            )
            nll_sum += nll.double()
            keep = target != -100
            n_tok += int(keep.sum())
            if byte_lengths is not None:
                n_bytes += int(byte_lengths.to(device)[target[keep]].sum())
    finally:
        model.train(was_training)
    return EvalResult(float(nll_sum), n_tok, n_bytes if byte_lengths is not None else None)


@torch.no_grad()
def strided_nll(
    model: torch.nn.Module,
    ids: torch.Tensor | list[int],
    *,
    block_size: int | None = None,
    stride: int | None = None,
    device: torch.device | str | None = None,
    byte_lengths: torch.Tensor | None = None,
) -> EvalResult:
    """NLL of a long 1-D token sequence with a sliding window.

    Windows of up to `block_size` tokens start every `stride` tokens; in each window only
    the tokens not scored by an earlier window count, so every token after the first is
    scored exactly once, with at least `block_size - stride` tokens of context, and at least
    1 (except at the start). `stride == block_size` is chunking (cheap, pessimistic): each
    window starts on the last token of the previous one, so that the first token of every
    chunk is still scored; `stride == 1` gives every token a full context (slow, best).
    """
    ids = torch.as_tensor(ids, dtype=torch.long).flatten()
    block_size = block_size or model.config.block_size
    stride = max(1, block_size // 2) if stride is None else stride
    if not 1 <= stride <= block_size:
        from course.errors import ConfigError

        raise ConfigError(f"stride must be between 1 and block_size={block_size}, got {stride}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    nll_sum, n_tok, n_bytes = 0.0, 0, 0
    scored_until = 1  # position 0 has no context and is never predicted
    try:
        n = len(ids)
        begin = 0
        while scored_until < n:
            end = min(begin + block_size, n)
            window = ids[begin:end].to(device)[None]
            logits, _ = model(window)
            # logits at window position j predict ids[begin + j + 1]
            first = scored_until - begin - 1  # first logit row whose target is new
            pred = logits[0, first : end - begin - 1].float()
            target = window[0, first + 1 : end - begin]
            nll_sum += float(F.cross_entropy(pred, target, reduction="sum"))
            n_tok += target.numel()
            if byte_lengths is not None:
                n_bytes += int(byte_lengths.to(device)[target].sum())
            scored_until = end
            if end == n:
                break
            # The next window must start at or before the first unscored target's
            # predecessor; with stride == block_size that is one token back.
            begin = begin + stride if stride < block_size else end - 1
    finally:
        model.train(was_training)
    return EvalResult(nll_sum, n_tok, n_bytes if byte_lengths is not None else None)
