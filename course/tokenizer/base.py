"""The contract every tokenizer in the course follows (text ↔ ids), and saving / loading.

A tokenizer maps a string to a list of integer ids and back. The model only ever sees ids
in ``range(vocab_size)``; everything about text lives here. The interface is kept small
(in the spirit of Karpathy's minbpe) so that the from-scratch BPE, the character
tokenizer and the Hugging Face wrapper are interchangeable downstream:

* ``encode(text) -> list[int]``: special tokens written in the text (``<|endoftext|>``)
  become their single id; everything else is ordinary text.
* ``decode(ids) -> str``, ``encode_batch(texts)``.
* ``vocab_size``, ``eos_id``, ``special_tokens``, ``token_bytes(id)``, ``token_str(id)``.
* ``save(directory)`` writes a Hugging Face ``tokenizer.json`` (+ ``tokenizer_config.json``)
  that ``AutoTokenizer.from_pretrained(directory)`` loads offline and that encodes every
  string exactly as ``encode`` does, plus ``course_tokenizer.json`` naming our class so
  ``load_tokenizer(directory)`` restores it.

Every tokenizer has the end-of-text token `EOS_TOKEN`; packing puts it between documents.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from course.errors import TokenizerError
from course.tokenizer.pretokenize import split_special

if TYPE_CHECKING:  # transformers / tokenizers are imported lazily: they are slow to import
    import tokenizers
    from transformers import PreTrainedTokenizerFast

EOS_TOKEN = "<|endoftext|>"
HF_TOKENIZER_FILE = "tokenizer.json"
HF_CONFIG_FILE = "tokenizer_config.json"
META_FILE = "course_tokenizer.json"
META_FORMAT = 1
# The files `Tokenizer.save` writes, in the order it writes them (the description last,
# so a directory whose description is present holds the other two as well).
TOKENIZER_FILES = (HF_TOKENIZER_FILE, HF_CONFIG_FILE, META_FILE)
# Written by transformers 4's save_pretrained and dropped by `save` (see there).
_DROPPED_FILES = ("special_tokens_map.json",)

# kind -> class, filled by `Tokenizer.__init_subclass__`.
_REGISTRY: dict[str, type[Tokenizer]] = {}


def check_special_tokens(special_tokens: Iterable[str]) -> list[str]:
    """Validate a list of special-token strings; returns it as a list, order kept.

    Every tokenizer needs `EOS_TOKEN`, the strings must be non-empty and distinct.
    """
    if isinstance(special_tokens, str):
        raise TokenizerError(
            f"special_tokens must be a list of strings, got the single string {special_tokens!r}; "
            f"write special_tokens=({special_tokens!r},)"
        )
    specials = list(special_tokens)
    for s in specials:
        if not isinstance(s, str) or not s:
            raise TokenizerError(f"special token {s!r} is not a non-empty string; remove it from special_tokens")
    if len(set(specials)) != len(specials):
        raise TokenizerError(f"special_tokens {specials!r} contains duplicates; list each token once")
    if EOS_TOKEN not in specials:
        raise TokenizerError(
            f"special_tokens {specials!r} lacks {EOS_TOKEN!r}, which every course tokenizer needs "
            "(packing separates documents with it); add it to special_tokens"
        )
    return specials


class Tokenizer(ABC):
    """Base class: text ↔ ids with special tokens, Hugging Face export, save / load.

    Subclasses set `kind` (the name `train_tokenizer` and `load_tokenizer` use), fill
    ``self._special`` (special string → id), and implement `encode_ordinary`, `decode`,
    `token_bytes`, `vocab_size`, `_hf_backend` and `_from_directory`.
    """

    kind: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            _REGISTRY[cls.kind] = cls

    def __init__(self) -> None:
        self._special: dict[str, int] = {}
        self._special_by_id: dict[int, str] = {}

    def _set_special(self, special: dict[str, int]) -> None:
        self._special = dict(special)
        self._special_by_id = {i: s for s, i in special.items()}

    # ---- sizes and special tokens -------------------------------------------------------
    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of ids: every id the tokenizer can emit is in ``range(vocab_size)``."""

    @property
    def special_tokens(self) -> dict[str, int]:
        """Special-token string → id (a copy)."""
        return dict(self._special)

    @property
    def eos_id(self) -> int:
        """Id of `EOS_TOKEN` (``<|endoftext|>``), the document separator."""
        return self._special[EOS_TOKEN]

    # ---- encoding -----------------------------------------------------------------------
    @abstractmethod
    def encode_ordinary(self, text: str) -> list[int]:
        """Encode `text`, treating special-token strings in it as ordinary characters."""

    def encode(self, text: str) -> list[int]:
        """Text → ids, length N. Special tokens written in `text` become their single id."""
        if not isinstance(text, str):
            raise TokenizerError(f"encode expects a str, got {type(text).__name__}; pass the text itself")
        ids: list[int] = []
        for piece, is_special in split_special(text, self._special):
            if is_special:
                ids.append(self._special[piece])
            else:
                ids.extend(self.encode_ordinary(piece))
        return ids

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        """Encode each text separately (no separator is added: packing does that)."""
        return [self.encode(t) for t in texts]

    # ---- decoding -----------------------------------------------------------------------
    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """Ids → text. Inverse of `encode` on text the tokenizer can represent."""

    @abstractmethod
    def token_bytes(self, token_id: int) -> bytes:
        """The UTF-8 bytes token `token_id` stands for (a special token: its text).

        Byte-level tokens can be fragments of a multi-byte character, which is why this
        returns bytes: bits-per-byte evaluation counts them exactly.
        """

    def token_str(self, token_id: int) -> str:
        """A readable form of one token for plots and tables: GPT-2's ``'Ġthe'`` shows as
        ``' the'``; bytes that are not complete UTF-8 show as ``\\xe2`` escapes."""
        return self.token_bytes(token_id).decode("utf-8", errors="backslashreplace")

    def _check_id(self, token_id: int) -> int:
        if isinstance(token_id, bool) or not isinstance(token_id, int):
            try:  # numpy / torch integer scalars
                token_id = int(token_id)  # type: ignore[call-overload]
            except (TypeError, ValueError):
                raise TokenizerError(f"token id {token_id!r} is not an integer; pass ints") from None
        if not 0 <= token_id < self.vocab_size:
            raise TokenizerError(
                f"token id {token_id} is outside this tokenizer's vocabulary (0..{self.vocab_size - 1}); "
                "were these ids produced by a different tokenizer or a model with a larger vocabulary?"
            )
        return token_id

    # ---- Hugging Face export, save / load -------------------------------------------------
    @abstractmethod
    def _hf_backend(self) -> tokenizers.Tokenizer:
        """A fresh `tokenizers.Tokenizer` that encodes exactly like this one."""

    def to_hf(self) -> PreTrainedTokenizerFast:
        """This tokenizer as a `transformers.PreTrainedTokenizerFast`.

        It encodes every string as `encode` does (special tokens included) and knows
        ``eos_token``, so it can sit next to an exported model on the Hub or in a pipeline.
        """
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast(tokenizer_object=self._hf_backend(), eos_token=EOS_TOKEN)

    def _meta(self) -> dict[str, Any]:
        """Extra fields written to ``course_tokenizer.json`` (subclasses may add some)."""
        return {}

    def save(self, directory: str | Path) -> Path:
        """Write ``tokenizer.json``, ``tokenizer_config.json`` and ``course_tokenizer.json``.

        The first two are a standard Hugging Face tokenizer directory; the last names our
        class for `load_tokenizer`. Returns the directory. Every file is written to a
        temporary folder first and renamed into place (a crash leaves old or new files,
        never a half-written one; a symlink at a destination is replaced, not written
        through).
        """
        from course.atomic import fsync_dir, temp_dir_beside

        out = Path(directory)
        try:
            out.mkdir(parents=True, exist_ok=True)
            stage = temp_dir_beside(out / "tokenizer")
            try:
                self.save_files(stage)
                # any file a newer transformers adds first, our description last
                extra = sorted(p.name for p in stage.iterdir() if p.name not in TOKENIZER_FILES)
                for name in (*extra, *TOKENIZER_FILES):
                    os.replace(stage / name, out / name)
                for name in _DROPPED_FILES:  # left by an older save into this directory
                    (out / name).unlink(missing_ok=True)
                fsync_dir(out)
            finally:
                shutil.rmtree(stage, ignore_errors=True)
        except OSError as e:
            raise TokenizerError(f"cannot write the tokenizer to {out} ({e}); pass a writable directory") from None
        return out

    def save_files(self, directory: Path) -> None:
        """Write the tokenizer files into `directory` in place (no atomicity: `save` calls
        this on a private temporary folder)."""
        self.to_hf().save_pretrained(str(directory))
        # transformers 4 also writes special_tokens_map.json, whose content
        # tokenizer_config.json already holds: drop it, so the directory is the same on
        # every supported version (and AutoTokenizer loads it on each).
        for name in _DROPPED_FILES:
            (directory / name).unlink(missing_ok=True)
        # transformers 5 writes its internal class name "TokenizersBackend"; the public
        # alias loads in transformers 4 as well.
        cfg_path = directory / HF_CONFIG_FILE
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
        cfg_path.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
        meta = {"kind": self.kind, "format": META_FORMAT, "vocab_size": self.vocab_size,
                "special_tokens": self._special, **self._meta()}
        (directory / META_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        for name in TOKENIZER_FILES:
            with open(directory / name, "rb") as f:
                os.fsync(f.fileno())

    def fingerprint(self) -> str:
        """`tokenizer_fingerprint` of the files `save` would write for this tokenizer."""
        import tempfile

        with tempfile.TemporaryDirectory(prefix="course-tokenizer-") as tmp:
            self.save_files(Path(tmp))
            return tokenizer_fingerprint(tmp)

    @classmethod
    @abstractmethod
    def _from_directory(cls, directory: Path, meta: dict[str, Any]) -> Tokenizer:
        """Rebuild the tokenizer saved in `directory` (``course_tokenizer.json`` read as `meta`)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, special_tokens={self._special})"


def check_vocab_size(vocab_size: object, n_special: int) -> int:
    """A byte-level vocabulary needs the 256 bytes plus the special tokens; returns `vocab_size`."""
    minimum = 256 + n_special
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
        raise TokenizerError(f"vocab_size={vocab_size!r} is not an integer; pass an int of at least {minimum}")
    if vocab_size < minimum:
        raise TokenizerError(
            f"vocab_size={vocab_size} is too small for byte-level BPE: it needs the 256 bytes plus "
            f"{n_special} special token(s), i.e. at least {minimum}; pass a larger vocab_size"
        )
    return vocab_size


def to_utf8(text: str, what: str) -> bytes:
    """`text` as UTF-8; a lone surrogate (no UTF-8 form) becomes a `TokenizerError` about `what`."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise TokenizerError(
            f"the {what} contains {text[e.start:e.end]!r}, a lone surrogate that has no UTF-8 form; "
            "clean the text (e.g. text.encode('utf-8', 'replace').decode())"
        ) from None


def require_eos(special: dict[str, int], path: Path) -> None:
    """Raise a `TokenizerError` about `path` when its special tokens lack `EOS_TOKEN`."""
    if EOS_TOKEN not in special:
        raise TokenizerError(f"{path} has no {EOS_TOKEN!r} special token, which every course tokenizer "
                             "needs; the file is corrupted or not from Tokenizer.save, save the tokenizer again")


def read_json(path: Path, what: str) -> Any:
    """Read a JSON file, turning every failure into a `TokenizerError` about `what`."""
    if not path.is_file():
        raise TokenizerError(f"{path} does not exist: {what} is missing; save the tokenizer again")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TokenizerError(f"{path} is not readable JSON ({e}); the {what} is corrupted, save the tokenizer again") from None


def tokenizer_fingerprint(directory: str | Path) -> str:
    """A sha256 of the tokenizer files in `directory` (names and bytes, in a fixed order).

    A run records it in its checkpoint: the tokenizer beside the weights must be the very
    one they were trained with, and a retrained one (on `--resume`) must come out equal.
    """
    d = Path(directory)
    h = hashlib.sha256()
    for name in TOKENIZER_FILES:
        try:
            data = (d / name).read_bytes()
        except OSError as e:
            raise TokenizerError(f"cannot read {d / name} ({e.strerror or e}); the tokenizer directory is "
                                 "incomplete, save the tokenizer again") from None
        h.update(name.encode() + len(data).to_bytes(8, "little") + data)
    return h.hexdigest()


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """Restore the tokenizer `Tokenizer.save` wrote to `directory` (same class, same ids).

    Reads ``course_tokenizer.json`` for the class, then the class rebuilds itself from the
    Hugging Face ``tokenizer.json``, so that file is the single source of truth.
    """
    import course.tokenizer  # noqa: F401  (registers every subclass)

    d = Path(directory)
    if not d.is_dir():
        raise TokenizerError(f"tokenizer directory {d} does not exist; pass a directory written by Tokenizer.save")
    if not (d / META_FILE).is_file() and (d / HF_TOKENIZER_FILE).is_file():
        raise TokenizerError(
            f"{d} has a {HF_TOKENIZER_FILE} but no {META_FILE}, so it was not written by Tokenizer.save; "
            f"wrap a byte-level file with HFByteBPETokenizer.from_file('{d / HF_TOKENIZER_FILE}')"
        )
    meta = read_json(d / META_FILE, "course tokenizer description")
    if not isinstance(meta, dict) or meta.get("kind") not in _REGISTRY:
        kind = meta.get("kind") if isinstance(meta, dict) else meta
        raise TokenizerError(
            f"{d / META_FILE} names tokenizer kind {kind!r}, which is not one of "
            f"{', '.join(sorted(_REGISTRY))}; the file is corrupted or from a newer course version"
        )
    if not (d / HF_TOKENIZER_FILE).is_file():
        raise TokenizerError(f"{d} has no {HF_TOKENIZER_FILE}; the tokenizer directory is incomplete, save it again")
    try:
        tok = _REGISTRY[meta["kind"]]._from_directory(d, meta)
    except TokenizerError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise TokenizerError(
            f"{d / HF_TOKENIZER_FILE} is corrupted ({type(e).__name__}: {e}); save the tokenizer again"
        ) from None
    except Exception as e:  # tokenizers raises plain Exception on bad JSON structure
        raise TokenizerError(
            f"{d / HF_TOKENIZER_FILE} could not be loaded ({e}); save the tokenizer again"
        ) from None
    if EOS_TOKEN not in tok.special_tokens:
        raise TokenizerError(f"{d / HF_TOKENIZER_FILE} has no {EOS_TOKEN!r} special token; save the tokenizer again")
    return tok

