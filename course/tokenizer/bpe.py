"""Byte-level BPE from scratch, with GPT-2's conventions and GPT-2's file format.

**Vocabulary.** Ids 0..255 are the raw bytes, so any string can be encoded (no unknown
token). Training appends one id per learned token (256, 257, ...) and the special tokens
come last. A token is a byte string; ``token_bytes(id)`` returns it.

**Training** (`learn_merges`) repeatedly merges the most frequent adjacent pair of tokens
into a new token. Counting every pair in the corpus after every merge is simple but slow
(~170 s for Tiny Shakespeare at vocabulary 512; still ~25 s after step 1 below). The
incremental version here gives exactly the same merges in about half a second:

1. Count each distinct pre-token once (``" the"`` occurs thousands of times: store it once
   with its frequency). The corpus becomes a list of words (lists of ids) with frequencies.
2. Keep ``pair → count`` and ``pair → set of words containing it``.
3. After merging ``(a, b)``, only the words that contain ``(a, b)`` change. Their old pairs
   are subtracted and their new pairs added; nothing else is touched.
4. A heap finds the most frequent pair. Counts only change for a handful of pairs per
   merge, so instead of re-sorting, stale heap entries are detected when popped
   ("lazy invalidation") and pushed again with their current count.

Ties are broken deterministically: among equally frequent pairs the one whose
``(bytes_left, bytes_right)`` is lexicographically greatest wins.

If a merge produces a byte string that is already a token (``"a" + "bc"`` after
``"ab" + "c"``, possible in a hand-written merge list), the existing id is reused, as
Hugging Face does: a token string has exactly one id, which is what keeps
``tokenizer.json`` faithful. Such merges do not grow the vocabulary, so a merge list can
be longer than the number of ids it adds.

**Encoding** applies the learned merges inside each pre-token, lowest merge rank first
(leftmost first among equal ranks, one occurrence at a time: exactly Hugging Face's
``BPE`` model), and caches the result per pre-token.
"""

from __future__ import annotations

import heapq
import json
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

from course.errors import TokenizerError
from course.tokenizer.base import (
    EOS_TOKEN,
    HF_TOKENIZER_FILE,
    Tokenizer,
    check_special_tokens,
    check_vocab_size,
    read_json,
    require_eos,
    to_utf8,
)
from course.tokenizer.pretokenize import (
    _GPT2_RE,
    bytes_to_printable,
    printable_to_bytes,
    split_special,
)

Pair = tuple[int, int]

# Order-reversing key for bytes: heapq is a min-heap, but ties go to the *greatest* bytes.
# Map each byte x to chr(255 - x) and end with chr(256), larger than any mapped byte, so a
# prefix sorts after its extensions (b"ab" > b"a" must pop first).
_REVERSE = bytes(255 - x for x in range(256))


def _descending_key(data: bytes) -> str:
    return data.translate(_REVERSE).decode("latin-1") + "\u0100"


def _as_texts(texts: Iterable[str] | str) -> Iterable[str]:
    return [texts] if isinstance(texts, str) else texts


def count_pretokens(texts: Iterable[str] | str, special_tokens: Iterable[str] = (EOS_TOKEN,)) -> Counter[bytes]:
    """UTF-8 bytes of each distinct pre-token → how often it occurs in `texts`.

    Special tokens are cut out first and not counted: they must never be merged. Each
    text is pre-tokenized on its own, so no pre-token spans two documents.
    """
    specials = list(special_tokens)
    counts: Counter[str] = Counter()
    for k, text in enumerate(_as_texts(texts)):
        if not isinstance(text, str):
            raise TokenizerError(f"training text #{k} is a {type(text).__name__}, not a str; pass strings")
        for piece, is_special in split_special(text, specials):
            if not is_special:
                counts.update(_GPT2_RE.findall(piece))
    out: Counter[bytes] = Counter()
    for piece, n in counts.items():
        out[to_utf8(piece, "training text")] = n
    return out


def _merge_word(word: list[int], a: int, b: int, new: int) -> list[int]:
    """Replace each non-overlapping ``a, b`` (scanning left to right) by ``new``."""
    out: list[int] = []
    i, n = 0, len(word)
    while i < n:
        if i + 1 < n and word[i] == a and word[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


def learn_merges(word_counts: dict[bytes, int], num_new_tokens: int) -> list[tuple[bytes, bytes]]:
    """Learn BPE merges from pre-token counts until `num_new_tokens` tokens were added.

    `word_counts`: UTF-8 bytes of each distinct pre-token → frequency (`count_pretokens`).
    Returns the merges in order as ``(left_bytes, right_bytes)``; the token they create is
    ``left_bytes + right_bytes``. Stops early (with fewer tokens) when no pair is left.
    """
    tok_bytes: list[bytes] = [bytes([i]) for i in range(256)]
    tok_key: list[str] = [_descending_key(b) for b in tok_bytes]
    id_of: dict[bytes, int] = {b: i for i, b in enumerate(tok_bytes)}

    words: list[list[int]] = []
    freqs: list[int] = []
    pair_count: dict[Pair, int] = {}
    where: dict[Pair, set[int]] = {}
    for w, f in word_counts.items():
        if len(w) < 2 or f <= 0:
            continue  # a single byte has no pair: it can never take part in a merge
        wi = len(words)
        word = list(w)
        words.append(word)
        freqs.append(f)
        for p in pairwise(word):
            pair_count[p] = pair_count.get(p, 0) + f
            s = where.get(p)
            if s is None:
                where[p] = {wi}
            else:
                s.add(wi)

    # Max-heap via negated counts; ties: greatest (left, right) bytes first.
    heap = [(-c, tok_key[a], tok_key[b], a, b) for (a, b), c in pair_count.items()]
    heapq.heapify(heap)

    merges: list[tuple[bytes, bytes]] = []
    added = 0
    while added < num_new_tokens and heap:
        neg, _, _, a, b = heapq.heappop(heap)
        current = pair_count.get((a, b), 0)
        if current != -neg:
            if current > 0:  # stale entry (count went down): re-queue with the true count
                heapq.heappush(heap, (-current, tok_key[a], tok_key[b], a, b))
            continue

        merged = tok_bytes[a] + tok_bytes[b]
        new = id_of.get(merged)
        if new is None:  # a genuinely new token; otherwise reuse the id of the same bytes
            new = len(tok_bytes)
            tok_bytes.append(merged)
            tok_key.append(_descending_key(merged))
            id_of[merged] = new
            added += 1
        merges.append((tok_bytes[a], tok_bytes[b]))

        # Re-tokenize only the words that contain (a, b); collect the pair-count changes.
        delta: dict[Pair, int] = {}
        for wi in where.pop((a, b), ()):
            word = words[wi]
            new_word = _merge_word(word, a, b, new)
            if len(new_word) == len(word):
                continue  # stale index entry: the pair left this word in an earlier merge
            f = freqs[wi]
            for p in pairwise(word):
                delta[p] = delta.get(p, 0) - f
            for p in pairwise(new_word):
                delta[p] = delta.get(p, 0) + f
                s = where.get(p)
                if s is None:
                    where[p] = {wi}
                else:
                    s.add(wi)
            words[wi] = new_word

        for p, d in delta.items():
            if d == 0:
                continue
            c = pair_count.get(p, 0) + d
            if c <= 0:
                pair_count.pop(p, None)
                where.pop(p, None)
            else:
                pair_count[p] = c
                if d > 0:  # only increases need a new heap entry (decreases are lazy)
                    heapq.heappush(heap, (-c, tok_key[p[0]], tok_key[p[1]], p[0], p[1]))
    return merges


class ByteBPETokenizer(Tokenizer):
    """Byte-level BPE tokenizer written from scratch (GPT-2 conventions).

    ``ByteBPETokenizer()`` knows only the 256 bytes and ``<|endoftext|>``;
    ``ByteBPETokenizer().train(texts, vocab_size=512)`` learns merges;
    ``ByteBPETokenizer(merges)`` rebuilds one from a merge list.
    """

    kind = "bpe"
    _CACHE_LIMIT = 1 << 20

    def __init__(
        self,
        merges: Sequence[tuple[bytes, bytes]] = (),
        special_tokens: Sequence[str] = (EOS_TOKEN,),
    ) -> None:
        super().__init__()
        specials = check_special_tokens(special_tokens)
        id_bytes = [bytes([i]) for i in range(256)]
        known = {b: i for i, b in enumerate(id_bytes)}
        for k, pair in enumerate(merges):
            if len(pair) != 2 or not all(isinstance(x, bytes) for x in pair):
                raise TokenizerError(f"merge #{k} is {pair!r}; each merge must be a pair of bytes like (b'a', b'b')")
            left, right = pair
            if left not in known or right not in known:
                raise TokenizerError(
                    f"merge #{k} ({left!r}, {right!r}) uses a token no earlier merge created; "
                    "merges must be listed in the order they were learned"
                )
            if left + right not in known:
                known[left + right] = len(id_bytes)
                id_bytes.append(left + right)
        special = {s: len(id_bytes) + k for k, s in enumerate(specials)}
        slots: list[bytes | None] = [*id_bytes, *([None] * len(specials))]
        self._build(slots, [(a, b) for a, b in merges], special)

    # ---- construction ----------------------------------------------------------------------
    def _build(self, id_bytes: list[bytes | None], merges: list[tuple[bytes, bytes]],
               special: dict[str, int]) -> None:
        """Install a vocabulary: `id_bytes[i]` is token i's bytes (None for special ids)."""
        self._set_special(special)
        for s, i in special.items():
            if not 0 <= i < len(id_bytes) or id_bytes[i] is not None:
                raise TokenizerError(f"special token {s!r} has id {i}, which clashes with the vocabulary")
            id_bytes[i] = s.encode("utf-8")
        if any(b is None for b in id_bytes):
            missing = [i for i, b in enumerate(id_bytes) if b is None][:5]
            raise TokenizerError(f"token ids {missing} have no entry: the vocabulary must cover 0..N-1 without gaps")
        self._id_bytes: list[bytes] = id_bytes  # type: ignore[assignment]
        ordinary = {b: i for i, b in enumerate(self._id_bytes) if i not in self._special_by_id}
        if len(ordinary) != len(self._id_bytes) - len(special):
            raise TokenizerError("two ordinary token ids have the same bytes; a token string must have one id")
        missing_bytes = [x for x in range(256) if bytes([x]) not in ordinary]
        if missing_bytes:
            raise TokenizerError(
                f"the vocabulary lacks the single bytes {missing_bytes[:8]} ({len(missing_bytes)} in all); "
                "a byte-level vocabulary must contain all 256 bytes"
            )
        self._byte_id = [ordinary[bytes([x])] for x in range(256)]
        self._merges = list(merges)
        # (left id, right id) -> (rank, new id). A repeated pair keeps its last rank, as in
        # Hugging Face's BPE model.
        ranks: dict[Pair, tuple[int, int]] = {}
        for rank, (left, right) in enumerate(self._merges):
            try:
                ranks[(ordinary[left], ordinary[right])] = (rank, ordinary[left + right])
            except KeyError:
                raise TokenizerError(
                    f"merge #{rank} ({left!r}, {right!r}) refers to bytes that are not in the vocabulary; "
                    "the merges and the vocabulary do not belong together"
                ) from None
        self._ranks = ranks
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def _from_vocab(cls, vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]],
                    special: dict[str, int]) -> ByteBPETokenizer:
        n = max([*vocab, *special.values()], default=-1) + 1
        id_bytes: list[bytes | None] = [None] * n
        for i, b in vocab.items():
            id_bytes[i] = b
        check_special_tokens(special)
        tok = cls.__new__(cls)
        Tokenizer.__init__(tok)
        tok._build(id_bytes, merges, special)
        return tok

    # ---- training ------------------------------------------------------------------------
    def train(
        self,
        texts: Iterable[str] | str,
        vocab_size: int,
        special_tokens: Sequence[str] = (EOS_TOKEN,),
    ) -> ByteBPETokenizer:
        """Learn merges from `texts` until the vocabulary has `vocab_size` ids (specials included).

        Replaces this tokenizer's vocabulary and returns ``self``, so both
        ``tok.train(...)`` and ``tok = ByteBPETokenizer().train(...)`` work.
        """
        specials = check_special_tokens(special_tokens)
        check_vocab_size(vocab_size, len(specials))
        counts = count_pretokens(texts, specials)
        wanted = vocab_size - 256 - len(specials)
        merges = learn_merges(counts, wanted)
        fresh = ByteBPETokenizer(merges, specials)
        if fresh.vocab_size < vocab_size:
            warnings.warn(
                f"the training text only supports {fresh.vocab_size} tokens (asked for {vocab_size}): "
                "no adjacent pair is left to merge; train on more text for a larger vocabulary",
                stacklevel=2,
            )
        self.__dict__.update(fresh.__dict__)
        return self

    # ---- the vocabulary ------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self._id_bytes)

    @property
    def merges(self) -> list[tuple[bytes, bytes]]:
        """The merges in the order they were learned, as ``(left_bytes, right_bytes)``."""
        return list(self._merges)

    @property
    def vocab(self) -> dict[int, bytes]:
        """Id → token bytes (special tokens: their UTF-8 text)."""
        return dict(enumerate(self._id_bytes))

    def token_bytes(self, token_id: int) -> bytes:
        return self._id_bytes[self._check_id(token_id)]

    # ---- encoding ------------------------------------------------------------------------
    def _bpe(self, data: bytes) -> list[int]:
        """Apply the merges to one pre-token's bytes: lowest rank first, then leftmost.

        A linked list over the symbols plus a heap of candidate merges keeps this
        O(n log n) even for a 10,000-space pre-token; stale candidates are skipped on pop.
        """
        ids = [self._byte_id[x] for x in data]
        n = len(ids)
        if n < 2:
            return ids
        ranks = self._ranks
        heap: list[tuple[int, int, int]] = []
        for i in range(n - 1):
            m = ranks.get((ids[i], ids[i + 1]))
            if m is not None:
                heap.append((m[0], i, m[1]))
        if not heap:
            return ids
        heapq.heapify(heap)
        nxt = list(range(1, n + 1))
        nxt[-1] = -1
        prv = list(range(-1, n - 1))
        alive = [True] * n
        while heap:
            _, i, new = heapq.heappop(heap)
            if not alive[i]:
                continue
            j = nxt[i]
            if j == -1:
                continue
            m = ranks.get((ids[i], ids[j]))
            if m is None or m[1] != new:
                continue  # the symbols at i changed since this candidate was queued
            ids[i] = new
            alive[j] = False
            k = nxt[j]
            nxt[i] = k
            if k != -1:
                prv[k] = i
                m = ranks.get((new, ids[k]))
                if m is not None:
                    heapq.heappush(heap, (m[0], i, m[1]))
            p = prv[i]
            if p != -1:
                m = ranks.get((ids[p], new))
                if m is not None:
                    heapq.heappush(heap, (m[0], p, m[1]))
        return [t for t, keep in zip(ids, alive, strict=True) if keep]

    def encode_ordinary(self, text: str) -> list[int]:
        """Text → ids ignoring special tokens: pre-tokenize, then BPE each piece (cached)."""
        cache = self._cache
        out: list[int] = []
        for piece in _GPT2_RE.findall(text):
            ids = cache.get(piece)
            if ids is None:
                ids = self._bpe(to_utf8(piece, "text to encode"))
                if len(cache) >= self._CACHE_LIMIT:
                    cache.clear()
                cache[piece] = ids
            out.extend(ids)
        return out

    # ---- decoding ------------------------------------------------------------------------
    def decode(self, ids: Sequence[int]) -> str:
        """Ids → text: join the token bytes, decode UTF-8 (a lone fragment of a multi-byte
        character becomes U+FFFD). Special ids become their text."""
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)  # torch / numpy / iterables
        table = self._id_bytes
        try:
            if ids and (min(ids) < 0 or max(ids) >= len(table)):
                raise IndexError
            data = b"".join([table[i] for i in ids])
        except (IndexError, TypeError):
            for i in ids:
                self._check_id(i)
            raise
        return data.decode("utf-8", errors="replace")

    # ---- Hugging Face ------------------------------------------------------------------
    def _hf_backend(self) -> Any:
        from tokenizers import AddedToken, decoders, models, pre_tokenizers
        from tokenizers import Tokenizer as HFTokenizer

        vocab = {bytes_to_printable(b): i for i, b in enumerate(self._id_bytes)
                 if i not in self._special_by_id}
        # Specials also go in the model vocabulary (as GPT-2's files have them) so that
        # `add_special_tokens` keeps their ids wherever they are.
        vocab.update(self._special)
        merges = [(bytes_to_printable(a), bytes_to_printable(b)) for a, b in self._merges]
        model = models.BPE(vocab=vocab, merges=merges, dropout=None, unk_token=None,
                           fuse_unk=False, byte_fallback=False, ignore_merges=False)
        tok = HFTokenizer(model)
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        tok.add_special_tokens([AddedToken(s, special=True, normalized=False)
                                for s, _ in sorted(self._special.items(), key=lambda kv: kv[1])])
        return tok

    @classmethod
    def _from_directory(cls, directory: Path, meta: dict[str, Any]) -> ByteBPETokenizer:
        data = read_json(directory / HF_TOKENIZER_FILE, "Hugging Face tokenizer file")
        model = data["model"]
        if model.get("type") != "BPE":
            raise TokenizerError(f"{directory / HF_TOKENIZER_FILE} holds a {model.get('type')} model, not BPE; "
                                 "it was not written by ByteBPETokenizer.save")
        path = directory / HF_TOKENIZER_FILE
        special = {t["content"]: int(t["id"]) for t in data.get("added_tokens", []) if t.get("special")}
        require_eos(special, path)
        try:
            vocab = {int(i): printable_to_bytes(s) for s, i in model["vocab"].items() if s not in special}
            merges = [_parse_merge(m, k) for k, m in enumerate(model["merges"])]
            merges_b = [(printable_to_bytes(a), printable_to_bytes(b)) for a, b in merges]
        except KeyError as e:
            if e.args and e.args[0] in ("vocab", "merges"):
                raise
            raise TokenizerError(f"{path} has a token with the character {e.args[0]!r}, outside GPT-2's byte "
                                 "alphabet; the file is corrupted, save the tokenizer again") from None
        return cls._from_vocab(vocab, merges_b, special)

    # ---- GPT-2 files ---------------------------------------------------------------------
    def save_gpt2_files(self, directory: str | Path) -> tuple[Path, Path]:
        """Write GPT-2's ``vocab.json`` (printable token → id, specials included) and
        ``merges.txt`` (``#version: 0.2`` then one ``left right`` per line).

        ``GPT2TokenizerFast.from_pretrained(directory)`` then encodes exactly like this
        tokenizer (for `EOS_TOKEN`; other special tokens need ``additional_special_tokens``).
        """
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        vocab = {bytes_to_printable(b): i for i, b in enumerate(self._id_bytes) if i not in self._special_by_id}
        vocab.update(self._special)
        vocab_path, merges_path = out / "vocab.json", out / "merges.txt"
        vocab_path.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        lines = ["#version: 0.2"] + [f"{bytes_to_printable(a)} {bytes_to_printable(b)}" for a, b in self._merges]
        merges_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return vocab_path, merges_path

    @classmethod
    def from_gpt2_files(
        cls,
        vocab_json: str | Path,
        merges_txt: str | Path,
        special_tokens: Sequence[str] = (EOS_TOKEN,),
    ) -> ByteBPETokenizer:
        """Load GPT-2's ``vocab.json`` + ``merges.txt`` (e.g. the released GPT-2 tokenizer).

        Keys of ``vocab.json`` are `bytes_to_unicode`-mapped strings; those equal to one of
        `special_tokens` are special. A special token missing from the file gets the next id
        (as ``transformers`` does). The ids are kept as in the file.
        """
        specials = check_special_tokens(special_tokens)
        vpath, mpath = Path(vocab_json), Path(merges_txt)
        raw = read_json(vpath, "GPT-2 vocab.json")
        if not isinstance(raw, dict):
            raise TokenizerError(f"{vpath} must hold a JSON object (token → id); it holds a {type(raw).__name__}")
        vocab: dict[int, bytes] = {}
        special: dict[str, int] = {}
        for key, i in raw.items():
            if isinstance(i, bool) or not isinstance(i, int) or i < 0:
                raise TokenizerError(f"{vpath}: token {key!r} has id {i!r}, not a non-negative integer")
            if key in specials:
                special[key] = i
                continue
            try:
                vocab[i] = printable_to_bytes(key)
            except KeyError:
                raise TokenizerError(
                    f"{vpath}: token {key!r} uses characters outside GPT-2's byte alphabet; "
                    "is this a byte-level BPE vocab.json?"
                ) from None
        next_id = max([*raw.values(), -1]) + 1
        for s in specials:
            if s not in special:
                special[s] = next_id
                next_id += 1
        if not mpath.is_file():
            raise TokenizerError(f"{mpath} does not exist; pass the merges.txt that belongs to {vpath}")
        try:
            lines = mpath.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise TokenizerError(f"cannot read {mpath} ({e}); pass a UTF-8 merges.txt") from None
        merges: list[tuple[bytes, bytes]] = []
        for k, line in enumerate(lines):
            if (k == 0 and line.startswith("#version")) or not line.strip():
                continue
            parts = line.split(" ")
            if len(parts) != 2:
                raise TokenizerError(f"{mpath} line {k + 1} is {line!r}; each line must be 'left right'")
            try:
                merges.append((printable_to_bytes(parts[0]), printable_to_bytes(parts[1])))
            except KeyError:
                raise TokenizerError(f"{mpath} line {k + 1} uses characters outside GPT-2's byte alphabet") from None
        return cls._from_vocab(vocab, merges, special)


def _parse_merge(m: Any, k: int) -> tuple[str, str]:
    # tokenizer.json stores merges as ["a", "b"] (current) or "a b" (older files).
    if isinstance(m, str):
        parts = m.split(" ")
    else:
        parts = list(m)
    if len(parts) != 2 or not all(isinstance(p, str) for p in parts):
        raise TokenizerError(f"merge #{k} in tokenizer.json is {m!r}, not a pair of tokens; the file is corrupted")
    return parts[0], parts[1]
