"""Text ↔ ids: byte-level BPE from scratch, a character tokenizer, and the Hugging Face one.

All three share the `Tokenizer` interface (``encode``, ``decode``, ``vocab_size``,
``eos_id``, ``save`` / `load_tokenizer`, ``to_hf``); `train_tokenizer` picks one by name.
Each saves a Hugging Face ``tokenizer.json`` that ``AutoTokenizer`` loads and that encodes
exactly as ours does.
"""

from course.tokenizer.base import (
    EOS_TOKEN,
    TOKENIZER_FILES,
    Tokenizer,
    load_tokenizer,
    tokenizer_fingerprint,
)
from course.tokenizer.bpe import ByteBPETokenizer, count_pretokens, learn_merges
from course.tokenizer.char import CharTokenizer
from course.tokenizer.factory import DEFAULT_VOCAB_SIZE, TOKENIZER_KINDS, train_tokenizer
from course.tokenizer.hf import HFByteBPETokenizer
from course.tokenizer.pretokenize import (
    GPT2_SPLIT_PATTERN,
    bytes_to_unicode,
    pretokenize,
    split_special,
)

__all__ = [
    "DEFAULT_VOCAB_SIZE",
    "EOS_TOKEN",
    "GPT2_SPLIT_PATTERN",
    "TOKENIZER_FILES",
    "TOKENIZER_KINDS",
    "ByteBPETokenizer",
    "CharTokenizer",
    "HFByteBPETokenizer",
    "Tokenizer",
    "bytes_to_unicode",
    "count_pretokens",
    "learn_merges",
    "load_tokenizer",
    "pretokenize",
    "split_special",
    "tokenizer_fingerprint",
    "train_tokenizer",
]
