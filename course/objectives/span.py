"""Span corruption (T5): drop contiguous spans, ask the model to write them back.

Choose spans of the input that cover about 15 % of the tokens (mean span length 3).
Replace each span by one *sentinel* token, a different sentinel per span, in order.
The target lists every sentinel followed by the span it replaced, and ends with the next
unused sentinel (T5's convention: the final sentinel says "no more spans"):

    original   Thank you for inviting me to your party last week .
    noise      .     .   ███ ████████ .  .  .    .     ████ .    .
    inputs     Thank you <X> me to your party <Y> week .
    targets    <X> for inviting <Y> last <Z>

The targets are much shorter than the document (about 15 % plus one sentinel per span),
which made the objective cheap for T5's encoder-decoder: the encoder reads the inputs
bidirectionally, the decoder writes the targets causally. In a decoder-only model the
same thing is a prefix LM over `inputs + targets` with the loss on the targets.

No end-of-text token is appended (packing adds one after every document); sentinels must
not occur in the document itself, or the reconstruction would be ambiguous.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from course.errors import ConfigError
from course.objectives._common import RngLike, as_id_list, as_rng, distinct_ids

__all__ = ["random_spans_mask", "sentinel_tokens", "span_corrupt", "span_reconstruct"]


def sentinel_tokens(n: int) -> tuple[str, ...]:
    """The names of `n` sentinel tokens, T5's spelling: `<extra_id_0>`, `<extra_id_1>`, ...

    Pass them to a tokenizer as special tokens; their ids (in order) are the
    `sentinel_ids` of `span_corrupt`.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"the number of sentinels must be a positive int, got {n!r}")
    return tuple(f"<extra_id_{k}>" for k in range(n))


def _segments(total: int, parts: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random way to write `total` as `parts` positive integers (in order)."""
    cuts = np.sort(rng.choice(np.arange(1, total), size=parts - 1, replace=False))
    return np.diff(np.concatenate([[0], cuts, [total]]))


def random_spans_mask(
    length: int,
    *,
    noise_density: float = 0.15,
    mean_span_length: float = 3.0,
    rng: RngLike,
) -> np.ndarray:
    """Boolean noise mask of `length` positions, True = inside a span to drop (T5's recipe).

    `round(length · noise_density)` positions are noise (at least 1 and at most
    `length - 1`), split into `round(noise / mean_span_length)` spans (at least 1). Span
    lengths and the gaps between spans are random compositions of those totals, and the
    sequence always starts with a non-noise gap, so spans never touch. Sequences shorter
    than 2 tokens get no noise.
    """
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 0:
        raise ConfigError(f"length must be an int >= 0, got {length!r}")
    if not (isinstance(noise_density, (int, float)) and 0.0 < noise_density < 1.0):
        raise ConfigError(f"noise_density must be in (0, 1), got {noise_density!r}")
    if not (isinstance(mean_span_length, (int, float)) and mean_span_length >= 1.0):
        raise ConfigError(f"mean_span_length must be >= 1, got {mean_span_length!r}")
    g = as_rng(rng)
    length = int(length)
    if length < 2:
        return np.zeros(length, dtype=bool)
    n_noise = min(max(int(round(length * noise_density)), 1), length - 1)
    n_spans = max(1, int(round(n_noise / mean_span_length)))
    n_spans = min(n_spans, n_noise, length - n_noise)  # every span and every gap is non-empty
    noise_lengths = _segments(n_noise, n_spans, g)
    gap_lengths = _segments(length - n_noise, n_spans, g)
    mask = np.zeros(length, dtype=bool)
    pos = 0
    for gap, span in zip(gap_lengths, noise_lengths, strict=True):
        pos += int(gap)
        mask[pos : pos + int(span)] = True
        pos += int(span)
    return mask


def _check_sentinels(ids: list[int], sentinel_ids: Sequence[int]) -> list[int]:
    sentinels = distinct_ids(sentinel_ids, "sentinel_ids")
    if not sentinels:
        raise ConfigError("sentinel_ids is empty: span corruption needs at least one sentinel token")
    clash = set(ids) & set(sentinels)
    if clash:
        raise ConfigError(f"the sequence already contains sentinel id(s) {sorted(clash)}; sentinels "
                          "must be special tokens that never occur in a document")
    return sentinels


def span_corrupt(
    ids: Any,
    sentinel_ids: Sequence[int],
    *,
    noise_mask: Any = None,
    noise_density: float = 0.15,
    mean_span_length: float = 3.0,
    rng: RngLike | None = None,
) -> tuple[list[int], list[int]]:
    """`ids` → `(inputs, targets)`: each noise span becomes one sentinel, in order.

    A span is a maximal run of True in `noise_mask` (a boolean sequence as long as `ids`);
    without `noise_mask` one is drawn with `random_spans_mask(..., rng=rng)`. Span `k`
    (counting from 0) is replaced by `sentinel_ids[k]` in the inputs; the targets are
    `sentinel_ids[k]` followed by span `k`, for every span, then `sentinel_ids[n_spans]`.
    So `len(sentinel_ids)` must be at least the number of spans plus one.
    """
    seq = as_id_list(ids)
    sentinels = _check_sentinels(seq, sentinel_ids)
    if noise_mask is None:
        if rng is None:
            raise ConfigError("pass either noise_mask or rng (to draw a mask with random_spans_mask)")
        mask = random_spans_mask(len(seq), noise_density=noise_density,
                                 mean_span_length=mean_span_length, rng=rng)
    else:
        mask = np.asarray(noise_mask.tolist() if hasattr(noise_mask, "tolist") else list(noise_mask))
        if mask.shape != (len(seq),) or not (mask.dtype == np.bool_ or np.isin(mask, (0, 1)).all()):
            raise ConfigError(f"noise_mask must be {len(seq)} booleans (one per token), got "
                              f"shape {mask.shape} and dtype {mask.dtype}")
        mask = mask.astype(bool)

    inputs: list[int] = []
    targets: list[int] = []
    k = 0  # spans so far
    for t, token in enumerate(seq):
        if not mask[t]:
            inputs.append(token)
            continue
        if t == 0 or not mask[t - 1]:  # a span starts here
            if k + 1 >= len(sentinels):
                raise ConfigError(f"the noise mask has more spans than sentinels allow: "
                                  f"{len(sentinels)} sentinel ids cover at most {len(sentinels) - 1} "
                                  "spans (one more closes the targets); pass more sentinel ids")
            inputs.append(sentinels[k])
            targets.append(sentinels[k])
            k += 1
        targets.append(token)
    targets.append(sentinels[k])  # the final sentinel closes the targets
    return inputs, targets


def span_reconstruct(inputs: Any, targets: Any, sentinel_ids: Sequence[int]) -> list[int]:
    """Invert `span_corrupt`: put every span of `targets` back where its sentinel is in `inputs`."""
    inp = as_id_list(inputs, "inputs")
    tgt = as_id_list(targets, "targets")
    sentinels = set(distinct_ids(sentinel_ids, "sentinel_ids"))
    spans: dict[int, list[int]] = {}
    current: int | None = None
    for token in tgt:
        if token in sentinels:
            if token in spans:
                raise ConfigError(f"sentinel {token} occurs twice in targets; every span needs its own sentinel")
            spans[token] = []
            current = token
        elif current is None:
            raise ConfigError(f"targets must start with a sentinel, got token {token} first")
        else:
            spans[current].append(token)
    out: list[int] = []
    for token in inp:
        if token in sentinels:
            if token not in spans:
                raise ConfigError(f"sentinel {token} is in the inputs but not in the targets; "
                                  "were inputs and targets made together by span_corrupt?")
            out.extend(spans[token])
        else:
            out.append(token)
    return out
