"""The simplest tokenizer: one id per character.

The vocabulary is the sorted set of distinct characters (Unicode code points) of the
training text, followed by the special tokens. It is the baseline the course starts from:
tiny vocabulary, long sequences, and it cannot encode a character it never saw (a
byte-level BPE can). Its Hugging Face form is a ``WordLevel`` model whose pre-tokenizer
isolates every character (``Split`` on the regex ``[\\s\\S]``, which, unlike ``.``, also
matches newlines), with a ``Fuse`` decoder so decoding does not insert spaces.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from course.errors import TokenizerError
from course.tokenizer.base import (
    EOS_TOKEN,
    HF_TOKENIZER_FILE,
    Tokenizer,
    check_special_tokens,
    read_json,
    require_eos,
)
from course.tokenizer.pretokenize import split_special

# Matches exactly one code point, newlines included, in the Oniguruma engine of `tokenizers`.
HF_CHAR_PATTERN = r"[\s\S]"


class CharTokenizer(Tokenizer):
    """Character-level tokenizer: ids 0..C-1 are the sorted characters, specials follow.

    ``CharTokenizer().train(texts)`` or ``CharTokenizer("abc ")`` (the alphabet directly).
    """

    kind = "char"

    def __init__(self, chars: Iterable[str] = "", special_tokens: Sequence[str] = (EOS_TOKEN,)) -> None:
        super().__init__()
        specials = check_special_tokens(special_tokens)
        alphabet = sorted(set(chars))
        bad = [c for c in alphabet if not isinstance(c, str) or len(c) != 1]
        if bad:
            raise TokenizerError(f"CharTokenizer alphabet entries {bad[:5]!r} are not single characters")
        self._chars: list[str] = alphabet
        self._stoi: dict[str, int] = {c: i for i, c in enumerate(alphabet)}
        self._set_special({s: len(alphabet) + k for k, s in enumerate(specials)})
        self._itos: list[str] = alphabet + specials

    def train(self, texts: Iterable[str] | str, vocab_size: int | None = None,
              special_tokens: Sequence[str] = (EOS_TOKEN,)) -> CharTokenizer:
        """Take the alphabet from `texts` (special tokens in them are not counted).

        `vocab_size` is ignored: a character vocabulary is the character set. Replaces this
        tokenizer's vocabulary and returns ``self``.
        """
        specials = check_special_tokens(special_tokens)
        seen: set[str] = set()
        for k, text in enumerate([texts] if isinstance(texts, str) else texts):
            if not isinstance(text, str):
                raise TokenizerError(f"training text #{k} is a {type(text).__name__}, not a str; pass strings")
            for piece, is_special in split_special(text, specials):
                if not is_special:
                    seen.update(piece)
        if not seen:
            raise TokenizerError("the training texts contain no characters (besides special tokens); "
                                 "train the character tokenizer on non-empty text")
        self.__dict__.update(CharTokenizer(seen, specials).__dict__)
        return self

    @property
    def vocab_size(self) -> int:
        return len(self._itos)

    @property
    def chars(self) -> list[str]:
        """The alphabet, in id order (ids 0..len-1)."""
        return list(self._chars)

    def encode_ordinary(self, text: str) -> list[int]:
        stoi = self._stoi
        try:
            return [stoi[c] for c in text]
        except KeyError:
            unknown = sorted(set(text) - set(stoi))
            shown = ", ".join(repr(c) for c in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
            raise TokenizerError(
                f"the text contains {len(unknown)} character(s) not in this character tokenizer's "
                f"vocabulary: {shown}. Train the tokenizer on text that contains them, "
                "or use a byte-level tokenizer ('bpe' / 'hf-bpe'), which encodes any text"
            ) from None

    def decode(self, ids: Sequence[int]) -> str:
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)  # torch / numpy / iterables
        return "".join(self._itos[self._check_id(i)] for i in ids)

    def token_bytes(self, token_id: int) -> bytes:
        return self._itos[self._check_id(token_id)].encode("utf-8", errors="surrogatepass")

    def token_str(self, token_id: int) -> str:
        return self._itos[self._check_id(token_id)]

    def _hf_backend(self) -> Any:
        from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
        from tokenizers import Tokenizer as HFTokenizer

        vocab = {c: i for i, c in enumerate(self._itos)}
        tok = HFTokenizer(models.WordLevel(vocab=vocab, unk_token=None))
        tok.pre_tokenizer = pre_tokenizers.Split(Regex(HF_CHAR_PATTERN), behavior="isolated")
        tok.decoder = decoders.Fuse()
        tok.add_special_tokens([AddedToken(s, special=True, normalized=False)
                                for s, _ in sorted(self._special.items(), key=lambda kv: kv[1])])
        return tok

    @classmethod
    def _from_directory(cls, directory: Path, meta: dict[str, Any]) -> CharTokenizer:
        data = read_json(directory / HF_TOKENIZER_FILE, "Hugging Face tokenizer file")
        model = data["model"]
        if model.get("type") != "WordLevel":
            raise TokenizerError(f"{directory / HF_TOKENIZER_FILE} holds a {model.get('type')} model, not "
                                 "WordLevel; it was not written by CharTokenizer.save")
        special = {t["content"]: int(t["id"]) for t in data.get("added_tokens", []) if t.get("special")}
        require_eos(special, directory / HF_TOKENIZER_FILE)
        by_id = {int(i): s for s, i in model["vocab"].items() if s not in special}
        chars = [by_id[i] for i in range(len(by_id))]
        specials = [s for s, _ in sorted(special.items(), key=lambda kv: kv[1])]
        tok = cls(chars, specials)
        if tok._chars != chars or tok._special != special:
            raise TokenizerError(f"{directory / HF_TOKENIZER_FILE}: the character ids are not in sorted order "
                                 "followed by the special tokens; the file is corrupted, save it again")
        return tok
