"""Data curation: where the training tokens come from, and what is thrown away on the way.

What a pretraining corpus goes through before packing, at a scale a laptop can run:

* **streaming and mixing** (`write_jsonl_shards`, `stream_documents`, `mix_streams`): local
  JSON-lines shards read lazily as a 🤗 `IterableDataset`, shuffled in a bounded buffer and
  interleaved by domain with fixed probabilities;
* **exact deduplication** (`normalize`, `exact_dedup`): one hash per normalised document;
* **near-duplicate detection** (`shingles`, `minhash_signature`, `lsh_candidates`,
  `candidate_probability`): MinHash signatures and LSH banding written out in NumPy, and
  the same pipeline through the production library `datasketch` (`datasketch_pairs`);
* **quality filtering** (`quality_signals`, `quality_flags`): heuristic signals in the
  spirit of published rule-based filters, with thresholds for this corpus;
* **contamination** (`word_ngrams`, `ngram_index`, `contamination_score`): n-gram overlap
  between evaluation documents and the training set;
* **mixtures** (`MixtureData`, `train_mixture`, `mixture_grid`): per-domain validation loss
  of small character models trained on several domain mixtures. The grid shipped in
  `course/resources/mixture_grid.json` is reproduced by
  ``python -m course.curation mixture-grid --out FILE``.

The three domains are all offline: the embedded Shakespeare (`load_corpus("default")`),
Python's documentation topics (`"pydoc"`) and Python source code of the standard library
(`stdlib_code_documents`), read from the running interpreter's own files.

Corpora with *planted* defects (`plant_near_duplicates`, `plant_junk`) come with their
ground truth, so every detector here is scored by precision and recall, not by eye.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import re
import sys
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from course.errors import ConfigError, CorpusError
from course.shipped import RESOURCES, load_document

__all__ = [
    "CODE_MODULES",
    "DOMAINS",
    "MERSENNE_31",
    "QUALITY_RULES",
    "MixtureData",
    "candidate_probability",
    "chunk_documents",
    "common_prefix_length",
    "contamination_score",
    "datasketch_pairs",
    "domain_documents",
    "exact_dedup",
    "greedy_continuation",
    "jaccard",
    "load_mixture_grid",
    "lsh_candidates",
    "lsh_threshold",
    "make_permutations",
    "minhash_signature",
    "minhash_signatures",
    "mix_streams",
    "mixture_blocks",
    "mixture_grid",
    "mixture_points",
    "ngram_index",
    "normalize",
    "plant_junk",
    "plant_near_duplicates",
    "precision_recall",
    "quality_flags",
    "quality_signals",
    "shingle_hash",
    "shingles",
    "signature_similarity",
    "stdlib_code_documents",
    "stream_documents",
    "text_nll",
    "train_mixture",
    "word_ngrams",
    "write_jsonl_shards",
]

#: The domains of the mixture experiments, in a fixed order (weights are given in it).
DOMAINS = ("shakespeare", "pydoc", "code")
#: Standard-library modules whose source is the "code" domain: pure Python, present in every
#: CPython from 3.10 on. Their text differs a little between Python versions.
CODE_MODULES = (
    "argparse", "ast", "base64", "bisect", "calendar", "csv", "dataclasses", "difflib",
    "enum", "fractions", "functools", "gettext", "heapq", "inspect", "ipaddress", "locale",
    "pprint", "queue", "random", "shlex", "shutil", "statistics", "string", "tempfile",
    "textwrap", "tokenize", "typing", "uuid",
)
#: The prime of the by-hand MinHash: 2**31 - 1. Hashes are 32-bit, so a * x + b < 2**63 and
#: NumPy's int64 computes every permutation exactly.
MERSENNE_31 = (1 << 31) - 1
GRID_PATH = RESOURCES / "mixture_grid.json"


# ----------------------------------------------------------------------------- domains


def chunk_documents(docs: Iterable[str], size: int) -> list[str]:
    """Cut documents into pieces of at most `size` characters, at line boundaries.

    Equal-sized documents make "a fraction of the documents" and "a fraction of the
    characters" the same thing, which is what mixture weights are meant to be. A single
    line longer than `size` is cut hard. Empty pieces are dropped.
    """
    if size < 1:
        raise ConfigError(f"chunk size must be >= 1 character, got {size}")
    out: list[str] = []
    for doc in docs:
        piece = ""
        for line in doc.splitlines(keepends=True):
            while len(line) > size:
                if piece.strip():
                    out.append(piece.rstrip("\n"))
                out.append(line[:size])
                piece, line = "", line[size:]
            if len(piece) + len(line) > size:
                if piece.strip():
                    out.append(piece.rstrip("\n"))
                piece = ""
            piece += line
        if piece.strip():
            out.append(piece.rstrip("\n"))
    return [p for p in out if p.strip()]


def stdlib_code_documents(modules: Sequence[str] = CODE_MODULES) -> list[str]:
    """The source of standard-library modules, one document per module (no network, no pip).

    Read from the interpreter running this code, so it is always there; a module that
    cannot be found as a source file is skipped. Non-ASCII characters are replaced by "?"
    so that the code domain adds no rare characters to a character vocabulary.
    """
    docs = []
    for name in modules:
        spec = importlib.util.find_spec(name)
        origin = getattr(spec, "origin", None)
        if not origin or not origin.endswith(".py"):
            continue
        text = Path(origin).read_text(encoding="utf-8")
        docs.append(text.encode("ascii", "replace").decode("ascii"))
    if not docs:
        raise CorpusError("no standard-library source file was found (a Python without its .py "
                          "files?); the 'code' domain needs them")
    return docs


def domain_documents(domain: str, *, chunk_chars: int = 1000) -> list[str]:
    """All documents of one domain of `DOMAINS`, cut into chunks of `chunk_chars` characters."""
    from course.data import load_corpus

    if domain == "shakespeare":
        corpus = load_corpus("default")
        docs = corpus.train + corpus.val
    elif domain == "pydoc":
        corpus = load_corpus("pydoc")
        docs = corpus.train + corpus.val
    elif domain == "code":
        docs = stdlib_code_documents()
    else:
        raise ConfigError(f"unknown domain {domain!r}; choose one of {', '.join(DOMAINS)}")
    return chunk_documents(docs, chunk_chars)


# --------------------------------------------------------------------------- streaming


def write_jsonl_shards(docs: Sequence[str], folder: str | Path, n_shards: int,
                       extra: Mapping[str, Any] | None = None) -> list[Path]:
    """Write `docs` as `n_shards` JSON-lines files `shard-00000.jsonl`, ... (round robin).

    Each line is `{"text": doc, "id": i, **extra}`. This is the on-disk layout of a web-scale
    corpus in miniature: many files that no single process needs to hold in memory.
    """
    if n_shards < 1:
        raise ConfigError(f"n_shards must be >= 1, got {n_shards}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"shard-{k:05d}.jsonl" for k in range(n_shards)]
    handles = [p.open("w", encoding="utf-8") for p in paths]
    try:
        for i, doc in enumerate(docs):
            row = {"text": doc, "id": i, **(extra or {})}
            handles[i % n_shards].write(json.dumps(row, ensure_ascii=False) + "\n")
    finally:
        for h in handles:
            h.close()
    return paths


def stream_documents(files: Sequence[str | Path], *, shuffle_buffer: int | None = None,
                     seed: int = 0):  # noqa: ANN201  (a datasets.IterableDataset)
    """JSON-lines files as a streaming 🤗 `IterableDataset` (read lazily, row by row).

    `shuffle_buffer`: shuffle the shard order and, within a buffer of that many rows,
    the rows (`IterableDataset.shuffle`); None keeps the file order. No hub is contacted:
    the "json" builder is part of `datasets`.
    """
    import datasets

    from course.data import quiet_datasets

    if not files:
        raise ConfigError("stream_documents needs at least one file")
    missing = [str(f) for f in files if not Path(f).is_file()]
    if missing:
        raise CorpusError(f"shard files not found: {missing[:3]}; write them first "
                          "(write_jsonl_shards)")
    with quiet_datasets():
        ds = datasets.load_dataset("json", data_files=[str(f) for f in files], split="train",
                                   streaming=True)
    if shuffle_buffer is not None:
        if shuffle_buffer < 1:
            raise ConfigError(f"shuffle_buffer must be >= 1 (or None), got {shuffle_buffer}")
        ds = ds.shuffle(seed=seed, buffer_size=shuffle_buffer)
    return ds


def mix_streams(streams: Mapping[str, Any], probabilities: Mapping[str, float], *, seed: int = 0,
                stopping_strategy: str = "first_exhausted"):  # noqa: ANN201
    """Interleave named streams with `datasets.interleave_datasets(probabilities=..., seed=...)`.

    Each row gets a `domain` column with its stream's name. At every step one stream is
    drawn with its probability and its next row is taken; "first_exhausted" stops when any
    stream runs dry (the proportions then hold until the end).
    """
    import datasets

    names = list(streams)
    if sorted(names) != sorted(probabilities):
        raise ConfigError(f"probabilities must name exactly the streams {names}, got "
                          f"{sorted(probabilities)}")
    p = [float(probabilities[n]) for n in names]
    if any(x < 0 for x in p) or not math.isclose(sum(p), 1.0, abs_tol=1e-6):
        raise ConfigError(f"probabilities must be >= 0 and sum to 1, got {dict(zip(names, p, strict=True))}")
    tagged = [streams[n].map(lambda row, n=n: {"domain": n}) for n in names]
    return datasets.interleave_datasets(tagged, probabilities=p, seed=seed,
                                        stopping_strategy=stopping_strategy)


# ----------------------------------------------------------------------- exact dedup


def normalize(text: str) -> str:
    """The form two documents must share to count as exact duplicates.

    Unicode NFKC (compatibility forms: "ﬁ" -> "fi", full-width letters, non-breaking spaces),
    then `casefold` (caseless matching; "ß" -> "ss"), then every run of whitespace becomes
    one space and the ends are stripped.
    """
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def exact_dedup(docs: Sequence[str], normalize: Callable[[str], str] = normalize) -> list[int]:
    """Indices of the documents to keep: the first of each group with the same normalised text.

    One SHA-1 digest per normalised document; a set of digests seen so far. Memory is 20
    bytes per distinct document whatever the document's size, which is why pipelines
    hash rather than keep the texts.
    """
    seen: set[bytes] = set()
    keep = []
    for i, doc in enumerate(docs):
        digest = hashlib.sha1(normalize(doc).encode("utf-8")).digest()
        if digest not in seen:
            seen.add(digest)
            keep.append(i)
    return keep


# ---------------------------------------------------------------------- near duplicates


def shingles(text: str, n: int = 3) -> set[str]:
    """The set of word n-grams of the normalised text, each joined by single spaces.

    A text of fewer than n words (but not empty) is one shingle: itself.
    """
    if n < 1:
        raise ConfigError(f"shingle size n must be >= 1, got {n}")
    words = normalize(text).split()
    if len(words) < n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: set[Any], b: set[Any]) -> float:
    """|a ∩ b| / |a ∪ b| (1.0 for two empty sets)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def shingle_hash(shingle: str) -> int:
    """A 32-bit hash of a shingle: the first 4 bytes of its SHA-1, little endian (the same
    function `datasketch` uses by default, so both pipelines hash shingles alike)."""
    return int.from_bytes(hashlib.sha1(shingle.encode("utf-8")).digest()[:4], "little")


def make_permutations(num_perm: int, seed: int = 0, prime: int = MERSENNE_31) -> tuple[list[int], list[int]]:
    """`num_perm` random hash functions h_i(x) = (a_i x + b_i) mod prime: lists a (in [1, p)) and b."""
    if num_perm < 1:
        raise ConfigError(f"num_perm must be >= 1, got {num_perm}")
    rng = np.random.default_rng(seed)
    a = rng.integers(1, prime, size=num_perm, dtype=np.int64)
    b = rng.integers(0, prime, size=num_perm, dtype=np.int64)
    return [int(x) for x in a], [int(x) for x in b]


def minhash_signature(shingle_hashes: Sequence[int], a: Sequence[int], b: Sequence[int],
                      prime: int = MERSENNE_31) -> list[int]:
    """The MinHash signature of one document: for each i, min over x of (a[i] x + b[i]) mod prime.

    Two documents agree on entry i with probability equal to their Jaccard similarity:
    each h_i orders the shingles at random, and the minimum of the union falls in the
    intersection with probability |A ∩ B| / |A ∪ B|.
    """
    if not shingle_hashes:
        raise ConfigError("a MinHash signature needs at least one shingle; drop empty documents first")
    x = np.asarray(shingle_hashes, dtype=np.int64)  # (S,)
    a_, b_ = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)  # (P,)
    if prime > MERSENNE_31 or int(x.max()) >= 1 << 32:
        # Python ints: no overflow whatever the sizes (slow, exact)
        return [min((ai * int(v) + bi) % prime for v in shingle_hashes)
            for ai, bi in zip(a, b, strict=True)]
    return ((a_[:, None] * x[None, :] + b_[:, None]) % prime).min(axis=1).tolist()  # (P,)


def minhash_signatures(texts: Sequence[str], num_perm: int = 128, *, n: int = 3, seed: int = 0) -> np.ndarray:
    """(N, num_perm) int64 signatures of `texts` (shingles of n words, `shingle_hash`)."""
    a, b = make_permutations(num_perm, seed)
    rows = []
    for text in texts:
        hashes = [shingle_hash(s) for s in sorted(shingles(text, n))]
        rows.append(minhash_signature(hashes, a, b))
    return np.asarray(rows, dtype=np.int64).reshape(len(texts), num_perm)


def signature_similarity(sig_a: Sequence[int], sig_b: Sequence[int]) -> float:
    """The MinHash estimate of the Jaccard similarity: the fraction of equal entries."""
    x, y = np.asarray(sig_a), np.asarray(sig_b)
    if x.shape != y.shape:
        raise ConfigError(f"signatures of different lengths: {x.shape} vs {y.shape}")
    return float((x == y).mean())


def lsh_candidates(signatures: Sequence[Sequence[int]], bands: int, rows: int) -> set[tuple[int, int]]:
    """Pairs (i, j), i < j, whose signatures are equal on at least one band.

    Band k is the slice [k * rows, (k + 1) * rows) of the signature; documents are bucketed
    by each band's exact values, and every two documents sharing a bucket are a candidate.
    The cost is one dictionary insert per document and band, not one comparison per pair.
    """
    sigs = np.asarray(signatures)
    if sigs.ndim != 2 or sigs.shape[1] < bands * rows:
        raise ConfigError(f"signatures must be (N, >= bands*rows = {bands * rows}); got shape "
                          f"{sigs.shape}")
    pairs: set[tuple[int, int]] = set()
    for k in range(bands):
        buckets: dict[bytes, list[int]] = {}
        band = np.ascontiguousarray(sigs[:, k * rows:(k + 1) * rows])
        for i in range(len(sigs)):
            buckets.setdefault(band[i].tobytes(), []).append(i)
        for members in buckets.values():
            pairs.update(combinations(members, 2))
    return pairs


def candidate_probability(s: float | np.ndarray, bands: int, rows: int) -> float | np.ndarray:
    """P(two documents of Jaccard similarity s become a candidate) = 1 - (1 - s**r)**b.

    One band matches with probability s**r (all its r entries agree); the pair is missed
    only if all b bands fail.
    """
    return 1.0 - (1.0 - np.asarray(s, dtype=float) ** rows) ** bands


def lsh_threshold(bands: int, rows: int) -> float:
    """The similarity where the S-curve is steepest, approximately (1/b)**(1/r)."""
    return (1.0 / bands) ** (1.0 / rows)


def datasketch_pairs(texts: Sequence[str], *, num_perm: int = 128, bands: int, rows: int,
                     n: int = 3, seed: int = 1) -> tuple[set[tuple[int, int]], list[Any]]:
    """The same pipeline with the production library: (LSH candidate pairs, MinHash objects).

    `datasketch.MinHash` over the same shingles, and `MinHashLSH(params=(bands, rows))`, so
    the banding is the one chosen by hand (not the library's own optimisation).
    """
    from datasketch import MinHash, MinHashLSH

    if bands * rows > num_perm:
        raise ConfigError(f"bands * rows = {bands * rows} exceeds num_perm = {num_perm}")
    lsh = MinHashLSH(num_perm=num_perm, params=(bands, rows))
    # bulk: one set of permutations for every document (building them is the slow part)
    hashes = MinHash.bulk([[s.encode("utf-8") for s in sorted(shingles(t, n))] for t in texts],
                          num_perm=num_perm, seed=seed)
    for i, m in enumerate(hashes):
        lsh.insert(i, m)
    pairs = {(min(i, j), max(i, j)) for i, m in enumerate(hashes) for j in lsh.query(m) if j != i}
    return pairs, hashes


def precision_recall(found: set[Any], truth: set[Any]) -> tuple[float, float]:
    """(precision, recall) of `found` against `truth` (1.0 where the denominator is empty)."""
    hit = len(found & truth)
    return (hit / len(found) if found else 1.0), (hit / len(truth) if truth else 1.0)


_FILLER = ("and", "the", "of", "to", "a", "in", "that", "is", "with", "for", "it", "as")


def plant_near_duplicates(texts: Sequence[str], *, n_sources: int, copies: int = 2,
                          edit_rates: Sequence[float] = (0.01, 0.03, 0.06, 0.1),
                          seed: int = 0) -> tuple[list[str], set[tuple[int, int]], list[int]]:
    """A corpus with planted near-duplicates and its truth.

    The first `n_sources` texts each get `copies` edited copies: every word is, with
    probability `rate` (cycling through `edit_rates`), deleted, replaced by a common word or
    followed by one. Copies are inserted at random places. Returns (documents, the set of
    true pairs (i, j), i < j: any two members of one group, the cluster id of each
    document (-1 for unique ones)).
    """
    if not 0 < n_sources <= len(texts):
        raise ConfigError(f"n_sources must be in [1, {len(texts)}], got {n_sources}")
    rng = np.random.default_rng(seed)
    items: list[tuple[str, int]] = [(t, (k if k < n_sources else -1)) for k, t in enumerate(texts)]
    r = 0
    for k in range(n_sources):
        for _ in range(copies):
            rate = edit_rates[r % len(edit_rates)]
            r += 1
            out = []
            for w in texts[k].split(" "):
                u = rng.random()
                if u < rate / 3:
                    continue  # deleted
                if u < 2 * rate / 3:
                    out.append(_FILLER[int(rng.integers(len(_FILLER)))])  # replaced
                    continue
                out.append(w)
                if u < rate:
                    out.append(_FILLER[int(rng.integers(len(_FILLER)))])  # inserted
            items.append((" ".join(out), k))
    order = rng.permutation(len(items))
    docs = [items[i][0] for i in order]
    cluster = [items[i][1] for i in order]
    truth = {(i, j) for i, j in combinations(range(len(docs)), 2)
             if cluster[i] >= 0 and cluster[i] == cluster[j]}
    return docs, truth, cluster


# ------------------------------------------------------------------------ quality


#: What `quality_signals` counts as symbols: the hash and the ellipsis of the published
#: rules, plus the braces and bars of markup, menus and data dumps.
SYMBOLS = ("#", "...", "…", "{", "}", "|")

#: name -> (signal, lowest allowed, highest allowed); a document outside any range is flagged.
QUALITY_RULES: dict[str, tuple[str, float, float]] = {
    "too short": ("n_words", 50, math.inf),
    "odd word length": ("mean_word_length", 3.0, 10.0),
    "symbol heavy": ("symbol_ratio", 0.0, 0.1),
    # speaker names repeat inside a scene: 0.4, where web text would use about 0.3
    "repeated lines": ("duplicate_line_fraction", 0.0, 0.4),
    "few alphabetic words": ("alpha_word_fraction", 0.7, 1.0),
}


def quality_signals(text: str) -> dict[str, float]:
    """Heuristic quality signals of one document (no model, one pass over the text).

    * `n_words`: words = `text.split()`;
    * `mean_word_length`: their mean length in characters (0.0 without words);
    * `symbol_ratio`: occurrences of the `SYMBOLS` strings per word;
    * `duplicate_line_fraction`: among the non-blank lines (stripped), the fraction that
      repeat an earlier line (0.0 without lines);
    * `alpha_word_fraction`: the fraction of words holding at least one alphabetic
      character (0.0 without words).
    """
    words = text.split()
    n = len(words)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return {
        "n_words": float(n),
        "mean_word_length": sum(len(w) for w in words) / n if n else 0.0,
        "symbol_ratio": sum(text.count(s) for s in SYMBOLS) / max(n, 1),
        "duplicate_line_fraction": 1.0 - len(set(lines)) / len(lines) if lines else 0.0,
        "alpha_word_fraction": sum(any(c.isalpha() for c in w) for w in words) / n if n else 0.0,
    }


def quality_flags(signals: Mapping[str, float],
                  rules: Mapping[str, tuple[str, float, float]] = QUALITY_RULES) -> list[str]:
    """The names of the rules a document breaks (empty: it is kept)."""
    missing = sorted({s for s, _, _ in rules.values()} - set(signals))
    if missing:
        raise ConfigError(f"signals {missing} are missing; compute them with quality_signals")
    return [name for name, (sig, lo, hi) in rules.items() if not lo <= signals[sig] <= hi]


_MENU = ("Home", "About us", "Contact", "Blog", "Shop", "Privacy policy", "Terms of use",
         "Cookie settings", "Sign in", "Register", "FAQ", "Careers", "Newsletter", "Sitemap")
_KEYS = "qwertyuiopasdfghjklzxcvbnm"


def _boilerplate(rng: np.random.Generator) -> str:
    picks = [str(x) for x in rng.choice(_MENU, size=int(rng.integers(5, 9)), replace=False)]
    lines = [" | ".join(picks), "We use cookies to improve your experience. Accept all cookies?",
             f"(c) {int(rng.integers(2005, 2025))} Example Media Ltd. All rights reserved.",
             " | ".join(reversed(picks))]
    return "\n".join(lines)


def _keyboard_mash(rng: np.random.Generator) -> str:
    words = []
    for _ in range(int(rng.integers(60, 120))):
        start = int(rng.integers(0, len(_KEYS) - 4))
        run = _KEYS[start:start + int(rng.integers(3, 9))]
        words.append(run * int(rng.integers(2, 4)))
    return " ".join(words)


def _repeated_lines(rng: np.random.Generator, good: str) -> str:
    lines = [line for line in good.splitlines() if line.strip()][:3] or [good[:60]]
    return "\n".join(lines[int(rng.integers(len(lines)))] for _ in range(int(rng.integers(25, 45))))


def _code_dump(rng: np.random.Generator) -> str:
    rows = []
    for i in range(int(rng.integers(15, 30))):
        if rng.random() < 0.5:
            vals = ",".join(f"{v:.3f}" for v in rng.random(4))
            rows.append(f'{{"id":{i},"v":[{vals}],"ok":{str(bool(rng.random() < 0.5)).lower()}}}')
        else:
            rows.append(" ".join(f"{int(v):08x}" for v in rng.integers(0, 2**32, size=6)))
    return "\n".join(rows)


def plant_junk(good: Sequence[str], *, n_per_kind: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """`good` documents mixed with `n_per_kind` planted junk documents of each kind.

    Kinds: "boilerplate" (menus, cookie banners, copyright lines), "keyboard mash",
    "repeated lines" (a few lines of a good document, repeated), "code dump" (JSON records and
    hex words). Returns (documents, label of each: "good" or the junk kind), shuffled.
    """
    rng = np.random.default_rng(seed)
    items = [(d, "good") for d in good]
    for _ in range(n_per_kind):
        items.append((_boilerplate(rng), "boilerplate"))
        items.append((_keyboard_mash(rng), "keyboard mash"))
        items.append((_repeated_lines(rng, good[int(rng.integers(len(good)))]), "repeated lines"))
        items.append((_code_dump(rng), "code dump"))
    order = rng.permutation(len(items))
    return [items[i][0] for i in order], [items[i][1] for i in order]


# --------------------------------------------------------------------- contamination


_WORD = re.compile(r"\w+")


def word_ngrams(text: str, n: int) -> list[tuple[str, ...]]:
    """Every word n-gram of `text`, in order: words are the runs of `\\w` in the lowercased
    text (punctuation and case do not matter, as in the GPT-3 contamination study)."""
    words = _WORD.findall(text.lower())
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def ngram_index(docs: Iterable[str], n: int) -> set[tuple[str, ...]]:
    """The set of every word n-gram of the documents (what a training set "contains")."""
    index: set[tuple[str, ...]] = set()
    for doc in docs:
        index.update(word_ngrams(doc, n))
    return index


def contamination_score(doc: str, train_ngrams: set[tuple[str, ...]], n: int) -> float:
    """The fraction of `doc`'s word n-grams (counted with repetition) found in `train_ngrams`;
    0.0 for a document with fewer than n words."""
    grams = word_ngrams(doc, n)
    if not grams:
        return 0.0
    return sum(g in train_ngrams for g in grams) / len(grams)


# ------------------------------------------------------------------- memorisation


def text_nll(model: Any, tokenizer: Any, text: str) -> float:
    """Mean NLL (nats per token) of `text` read as a fresh document (after an EOS), with a
    sliding window when it is longer than the model's context."""
    from course.evaluate import strided_nll

    ids = [tokenizer.eos_id, *tokenizer.encode(text)]
    return strided_nll(model, ids, stride=max(1, model.config.block_size // 2)).mean_nll


def greedy_continuation(model: Any, tokenizer: Any, prefix: str, n_tokens: int) -> str:
    """What the model writes after `prefix` (as the start of a document), greedily."""
    from course.sample import generate

    ids = [tokenizer.eos_id, *tokenizer.encode(prefix)]
    out = generate(model, ids, n_tokens, greedy=True)
    return tokenizer.decode(out[0, len(ids):].tolist())


def common_prefix_length(a: str, b: str) -> int:
    """How many leading characters two strings share (the verbatim part of a continuation)."""
    k = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        k += 1
    return k


# ------------------------------------------------------------------------ mixtures


@dataclass
class MixtureData:
    """Per-domain training and validation blocks of one character tokenizer.

    Build it with `MixtureData.build()`; every mixture of the grid trains on blocks drawn
    from `train` and is scored on every domain's `val` blocks.
    """

    tokenizer: Any
    train: dict[str, Any]  # domain -> (N_d, T) int64 tensor
    val: dict[str, Any]  # domain -> (M, T) int64 tensor
    block_size: int
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, *, chars_per_domain: int = 150_000, val_chars_per_domain: int = 16_384,
              chunk_chars: int = 1000, block_size: int = 64, seed: int = 0) -> MixtureData:
        """Each domain cut into `chunk_chars` documents, a seeded split by document into
        about `chars_per_domain` training and `val_chars_per_domain` validation characters,
        one `CharTokenizer` over all of them, packed into blocks of `block_size`."""
        from course.packing import pack_documents
        from course.tokenizer import CharTokenizer

        rng = np.random.default_rng(seed)
        splits: dict[str, tuple[list[str], list[str]]] = {}
        for d in DOMAINS:
            docs = domain_documents(d, chunk_chars=chunk_chars)
            order = rng.permutation(len(docs))
            n_val = max(1, math.ceil(val_chars_per_domain / chunk_chars))
            n_train = max(1, math.ceil(chars_per_domain / chunk_chars))
            if n_val + n_train > len(docs):
                raise CorpusError(f"domain {d!r} has {len(docs)} chunks, fewer than the "
                                  f"{n_val + n_train} asked for; lower chars_per_domain")
            splits[d] = ([docs[i] for i in order[n_val:n_val + n_train]],
                         [docs[i] for i in order[:n_val]])
        tok = CharTokenizer().train([t for tr, va in splits.values() for t in tr + va])
        train, val = {}, {}
        for d, (tr, va) in splits.items():
            train[d] = pack_documents(tok.encode_batch(tr), block_size, tok.eos_id).input_ids
            val[d] = pack_documents(tok.encode_batch(va), block_size, tok.eos_id).input_ids
        info = {"chars_per_domain": chars_per_domain, "val_chars_per_domain": val_chars_per_domain,
                "chunk_chars": chunk_chars, "block_size": block_size, "seed": seed,
                "vocab_size": tok.vocab_size}
        return cls(tok, train, val, block_size, info)


def mixture_blocks(domain_blocks: Mapping[str, Any], weights: Mapping[str, float], n_blocks: int,
                   seed: int = 0):  # noqa: ANN201  (a torch.Tensor)
    """(n_blocks, T) training blocks: round(w_d * n_blocks) drawn from domain d (without
    replacement while it lasts), shuffled together. Weights need not sum to 1."""
    import torch

    total = sum(float(weights.get(d, 0.0)) for d in domain_blocks)
    if total <= 0 or any(float(w) < 0 for w in weights.values()):
        raise ConfigError(f"mixture weights must be >= 0 with a positive sum, got {dict(weights)}")
    unknown = sorted(set(weights) - set(domain_blocks))
    if unknown:
        raise ConfigError(f"unknown domains in the weights: {unknown}; known: {list(domain_blocks)}")
    g = torch.Generator().manual_seed(seed)
    counts = {d: round(float(weights.get(d, 0.0)) / total * n_blocks) for d in domain_blocks}
    parts = []
    for d, blocks in domain_blocks.items():
        k = counts[d]
        if k == 0:
            continue
        reps = math.ceil(k / len(blocks))
        idx = torch.cat([torch.randperm(len(blocks), generator=g) for _ in range(reps)])[:k]
        parts.append(blocks[idx])
    out = torch.cat(parts)
    return out[torch.randperm(len(out), generator=g)]


#: The small model and budget of every mixture run (a few seconds on a laptop CPU).
MIXTURE_MODEL = {"n_layer": 2, "n_head": 4, "n_embd": 32}
MIXTURE_TRAIN = {"steps": 200, "batch_size": 16, "lr": 6e-3, "seed": 0}


def train_mixture(data: MixtureData, weights: Mapping[str, float], *, steps: int | None = None,
                  seed: int | None = None) -> dict[str, float]:
    """Train one small char GPT on a mixture and return its validation loss per domain.

    Always on the CPU, in float32, on one thread, with the fixed `MIXTURE_MODEL` /
    `MIXTURE_TRAIN` settings, so that a run in a notebook reproduces the shipped grid's
    point (more threads would change the order of float sums, hence the last digits).
    """
    import torch

    from course.evaluate import evaluate_nll
    from course.model import GPT, GPTConfig
    from course.train import TrainConfig, train

    steps = MIXTURE_TRAIN["steps"] if steps is None else steps
    seed = MIXTURE_TRAIN["seed"] if seed is None else seed
    bs = MIXTURE_TRAIN["batch_size"]
    blocks = mixture_blocks(data.train, weights, steps * bs, seed=seed)
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=data.tokenizer.vocab_size, block_size=data.block_size,
                          **MIXTURE_MODEL))
    cfg = TrainConfig(max_steps=steps, batch_size=bs, lr=MIXTURE_TRAIN["lr"],
                      warmup_steps=steps // 10, eval_interval=steps, compile=False, seed=seed,
                      device="cpu", dtype="float32")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(model, blocks, None, cfg, progress=False)
        return {d: round(evaluate_nll(model, v, device="cpu").mean_nll, 4) for d, v in data.val.items()}
    finally:
        torch.set_num_threads(threads)


def mixture_points(step: float = 0.25) -> list[dict[str, float]]:
    """Every mixture of the three domains whose weights are multiples of `step` (summing to 1)."""
    k = round(1 / step)
    if not math.isclose(k * step, 1.0) or k < 1:
        raise ConfigError(f"step must divide 1 (0.5, 0.25, 0.2, ...), got {step}")
    return [{"shakespeare": i / k, "pydoc": j / k, "code": (k - i - j) / k}
            for i in range(k + 1) for j in range(k + 1 - i)]


def mixture_grid(step: float = 0.25, *, out: str | Path | None = None,
                 data: MixtureData | None = None, progress: bool = True) -> dict[str, Any]:
    """Train one model per mixture of `mixture_points(step)`; the per-domain losses as a dict
    (and a JSON file at `out`). Deterministic on a CPU: same Python, corpora and torch give
    the same numbers."""
    import torch
    from tqdm.auto import tqdm

    data = data or MixtureData.build()
    rows = []
    for w in tqdm(mixture_points(step), desc="mixtures", disable=not progress):
        rows.append({"weights": w, "val_loss": train_mixture(data, w)})
    grid = {
        "domains": list(DOMAINS), "step": step, "data": data.info, "model": MIXTURE_MODEL,
        "train": MIXTURE_TRAIN,
        "environment": {"python": sys.version.split()[0], "torch": torch.__version__},
        "command": f"python -m course.curation mixture-grid --step {step} --out FILE",
        "rows": rows,
    }
    if out is not None:
        from course.atomic import atomic_write_text

        atomic_write_text(Path(out), json.dumps(grid, indent=1) + "\n")
    return grid


def load_mixture_grid(path: str | Path | None = None) -> dict[str, Any]:
    """The precomputed grid shipped with the package (or the one at `path`)."""
    return load_document(GRID_PATH if path is None else path, what="mixture grid", key="rows",
                         command="python -m course.curation mixture-grid", error=CorpusError)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m course.curation mixture-grid [--step S] --out FILE``."""
    import argparse

    from course.errors import CourseError

    parser = argparse.ArgumentParser(prog="python -m course.curation",
                                     description="data-curation experiments of lesson 10")
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("mixture-grid", help="per-domain val loss of models trained on mixtures")
    g.add_argument("--step", type=float, default=0.25, help="weight step (default: %(default)s)")
    g.add_argument("--out", required=True, help="JSON file to write")
    args = parser.parse_args(argv)
    try:
        grid = mixture_grid(args.step, out=args.out)
    except CourseError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{'shakespeare':>12}{'pydoc':>8}{'code':>8} | val loss: " + "  ".join(DOMAINS))
    for row in grid["rows"]:
        w, loss = row["weights"], row["val_loss"]
        print("".join(f"{w[d]:>{12 if d == 'shakespeare' else 8}.2f}" for d in DOMAINS) + " | "
              + "  ".join(f"{loss[d]:.3f}" for d in DOMAINS))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
