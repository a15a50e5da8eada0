"""Pick a tokenizer by name: `train_tokenizer(kind, texts, ...)`.

The kinds are the names the CLI's ``--tokenizer`` accepts: ``"bpe"`` (our byte-level BPE),
``"char"`` (one id per character) and ``"hf-bpe"`` (Hugging Face ``tokenizers``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from course.errors import TokenizerError
from course.tokenizer.base import EOS_TOKEN, Tokenizer
from course.tokenizer.bpe import ByteBPETokenizer
from course.tokenizer.char import CharTokenizer
from course.tokenizer.hf import HFByteBPETokenizer

TOKENIZER_KINDS = ("bpe", "char", "hf-bpe")
DEFAULT_VOCAB_SIZE = 512  # for the BPE kinds when vocab_size is None


def train_tokenizer(
    kind: str,
    texts: Iterable[str] | str,
    vocab_size: int | None = None,
    special_tokens: Sequence[str] = (EOS_TOKEN,),
) -> Tokenizer:
    """Train a tokenizer of `kind` on `texts` (a string or an iterable of documents).

    `vocab_size` counts every id, special tokens included (default 512 for the BPE kinds);
    the character tokenizer ignores it (its vocabulary is the character set).
    """
    if kind not in TOKENIZER_KINDS:
        raise TokenizerError(f"unknown tokenizer kind {kind!r}; choose one of {', '.join(map(repr, TOKENIZER_KINDS))}")
    if kind == "char":
        return CharTokenizer().train(texts, special_tokens=special_tokens)
    size = DEFAULT_VOCAB_SIZE if vocab_size is None else vocab_size
    if kind == "bpe":
        return ByteBPETokenizer().train(texts, size, special_tokens)
    return HFByteBPETokenizer().train(texts, size, special_tokens)
