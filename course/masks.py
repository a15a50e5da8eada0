"""Who may attend to whom: attention masks as boolean matrices.

Row `i` of a mask says which keys query `i` may look at; `True` means "may attend",
the convention of the boolean `attn_mask` of `F.scaled_dot_product_attention`. A
causal language model uses the lower-triangular mask, so position `t` only sees
positions `<= t` and the model can be trained on every position of a block at once
without seeing the token it has to predict.

Every mask here leaves at least one `True` in each row (a query always sees itself):
a row with no visible key would make the softmax divide zero by zero and produce NaN.

    causal_mask(4)              bidirectional_mask(4)      prefix_lm_mask(4, 2)
    1 . . .                     1 1 1 1                    1 1 . .
    1 1 . .                     1 1 1 1                    1 1 . .
    1 1 1 .                     1 1 1 1                    1 1 1 .
    1 1 1 1                     1 1 1 1                    1 1 1 1
"""

from __future__ import annotations

import torch

from course.errors import ConfigError

__all__ = [
    "causal_mask",
    "bidirectional_mask",
    "prefix_lm_mask",
    "document_mask",
    "sliding_window_mask",
    "to_additive",
]

Device = torch.device | str | None


def _check_size(name: str, value: object, *, minimum: int = 0) -> int:
    """`value` as an int >= `minimum`, or a ConfigError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, got {value!r} ({type(value).__name__}); "
                          f"pass a whole number >= {minimum}")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}; pass a size of at least {minimum}")
    return value


def causal_mask(T: int, device: Device = None) -> torch.Tensor:
    """(T, T) lower-triangular mask: query `i` sees keys `0..i`.

    This is what makes a GPT a language model: the prediction at `t` never depends on
    tokens after `t`. Row `i` has exactly `i + 1` visible keys.
    """
    T = _check_size("T", T)
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()  # (T, T)


def bidirectional_mask(T: int, device: Device = None) -> torch.Tensor:
    """(T, T) all-True mask: every query sees every key (BERT-style encoders)."""
    T = _check_size("T", T)
    return torch.ones(T, T, dtype=torch.bool, device=device)  # (T, T)


def prefix_lm_mask(T: int, prefix_len: int, device: Device = None) -> torch.Tensor:
    """(T, T) prefix-LM mask: bidirectional inside the first `prefix_len` positions, causal after.

    The prefix (a prompt, a source sentence) is read as a whole; the continuation is
    generated left to right and sees the whole prefix plus its own past. `prefix_len = 0`
    or `1` gives the causal mask, `prefix_len = T` the bidirectional one.
    """
    T = _check_size("T", T)
    prefix_len = _check_size("prefix_len", prefix_len)
    if prefix_len > T:
        raise ConfigError(f"prefix_len ({prefix_len}) is longer than the sequence (T={T}); "
                          f"pass a prefix_len between 0 and {T}")
    mask = causal_mask(T, device=device)  # (T, T)
    # Every query may see the whole prefix. For a query after the prefix this changes
    # nothing (the prefix is already in its past); inside the prefix it opens the
    # upper triangle, i.e. makes the prefix bidirectional.
    mask[:, :prefix_len] = True
    return mask


def document_mask(doc_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) document ids -> (B, T, T) mask: causal AND same document.

    Packing puts several documents in one block; without this mask the first tokens of
    a document would attend to the end of the previous, unrelated one. The result is
    block-diagonal with a causal triangle in each block. Padding positions (id `-1`)
    attend only to themselves, so no row is all False (no NaN from the softmax); their
    outputs are meaningless and their labels are `-100` anyway.
    """
    if not torch.is_tensor(doc_ids):
        raise ConfigError(f"doc_ids must be a tensor of shape (B, T), got {type(doc_ids).__name__}; "
                          "use the doc_ids of a PackedBlocks")
    if doc_ids.dim() != 2:
        raise ConfigError(f"doc_ids must have shape (B, T), got shape {tuple(doc_ids.shape)}; "
                          "add a batch dimension with doc_ids[None] for a single row")
    if doc_ids.dtype.is_floating_point or doc_ids.dtype.is_complex or doc_ids.dtype == torch.bool:
        raise ConfigError(f"doc_ids must hold integers (one document index per position), got dtype "
                          f"{doc_ids.dtype}; convert with doc_ids.long()")
    T = doc_ids.size(1)
    same_doc = doc_ids[:, :, None] == doc_ids[:, None, :]  # (B, T, T)
    not_pad = (doc_ids != -1)[:, :, None]  # (B, T, 1): queries that are real tokens
    eye = torch.eye(T, dtype=torch.bool, device=doc_ids.device)  # (T, T)
    return (same_doc & not_pad & causal_mask(T, device=doc_ids.device)) | eye  # (B, T, T)


def sliding_window_mask(T: int, window: int, device: Device = None) -> torch.Tensor:
    """(T, T) causal mask limited to the `window` most recent keys, the query itself included.

    Query `i` sees keys `max(0, i - window + 1) .. i` (Longformer / Mistral-style local
    attention). `window >= T` gives the plain causal mask; `window = 1` only the diagonal.
    """
    T = _check_size("T", T)
    window = _check_size("window", window, minimum=1)
    ones = torch.ones(T, T, dtype=torch.bool, device=device)
    # tril keeps keys j <= i; triu(-(window-1)) keeps keys j >= i - window + 1.
    return ones.tril() & ones.triu(-(window - 1))  # (T, T)


def to_additive(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Boolean mask -> additive mask: 0 where attention is allowed, -inf where it is not.

    Adding it to the scores before the softmax gives exactly the same attention as
    `masked_fill(~mask, -inf)`: exp(-inf) = 0. Some kernels and older code take masks
    in this form (a float `attn_mask` of `scaled_dot_product_attention` is additive).
    """
    if not torch.is_tensor(mask) or mask.dtype != torch.bool:
        got = mask.dtype if torch.is_tensor(mask) else type(mask).__name__
        raise ConfigError(f"to_additive expects a boolean mask (True = may attend), got {got}; "
                          "build one with the functions of course.masks or compare with `!= 0`")
    if not dtype.is_floating_point:
        raise ConfigError(f"to_additive needs a floating dtype to hold -inf, got {dtype}; "
                          "pass e.g. torch.float32")
    out = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    return out.masked_fill(~mask, float("-inf"))
