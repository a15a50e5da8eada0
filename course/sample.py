"""Decoding: turn next-token logits into text, one token at a time.

A language model gives a distribution over the next token; decoding picks from it and
feeds the choice back in. The filters below reshape that distribution before sampling,
each acting on logits of shape (..., V) and returning new logits where removed tokens
are -inf (probability exactly 0 after the softmax):

* `temperature_filter`: divide by t; t < 1 sharpens, t > 1 flattens.
* `top_k_filter`: keep the k most likely tokens.
* `top_p_filter` (nucleus): keep the most likely tokens until their mass reaches p.

They give the same distributions as transformers' `TemperatureLogitsWarper`,
`TopKLogitsWarper` and `TopPLogitsWarper` (tested), including how they treat ties and
the top-p boundary, and `generate` applies them in the same order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from course.errors import ConfigError
from course.model import GPT

__all__ = ["temperature_filter", "top_k_filter", "top_p_filter", "generate"]


def _check_logits(logits: torch.Tensor) -> None:
    if not torch.is_tensor(logits) or not logits.dtype.is_floating_point or logits.dim() < 1:
        got = f"dtype {logits.dtype}, shape {tuple(logits.shape)}" if torch.is_tensor(logits) else (
            type(logits).__name__)
        raise ConfigError(f"logits must be a floating-point tensor of shape (..., V), got {got}")


def temperature_filter(logits: torch.Tensor, t: float) -> torch.Tensor:
    """logits / t, shape (..., V) kept. `t` must be > 0 (for t -> 0 use greedy decoding)."""
    _check_logits(logits)
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0:
        raise ConfigError(f"temperature must be a number > 0, got {t!r}; for greedy decoding "
                          "(the limit t -> 0) use generate(..., greedy=True) or temperature=0")
    return logits / t


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the `k` largest logits of the last axis, set the rest to -inf; shape (..., V).

    A token tied with the k-th largest logit is kept too (so ties can leave more than k
    tokens), and `k >= V` keeps everything: the rule of `TopKLogitsWarper`.
    """
    _check_logits(logits)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"top_k must be an integer >= 1, got {k!r}; use None to disable it")
    k = min(k, logits.size(-1))
    kth_largest = torch.topk(logits, k, dim=-1).values[..., -1:]  # (..., 1)
    return logits.masked_fill(logits < kth_largest, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the fewest most likely tokens whose total probability is >= p.

    Computed as `TopPLogitsWarper` does, from the unlikely end: sort ascending, and drop
    every token whose cumulative probability (its own plus all less likely ones) is
    <= 1 - p; the most likely token is always kept. With p = 1 only tokens whose
    probability is exactly 0 (already -inf, or underflowed) are dropped. Shape (..., V).
    """
    _check_logits(logits)
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 < p <= 1.0:
        raise ConfigError(f"top_p must be a probability in (0, 1], got {p!r}; use None (or 1.0) "
                          "to disable it")
    sorted_logits, order = torch.sort(logits, dim=-1, descending=False)  # (..., V) ascending
    cum_probs = sorted_logits.softmax(dim=-1).cumsum(dim=-1)  # (..., V), ends at 1
    remove_sorted = cum_probs <= (1 - p)  # the least likely tokens holding <= 1 - p of the mass
    remove_sorted[..., -1] = False  # always keep the most likely token
    remove = remove_sorted.scatter(-1, order, remove_sorted)  # back to vocabulary order
    return logits.masked_fill(remove, float("-inf"))


def _as_prompt(model: GPT, prompt: torch.Tensor | list[int]) -> torch.Tensor:
    """The prompt as a (B, T) long tensor on the model's device, checked against the vocabulary."""
    V = model.config.vocab_size
    if isinstance(prompt, (list, tuple)):
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in prompt):
            raise ConfigError("prompt must be a list of integer token ids (or a (B, T) tensor); "
                              "encode text with the tokenizer first")
        prompt = torch.tensor(list(prompt), dtype=torch.long)[None]  # (1, T)
    if not torch.is_tensor(prompt):
        raise ConfigError(f"prompt must be a (B, T) tensor or a list of token ids, got "
                          f"{type(prompt).__name__}")
    if prompt.dtype.is_floating_point or prompt.dtype.is_complex or prompt.dtype == torch.bool:
        raise ConfigError(f"prompt must hold integer token ids, got dtype {prompt.dtype}")
    if prompt.dim() == 1:
        prompt = prompt[None]  # one sequence: (1, T)
    if prompt.dim() != 2:
        raise ConfigError(f"prompt must have shape (B, T), got {tuple(prompt.shape)}")
    if prompt.numel() == 0:
        raise ConfigError(f"prompt is empty (shape {tuple(prompt.shape)}); give at least one token, "
                          "e.g. the tokenizer's EOS id to start a fresh document")
    lo, hi = int(prompt.min()), int(prompt.max())
    if lo < 0 or hi >= V:
        raise ConfigError(f"prompt contains token id {lo if lo < 0 else hi}, outside the model's "
                          f"vocabulary [0, {V}); was it encoded with another tokenizer?")
    return prompt.to(device=next(model.parameters()).device, dtype=torch.long)


@torch.inference_mode()
def generate(
    model: GPT,
    prompt: torch.Tensor | list[int],
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    seed: int | None = None,
    eos_id: int | None = None,
    use_cache: bool = True,
) -> torch.Tensor:
    """Continue `prompt` (B, T) (or a list of ids, B = 1) by up to `max_new_tokens` tokens.

    Returns (B, T + n) token ids, n <= max_new_tokens. Each step takes the logits of the
    last position, applies temperature, top-k, top-p (in that order, as transformers
    does) and samples; `greedy=True` or `temperature=0` takes the argmax instead (the
    filters then change nothing). Randomness comes from a local `torch.Generator`
    seeded with `seed` (a fresh random seed when None): the global RNG is never touched,
    and the same seed gives the same tokens.

    With `eos_id`, a row that emits it is finished: it gets `eos_id` from then on, and
    generation stops once every row has finished (for B = 1: right after the EOS).

    With `use_cache` the prompt is run once and every later step only feeds the new
    token (`KVCache`). Past `block_size` tokens the context becomes the last
    `block_size` tokens; with learned absolute positions that shift changes every hidden
    state, so the cache cannot be reused and each step recomputes the full window,
    exactly as without the cache (same tokens either way).

    The model runs in eval mode (no dropout) and is put back in its previous mode.
    """
    idx = _as_prompt(model, prompt)  # (B, T)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ConfigError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature < 0:
        raise ConfigError(f"temperature must be a number >= 0 (0 = greedy), got {temperature!r}")
    greedy = greedy or temperature == 0
    probe = torch.zeros(1)  # validate the filters now, not after the first forward pass
    if top_k is not None:
        top_k_filter(probe, top_k)
    if top_p is not None:
        top_p_filter(probe, top_p)
    V, block_size = model.config.vocab_size, model.config.block_size
    if eos_id is not None and (isinstance(eos_id, bool) or not isinstance(eos_id, int)
                               or not 0 <= eos_id < V):
        raise ConfigError(f"eos_id must be a token id in [0, {V}) or None, got {eos_id!r}")

    B, T = idx.shape
    device = idx.device
    out = torch.empty(B, T + max_new_tokens, dtype=torch.long, device=device)  # (B, T + new)
    out[:, :T] = idx
    n = T  # filled length of `out`
    gen = torch.Generator(device=device)
    if seed is None:
        gen.seed()  # non-deterministic, and still not the global generator
    else:
        gen.manual_seed(seed)
    finished = torch.zeros(B, dtype=torch.bool, device=device)  # (B,)

    was_training = model.training
    model.eval()
    try:
        cache = model.new_kv_cache(B) if use_cache else None
        for _ in range(max_new_tokens):
            cache_fits = cache is not None and n <= block_size
            if cache_fits and cache.length > 0 and cache.length == n - 1:
                logits, _ = model(out[:, n - 1 : n], kv_cache=cache)  # only the newest token
            elif cache_fits:
                cache.reset()
                logits, _ = model(out[:, :n], kv_cache=cache)  # the whole prompt, filling the cache
            else:
                logits, _ = model(out[:, max(0, n - block_size) : n])  # sliding window, no cache
            logits = logits[:, -1, :].float()  # (B, V): the next-token logits

            if greedy:
                next_id = logits.argmax(dim=-1)  # (B,)
            else:
                logits = temperature_filter(logits, temperature)
                if top_k is not None:
                    logits = top_k_filter(logits, top_k)
                if top_p is not None:
                    logits = top_p_filter(logits, top_p)
                probs = F.softmax(logits, dim=-1)  # (B, V)
                next_id = torch.multinomial(probs, 1, generator=gen).squeeze(-1)  # (B,)

            if eos_id is not None:
                next_id = next_id.masked_fill(finished, eos_id)  # finished rows stay at EOS
                finished |= next_id == eos_id
            out[:, n] = next_id
            n += 1
            if eos_id is not None and bool(finished.all()):
                break
    finally:
        model.train(was_training)
    return out[:, :n]
