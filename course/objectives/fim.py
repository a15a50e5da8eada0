"""Fill-in-the-middle (Bavarian et al., 2022): teach a causal LM to infill, for free.

Cut a document at two random points into `prefix`, `middle`, `suffix`, and move the
middle to the end, marked by three special tokens:

    PSM   <PRE> prefix <SUF> suffix <MID> middle
    SPM   <PRE> <SUF> suffix <MID> prefix middle

Trained on this with the ordinary causal loss, the model learns to write a middle that
joins a given prefix and suffix: prompt it with `<PRE> p <SUF> s <MID>` and let it
generate (code editors do exactly this). Nothing changes in the model, the mask or the
loss; FIM is a pure data transform, applied to a fraction of the documents (the paper
finds rate 0.5 costs almost nothing in left-to-right quality).

SPM here is the variant the paper uses for joint training (its section 3 / appendix D):
`<PRE>` and `<SUF>` come first, then the suffix, then `<MID>`, then prefix and middle as
one contiguous stretch, so the prefix flows straight into the middle. The end-of-text
token that packing appends after every document plays the paper's `<EOT>`: after the
middle it teaches the model to stop. Cut points are token positions (the paper cuts
characters before tokenising; with a character tokenizer the two coincide).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from course.errors import ConfigError
from course.objectives._common import RngLike, as_id_list, as_rng, check_probability

__all__ = [
    "FIM_MID",
    "FIM_PRE",
    "FIM_SUF",
    "FIM_TOKENS",
    "apply_fim",
    "fim_arrange",
    "fim_inverse",
    "fim_transform",
]

FIM_PRE, FIM_SUF, FIM_MID = "<PRE>", "<SUF>", "<MID>"
FIM_TOKENS = (FIM_PRE, FIM_SUF, FIM_MID)
MODES = ("psm", "spm")


def _check_special(pre_id: int, suf_id: int, mid_id: int) -> tuple[int, int, int]:
    specials = (pre_id, suf_id, mid_id)
    for name, value in zip(("pre_id", "suf_id", "mid_id"), specials, strict=True):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{name} must be a token id (int >= 0), got {value!r}")
    if len(set(specials)) != 3:
        raise ConfigError(f"pre_id, suf_id and mid_id must be three different ids, got {specials}")
    return specials


def fim_arrange(
    prefix: Sequence[int],
    middle: Sequence[int],
    suffix: Sequence[int],
    *,
    pre_id: int,
    suf_id: int,
    mid_id: int,
    mode: str = "psm",
) -> list[int]:
    """Lay out the three pieces in FIM order: PSM `<PRE> p <SUF> s <MID> m` or SPM
    `<PRE> <SUF> s <MID> p m`."""
    _check_special(pre_id, suf_id, mid_id)
    p, m, s = (as_id_list(x, name) for x, name in ((prefix, "prefix"), (middle, "middle"), (suffix, "suffix")))
    if mode == "psm":
        return [pre_id, *p, suf_id, *s, mid_id, *m]
    if mode == "spm":
        return [pre_id, suf_id, *s, mid_id, *p, *m]
    raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")


def fim_transform(
    ids: Any,
    *,
    pre_id: int,
    suf_id: int,
    mid_id: int,
    mode: str = "psm",
    rng: RngLike,
) -> list[int]:
    """One document → its FIM form, cut at two uniformly random token positions.

    Cut points `i <= j` are drawn uniformly from `0..len(ids)` (so any piece may be empty);
    prefix = ids[:i], middle = ids[i:j], suffix = ids[j:]. The document must not contain
    the three FIM tokens. `fim_inverse` undoes it.
    """
    seq = as_id_list(ids)
    specials = _check_special(pre_id, suf_id, mid_id)
    clash = set(seq) & set(specials)
    if clash:
        raise ConfigError(f"the document already contains FIM token id(s) {sorted(clash)}; "
                          "FIM tokens must be special tokens that never occur in text")
    g = as_rng(rng)
    i, j = sorted(int(c) for c in g.integers(0, len(seq) + 1, size=2))
    return fim_arrange(seq[:i], seq[i:j], seq[j:], pre_id=pre_id, suf_id=suf_id, mid_id=mid_id, mode=mode)


def apply_fim(
    docs: Sequence[Any],
    rate: float = 0.5,
    *,
    pre_id: int,
    suf_id: int,
    mid_id: int,
    mode: str = "psm",
    rng: RngLike,
) -> list[list[int]]:
    """Transform each document with probability `rate`, leave the others as they are.

    `mode` is `"psm"`, `"spm"`, or `"mixed"` (each transformed document picks PSM or SPM
    with equal probability, the paper's joint training). Returns new lists of ids, in the
    order of `docs`; pack them as usual.
    """
    rate = check_probability("rate", rate)
    if mode not in (*MODES, "mixed"):
        raise ConfigError(f"mode must be 'psm', 'spm' or 'mixed', got {mode!r}")
    g = as_rng(rng)
    out = []
    for k, doc in enumerate(docs):
        seq = as_id_list(doc, f"docs[{k}]")
        if g.random() < rate:
            m = mode if mode != "mixed" else ("spm" if g.random() < 0.5 else "psm")
            seq = fim_transform(seq, pre_id=pre_id, suf_id=suf_id, mid_id=mid_id, mode=m, rng=g)
        out.append(seq)
    return out


def fim_inverse(ids: Any, *, pre_id: int, suf_id: int, mid_id: int) -> list[int]:
    """Recover the original document from its PSM or SPM form (others are returned as is).

    PSM `<PRE> p <SUF> s <MID> m` → p + m + s. SPM `<PRE> <SUF> s <MID> p m` is the same
    rule with an empty slot between `<PRE>` and `<SUF>`: everything after `<MID>`, then the
    suffix. So one rule inverts both modes.
    """
    seq = as_id_list(ids)
    _check_special(pre_id, suf_id, mid_id)
    if not seq or seq[0] != pre_id:
        return seq
    try:
        suf = seq.index(suf_id, 1)
        mid = seq.index(mid_id, suf + 1)
    except ValueError:
        raise ConfigError("the sequence starts with <PRE> but lacks <SUF> or a <MID> after it; "
                          "it is not a complete FIM document") from None
    prefix, suffix, after_mid = seq[1:suf], seq[suf + 1 : mid], seq[mid + 1 :]
    return prefix + after_mid + suffix
