"""Cutting text into pieces before BPE sees it, and GPT-2's byte ↔ printable-character map.

Byte-level BPE never merges across the boundaries drawn here, so this module decides
what a token *can* be:

1. **Special tokens** such as ``<|endoftext|>`` are split out first
   (`split_special`). They become single ids and are never merged or broken, and the
   text around them is tokenized as if the special token were a hard wall.
2. **Pre-tokenization** (`pretokenize`) cuts the remaining text with GPT-2's regular
   expression: contractions (``'s``, ``'ll`` ...), a run of letters or of digits or of
   other symbols with at most one leading space, and whitespace. A word therefore
   carries its leading space (``" the"``), and a merge can never glue a word to the
   punctuation after it.

The regex uses Unicode properties (``\\p{L}`` letters, ``\\p{N}`` numbers, ``\\s``
whitespace), so the split depends on the Unicode tables of the regex engine. The
``regex`` module and the Oniguruma engine inside Hugging Face ``tokenizers`` agree on
every character both of them know; characters added in the newest Unicode versions
(unassigned in the older table) can be classified differently. ``tokenizers_pretokenize``
gives the Hugging Face split for comparison.

`bytes_to_unicode` is GPT-2's trick for storing byte-level tokens in text files: each of
the 256 byte values gets a printable character (printable Latin-1 bytes map to
themselves, the rest to ``Ā`` and onwards; the space byte becomes ``Ġ``, newline ``Ċ``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import regex

# GPT-2's split pattern (from the released encoder), unchanged.
GPT2_SPLIT_PATTERN = (
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)
_GPT2_RE = regex.compile(GPT2_SPLIT_PATTERN)


def pretokenize(text: str) -> list[str]:
    """Cut `text` (without special tokens) into GPT-2 pre-tokens.

    The pieces concatenate back to `text` exactly: nothing is dropped or normalised.
    ``"Hello  world's 42!"`` → ``['Hello', ' ', ' world', "'s", ' 42', '!']``.
    """
    return _GPT2_RE.findall(text)


@functools.lru_cache(maxsize=64)
def _special_re(specials: tuple[str, ...]) -> regex.Pattern[str]:
    # Longest first: when one special token is a prefix of another, the longer wins at a
    # given position (Hugging Face matches added tokens leftmost-longest, so do we).
    alternatives = sorted(specials, key=len, reverse=True)
    return regex.compile("|".join(regex.escape(s) for s in alternatives))


def split_special(text: str, specials: Iterable[str]) -> list[tuple[str, bool]]:
    """Split `text` around occurrences of the special-token strings.

    Returns ``[(piece, is_special), ...]`` in order; the pieces concatenate to `text`, empty
    ordinary pieces are left out. ``split_special("a<|endoftext|>b", ["<|endoftext|>"])``
    → ``[("a", False), ("<|endoftext|>", True), ("b", False)]``.
    """
    key = tuple(sorted(s for s in specials if s))
    if not key:
        return [(text, False)] if text else []
    out: list[tuple[str, bool]] = []
    start = 0
    for m in _special_re(key).finditer(text):
        if m.start() > start:
            out.append((text[start : m.start()], False))
        out.append((m.group(), True))
        start = m.end()
    if start < len(text):
        out.append((text[start:], False))
    return out


@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte value (0..255) to one printable Unicode character.

    Printable bytes ``!``..``~``, ``¡``..``¬`` and ``®``..``ÿ`` keep their Latin-1 character;
    the other 68 bytes (control codes, space, ...) take ``chr(256)``, ``chr(257)``, ... in byte
    order. So ``b" "`` ↦ ``"Ġ"`` (U+0120) and ``b"\\n"`` ↦ ``"Ċ"`` (U+010A).
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


@functools.lru_cache(maxsize=1)
def unicode_to_bytes() -> dict[str, int]:
    """The inverse of `bytes_to_unicode`: printable character → byte value."""
    return {c: b for b, c in bytes_to_unicode().items()}


def bytes_to_printable(data: bytes) -> str:
    """Token bytes → GPT-2's printable string (``b" the"`` → ``"Ġthe"``)."""
    table = bytes_to_unicode()
    return "".join(table[b] for b in data)


def printable_to_bytes(text: str) -> bytes:
    """GPT-2's printable string → token bytes (``"Ġthe"`` → ``b" the"``).

    Raises `KeyError` on a character outside the 256-character alphabet; callers turn
    that into a `TokenizerError` naming the file it came from.
    """
    table = unicode_to_bytes()
    return bytes(table[c] for c in text)


def tokenizers_pretokenize(text: str) -> list[str]:
    """The Hugging Face ``ByteLevel`` split of `text`, mapped back to plain strings.

    For comparing with `pretokenize`: both run the same GPT-2 pattern, but in different
    regex engines (see the module docstring about Unicode versions).
    """
    pre = _hf_byte_level()
    return [printable_to_bytes(p).decode("utf-8") for p, _ in pre.pre_tokenize_str(text)]


@functools.lru_cache(maxsize=1)
def _hf_byte_level():  # noqa: ANN202  (a tokenizers.pre_tokenizers.ByteLevel)
    from tokenizers import pre_tokenizers

    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
