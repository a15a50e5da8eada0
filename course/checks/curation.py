"""Checks for lesson 10 (data): normalisation, exact dedup, MinHash, LSH banding, quality
signals and n-gram contamination.

The references are `course.curation`'s own functions. When an answer is wrong, the usual
mistakes are recomputed on the same input (lower() for casefold, NFC for NFKC, max for
min, all bands for any band, distinct n-grams for all of them, ...) so that the message
names the mistake, not only the values. Every case is small enough to read in a message.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from itertools import combinations
from typing import Any

from course.checks._core import (
    CheckFailed,
    call,
    exercise,
    expect_contract,
    expect_equal,
    first_match,
    show,
)


def _desc(**kwargs: Any) -> str:
    parts = [f"{k}={show(v)}" for k, v in kwargs.items()]
    return ", ".join(parts)


def _eq(a: Any, b: Any) -> bool:
    return a == b


# ------------------------------------------------------------------------ normalize


def _ws(text: str) -> str:
    return " ".join(text.split())


_NORMALIZE_CASES = [
    "Hello   World",
    "  leading and trailing spaces \n",
    "Tabs\tand\nnew lines\r\n too",
    "ﬁne ﬂour",  # ligatures: NFKC spells them out
    "ＦＵＬＬ-width Ｌｅｔｔｅｒｓ",  # full-width forms
    "non\u00a0breaking\u2009spaces",  # NBSP and a thin space
    "Straße",  # casefold: ß -> ss
    "cafe\u0301 vs café",  # decomposed and composed é: NFKC composes both
    "ΣΊΣΥΦΟΣ",  # casefold gives σ for every sigma, lower() a final ς
    "x² + ½",
    "",
    "ONE\u3000TWO",  # ideographic space
]


@exercise("normalize_text", hints=(
    "Three steps, in this order: Unicode normalisation with the compatibility form (it "
    "turns ligatures, full-width letters and odd spaces into their plain equivalents), "
    "caseless matching, then whitespace: every run of whitespace becomes one space, and "
    "nothing is left at either end.",
    "unicodedata.normalize takes the form's name as its first argument (the one with K for "
    "compatibility and C for composed). str has a method made for caseless comparison that "
    "goes further than lower(). str.split() with no argument splits on any run of whitespace "
    "and drops empty pieces.",
))
def normalize_text(fn: Callable[..., Any]) -> int:
    """`fn(text) -> str` against `course.curation.normalize`."""
    from course.curation import normalize

    name = "normalize_text"
    for text in _NORMALIZE_CASES:
        desc = f"text={text!r}"
        got = call(name, fn, text, inputs_desc=desc)
        expect_contract(name, desc, str, got, hint="return the normalised text as a str")
        expected = normalize(text)
        if got == expected:
            continue
        expect_equal(name, desc, expected, got, hint=_normalize_mistake(text, got) or
                     "NFKC, then casefold, then one space for every run of whitespace, stripped")
    return len(_NORMALIZE_CASES)


def _normalize_mistake(text: str, got: str) -> str | None:
    return first_match(got, [
        ("apply the Unicode normalisation NFKC first: it turns ligatures (ﬁ), full-width "
         "letters, ², ½ and special spaces into plain characters (NFC only composes "
         "accents and leaves those as they are)", lambda: _ws(text.casefold())),
        ("apply the Unicode normalisation NFKC first: it turns ligatures (ﬁ), full-width "
         "letters, ², ½ and special spaces into plain characters (NFC only composes "
         "accents and leaves those as they are)",
         lambda: _ws(unicodedata.normalize("NFC", text).casefold())),
        ("NFKD leaves accents as separate combining characters (é becomes e + ´), so two "
         "spellings of one word still differ from the composed form; use NFKC",
         lambda: _ws(unicodedata.normalize("NFKD", text).casefold())),
        ("lower() is not caseless matching: it keeps ß and gives a final ς; casefold() "
         "maps both (ß -> ss, ς -> σ)",
         lambda: _ws(unicodedata.normalize("NFKC", text).lower())),
        ("the case is not folded: 'Hello' and 'hello' must normalise alike",
         lambda: _ws(unicodedata.normalize("NFKC", text))),
        ("runs of whitespace are not collapsed: split(' ') keeps empty pieces and tabs and "
         "newlines; split() with no argument splits on any run of whitespace",
         lambda: " ".join(unicodedata.normalize("NFKC", text).casefold().split(" ")).strip()),
        ("the ends are not stripped: no space at the start or the end",
         lambda: re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).casefold())),
    ], _eq)


# ---------------------------------------------------------------------- exact dedup


def _identity(text: str) -> str:
    return text


def _dedup_cases() -> list[tuple[list[str], Callable[[str], str], str]]:
    from course.curation import normalize

    return [
        (["a cat", "A  Cat", "a dog", "a cat "], normalize, "normalize"),
        (["one", "two", "three"], normalize, "normalize"),
        (["x", "x", "x", "y", "x"], normalize, "normalize"),
        (["ﬁsh", "FISH", "fish\n", "Fish!"], normalize, "normalize"),
        ([], normalize, "normalize"),
        (["Same", "same", "SAME", "same"], _identity, "(lambda text: text)"),
        (["b", "a", "b ", "a", "c", "B"], normalize, "normalize"),
    ]


@exercise("exact_dedup", hints=(
    "Walk through the documents in order, remembering what you have already seen: keep the "
    "index of a document whose normalised form is new, skip one whose form was seen before. "
    "Normalise with the function you are given (the check passes others too).",
    "A set of hashes is the memory: hashlib.sha1(normalize(doc).encode('utf-8')).hexdigest() "
    "(or .digest()) is a fixed-size key per document. Return the kept indices as a list of ints, "
    "in increasing order, the first occurrence of each group.",
))
def exact_dedup(fn: Callable[..., Any]) -> int:
    """`fn(docs, normalize) -> list[int]` against `course.curation.exact_dedup`."""
    from course.curation import exact_dedup as reference

    name = "exact_dedup"
    cases = _dedup_cases()
    for docs, norm, norm_name in cases:
        desc = f"docs={docs!r}, normalize={norm_name}"
        got = call(name, fn, list(docs), norm, inputs_desc=desc)
        if type(got) is list and any(type(x) is str for x in got):
            raise CheckFailed(name, f"on input {desc} — expected the indices of the kept "
                              f"documents, got documents: {show(got)}",
                              hint="return [i for the kept documents], not the texts")
        expect_contract(name, desc, list[int], got,
                        hint="return a list of ints: the indices of the documents to keep")
        expected = reference(docs, norm)
        got = [int(i) for i in got]
        if got == expected:
            continue
        hint = _dedup_mistake(docs, norm, got, expected)
        if hint is None and sorted(got) == expected:
            hint = "return the indices in increasing order (the order of the documents)"
        expect_equal(name, desc, expected, got, hint=hint or
                     "keep index i when normalize(docs[i]) was not seen at an earlier index")
    return len(cases)


def _dedup_mistake(docs: list[str], norm: Callable[[str], str], got: list[int],
                   expected: list[int]) -> str | None:
    keys = [norm(d) for d in docs]
    return first_match(got, [
        ("you keep the LAST document of each group; keep the first one (the earliest index)",
         lambda: sorted({k: i for i, k in enumerate(keys)}.values())),
        ("you dropped every document that has a duplicate; one of each group stays (the first)",
         lambda: [i for i, k in enumerate(keys) if keys.count(k) == 1]),
        ("these are the removed documents; return the ones to KEEP",
         lambda: [i for i in range(len(docs)) if i not in expected]),
        ("the documents are compared as they are: compare normalize(doc), with the "
         "normalize function passed in",
         lambda: _first_of_each(docs)),
        ("use the normalize function passed as the second argument, not one of your own "
         "(here it keeps the case, so 'Same' and 'same' are different documents)",
         lambda: _first_of_each([" ".join(unicodedata.normalize("NFKC", d).casefold().split())
                                 for d in docs])),
    ], _eq)


def _first_of_each(keys: Sequence[str]) -> list[int]:
    seen: set[str] = set()
    out = []
    for i, k in enumerate(keys):
        if k not in seen:
            seen.add(k)
            out.append(i)
    return out


# ------------------------------------------------------------------------- minhash


_NO_MOD = ("the values are not reduced modulo prime: h_i(x) = (a_i x + b_i) mod prime, the "
           "whole sum (a * x + b % prime reduces only b: operator precedence)")


def _wrap32(v: int) -> int:
    """v as a NumPy int32 holds it: wrapped around into [-2**31, 2**31)."""
    return (v + 2**31) % 2**32 - 2**31


def _minhash_cases() -> list[tuple[list[int], list[int], list[int], int]]:
    import numpy as np

    from course.curation import MERSENNE_31, make_permutations, shingle_hash, shingles

    cases = [
        ([2, 3, 4, 5, 6, 7], [6, 1, 4, 9], [5, 0, 2, 8], 17),
        ([3, 10, 7], [1, 2, 5], [0, 1, 3], 11),
        ([4], [3, 7], [2, 9], 13),  # one shingle: the signature is h_i of it
        ([20, 13, 5, 31], [1, 1, 1], [0, 3, 30], 37),  # a = 1: min(x + b) mod p is not min(x) + b
    ]
    rng = np.random.default_rng(10)
    for k, text in enumerate(["the cat sat on the mat and the dog sat on the log",
                              "to be or not to be that is the question"]):
        a, b = make_permutations(6 + 2 * k, seed=k)
        hashes = [shingle_hash(s) for s in sorted(shingles(text, 2))]
        cases.append((hashes, a, b, MERSENNE_31))
    hashes = [int(x) for x in rng.integers(0, 2**32, size=12)]
    a, b = make_permutations(8, seed=5)
    cases.append((hashes, a, b, MERSENNE_31))
    return cases


@exercise("minhash_signature", hints=(
    "The signature has one entry per hash function, so len(a) entries. Entry i is the "
    "smallest value that hash function i gives to any of the document's shingles: a loop over "
    "the functions, and inside it a minimum over the shingle hashes.",
    "Hash function i maps x to (a[i] * x + b[i]) % prime: the whole sum a[i] * x + b[i] is "
    "reduced modulo prime (mind the operator precedence). Python ints never overflow; NumPy "
    "needs int64 (or uint64), int32 overflows. Return a list of ints.",
))
def minhash_signature(fn: Callable[..., Any]) -> int:
    """`fn(shingle_hashes, a, b, prime) -> list[int]` against `course.curation.minhash_signature`."""
    from course.curation import minhash_signature as reference

    name = "minhash_signature"
    cases = _minhash_cases()
    for hashes, a, b, prime in cases:
        desc = _desc(shingle_hashes=hashes, a=a, b=b, prime=prime)
        got = call(name, fn, list(hashes), list(a), list(b), prime, inputs_desc=desc)
        expect_contract(name, desc, list[int], got,
                        hint="return a list of ints, one per hash function (call .tolist() on an array)")
        got = [int(v) for v in got]
        expected = reference(hashes, a, b, prime)
        if got == expected:
            continue
        hint = _minhash_mistake(hashes, a, b, prime, got, expected)
        if hint is None and len(got) != len(a):
            hint = (f"the signature needs one entry per hash function: {len(a)} entries (len(a)), "
                    f"you returned {len(got)}; loop over the functions outside, the shingles inside")
        if hint is None and any(v < 0 for v in got):
            hint = ("negative values: an integer overflow (NumPy int32?); use Python ints or "
                    "np.int64")
        expect_equal(name, desc, expected, got, hint=hint or
                     "entry i is min over x in shingle_hashes of (a[i] * x + b[i]) % prime")
    return len(cases)


def _minhash_mistake(hashes: list[int], a: list[int], b: list[int], prime: int, got: list[int],
                     expected: list[int]) -> str | None:
    pairs = list(zip(a, b, strict=True))
    return first_match(got, [
        ("you took the MAXIMUM hash value; MinHash keeps the minimum",
         lambda: [max((ai * x + bi) % prime for x in hashes) for ai, bi in pairs]),
        (_NO_MOD, lambda: [min(ai * x + bi % prime for x in hashes) for ai, bi in pairs]),
        (_NO_MOD, lambda: [min(ai * x + bi for x in hashes) for ai, bi in pairs]),
        ("an integer overflow: NumPy int32 wraps around above 2**31; use Python ints or "
         "np.int64", lambda: [min(_wrap32(_wrap32(ai * _wrap32(x)) + bi) % prime for x in hashes)
                              for ai, bi in pairs]),
        ("you return the shingle hash that wins (the argmin), not the minimum value itself",
         lambda: [min(hashes, key=lambda x, ai=ai, bi=bi: (ai * x + bi) % prime)
                  for ai, bi in pairs]),
        ("the minimum of x is taken before hashing: h_i(min x) is not min h_i(x), because "
         "(a x + b) mod prime scrambles the order",
         lambda: [(ai * min(hashes) + bi) % prime for ai, bi in pairs]),
        ("your entries are sorted: entry i belongs to hash function i, keep their order",
         lambda: sorted(expected)),
    ], _eq)


# ------------------------------------------------------------------------------ LSH


def _lsh_cases() -> list[tuple[list[list[int]], int, int]]:
    from course.curation import minhash_signatures

    texts = [
        "the quick brown fox jumps over the lazy dog near the river bank today",
        "the quick brown fox jumps over the lazy dog near the river bank tonight",
        "a slow green turtle walks under the busy bridge by the old mill",
        "the quick brown fox jumped over a lazy dog near the river bank today",
        "a slow green turtle walks under the busy bridge by the old mill",
        "completely different words appear in this last short sentence here",
    ]
    sigs = minhash_signatures(texts, 16, n=2, seed=3).tolist()
    return [
        # 0 and 1 share band 0, 2 and 3 band 2, 3 and 4 band 1; 1 and 3 share single entries
        # only; 0 and 4 agree on entries 0 and 3 (band 0 if bands were interleaved)
        ([[1, 2, 3, 4, 5, 6], [1, 2, 9, 9, 9, 9], [7, 8, 9, 1, 2, 2], [0, 2, 0, 4, 2, 2],
          [1, 0, 0, 4, 0, 0]], 3, 2),
        ([[1, 1], [1, 1], [1, 1]], 2, 1),  # three identical documents: three pairs
        ([[5, 6, 7, 8], [6, 5, 8, 7], [5, 6, 8, 7]], 2, 2),  # the same values in other places
        ([[1, 2, 3, 4], [3, 4, 1, 2]], 2, 2),  # band 0 of one is band 1 of the other: no pair
        ([[1, 2, 3, 4, 5, 6, 9], [4, 5, 6, 1, 2, 3, 9]], 2, 3),  # 7th entry beyond bands * rows
        ([[3, 1, 4, 1], [3, 1, 4, 2], [9, 1, 4, 2], [3, 9, 9, 9]], 1, 4),
        ([[3, 1, 4, 1], [3, 1, 4, 2], [9, 1, 4, 2], [3, 9, 9, 9]], 4, 1),
        ([[1, 2, 3, 4]], 2, 2),  # one document: no pair
        (sigs, 4, 4),
        (sigs, 8, 2),
    ]


def _variant_pairs(sigs: Sequence[Sequence[int]], bands: int, rows: int, kind: str) -> set[tuple[int, int]]:
    out = set()
    for i, j in combinations(range(len(sigs)), 2):
        x, y = list(sigs[i]), list(sigs[j])
        if kind == "all":
            hit = all(x[k * rows:(k + 1) * rows] == y[k * rows:(k + 1) * rows] for k in range(bands))
        elif kind == "interleaved":
            hit = any(x[k:bands * rows:bands] == y[k:bands * rows:bands] for k in range(bands))
        elif kind == "entry":
            hit = any(x[k] == y[k] for k in range(bands * rows))
        elif kind == "sliding":
            hit = any(x[k:k + rows] == y[k:k + rows] for k in range(bands * rows - rows + 1))
        elif kind == "shared":  # one bucket dict for every band, keyed by the values only
            hit = any(x[a * rows:(a + 1) * rows] == y[b * rows:(b + 1) * rows]
                      for a in range(bands) for b in range(bands))
        else:  # "whole": every entry of the signature, beyond bands * rows too
            hit = any(x[k * rows:(k + 1) * rows] == y[k * rows:(k + 1) * rows]
                      for k in range(math.ceil(len(x) / rows)))
        if hit:
            out.add((i, j))
    return out


@exercise("lsh_candidates", hints=(
    "Cut every signature into `bands` consecutive bands of `rows` entries. For each band, put "
    "the documents into buckets keyed by that band's exact values (a dict from a tuple to a "
    "list of indices); any two documents that share a bucket in ANY band are a candidate pair.",
    "Band k covers entries k * rows up to (k + 1) * rows, not every bands-th entry; a list "
    "cannot be a dict key, a tuple can. Write each pair once as (i, j) with i < j "
    "(itertools.combinations over a sorted bucket does it), and return a set of tuples.",
))
def lsh_candidates(fn: Callable[..., Any]) -> int:
    """`fn(signatures, bands, rows) -> set[tuple[int, int]]` against `course.curation.lsh_candidates`."""
    from course.curation import lsh_candidates as reference

    name = "lsh_candidates"
    cases = _lsh_cases()
    for sigs, bands, rows in cases:
        desc = _desc(signatures=sigs, bands=bands, rows=rows)
        got = call(name, fn, [list(s) for s in sigs], bands, rows, inputs_desc=desc)
        expect_contract(name, desc, set[tuple[int, int]], got,
                        hint="return a set of (i, j) tuples of ints, i < j")
        got = {(int(i), int(j)) for i, j in got}
        expected = reference(sigs, bands, rows)
        if got == expected:
            continue
        flipped = {(min(i, j), max(i, j)) for i, j in got if i != j}
        hint = _lsh_mistake(sigs, bands, rows, got)
        if hint is None and any(i == j for i, j in got):
            hint = "a document is not a candidate pair with itself: only pairs i < j"
        elif hint is None and flipped == expected:
            hint = "write each pair once, as (i, j) with i < j"
        expect_equal(name, desc, sorted(expected), sorted(got), hint=hint or
                     "bucket each band's values; pairs from a common bucket, in any band")
    return len(cases)


def _lsh_mistake(sigs: list[list[int]], bands: int, rows: int, got: set[tuple[int, int]]) -> str | None:
    return first_match(got, [
        ("a pair needs only ONE matching band, not all of them: that is what makes LSH "
         "find similar (not only identical) signatures",
         lambda: _variant_pairs(sigs, bands, rows, "all")),
        ("band k is the consecutive slice [k * rows, (k + 1) * rows) of the signature, not "
         "every bands-th entry", lambda: _variant_pairs(sigs, bands, rows, "interleaved")),
        ("one equal entry is not enough: all `rows` entries of a band must match",
         lambda: _variant_pairs(sigs, bands, rows, "entry")),
        ("bands do not overlap: step by rows, not by 1",
         lambda: _variant_pairs(sigs, bands, rows, "sliding")),
        ("only the first bands * rows entries are banded; ignore the rest of the signature",
         lambda: _variant_pairs(sigs, bands, rows, "whole")),
        ("every band has buckets of its own: equal values in two different bands are no "
         "match, so key the buckets by (band index, values) or start a new dict for each band",
         lambda: _variant_pairs(sigs, bands, rows, "shared")),
    ], _eq)


# ------------------------------------------------------------------------- quality


_QUALITY_CASES = [
    "The cat sat on the mat.",
    "",
    "one line\none line\n  one line  \nanother line\n\n\none line",
    "# Title\n## Sub ... and more… here #tag",
    "deadbeef 0x1f 42 3.14 -- !!! ok",
    "Home | About | Contact | Privacy\n{\"a\": 1}",
    "   \n\n   ",
    "To be, or not to be: that is the question.\nWhether 'tis nobler in the mind to suffer\n"
    "To be, or not to be: that is the question.",
    "a.... b ...... c …",
]


def _signals_variant(text: str, kind: str) -> dict[str, float]:
    from course.curation import SYMBOLS, quality_signals

    s = quality_signals(text)
    words = text.split()
    n = len(words)
    raw_lines = text.splitlines()
    if kind == "split_space":
        ws = [w for w in text.split(" ")]
        s["n_words"] = float(len(ws))
    elif kind == "isalpha":
        s["alpha_word_fraction"] = sum(w.isalpha() for w in words) / n if n else 0.0
    elif kind == "distinct_lines":
        lines = [x.strip() for x in raw_lines if x.strip()]
        s["duplicate_line_fraction"] = len(set(lines)) / len(lines) if lines else 0.0
    elif kind == "blank_lines":
        lines = [x.strip() for x in raw_lines]
        s["duplicate_line_fraction"] = 1 - len(set(lines)) / len(lines) if lines else 0.0
    elif kind == "unstripped":
        lines = [x for x in raw_lines if x.strip()]
        s["duplicate_line_fraction"] = 1 - len(set(lines)) / len(lines) if lines else 0.0
    elif kind == "symbols_per_char":
        s["symbol_ratio"] = sum(text.count(x) for x in SYMBOLS) / max(len(text), 1)
    elif kind == "no_ellipsis":
        s["symbol_ratio"] = sum(text.count(x) for x in SYMBOLS if x not in ("...", "…")) / max(n, 1)
    elif kind == "dots":
        s["symbol_ratio"] = (sum(text.count(x) for x in SYMBOLS if x != "...") + text.count(".")) / max(n, 1)
    return s


_SIGNAL_KEYS = ("n_words", "mean_word_length", "symbol_ratio", "duplicate_line_fraction",
                "alpha_word_fraction")


def _close_signals(a: Any, b: Any) -> bool:
    return isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys() and all(
        math.isclose(float(a[k]), float(b[k]), rel_tol=1e-9, abs_tol=1e-12) for k in a)


@exercise("quality_signals", hints=(
    "Words are text.split(); lines are the stripped non-blank lines. Each signal is a count "
    "divided by a count: words for the mean length, the symbol ratio and the alphabetic "
    "fraction, lines for the duplicate fraction. A text without words (or lines) gives 0.0.",
    "symbol_ratio counts occurrences of each string of SYMBOLS in the text (an ellipsis '...' "
    "counts once, and so does '…'). A word counts as alphabetic if ANY of its characters is "
    "a letter (str.isalpha on a character). duplicate_line_fraction is 1 minus the number of "
    "distinct lines over the number of lines.",
))
def quality_signals(fn: Callable[..., Any]) -> int:
    """`fn(text) -> dict[str, float]` against `course.curation.quality_signals`."""
    from course.curation import quality_signals as reference

    name = "quality_signals"
    for text in _QUALITY_CASES:
        desc = f"text={text!r}"
        got = call(name, fn, text, inputs_desc=desc)
        expect_contract(name, desc, dict[str, float], got,
                        hint="return a dict from signal name (str) to a number")
        expected = reference(text)
        if set(got) != set(expected):
            missing = sorted(set(expected) - set(got))
            extra = sorted(set(got) - set(expected))
            raise CheckFailed(name, f"on input {desc} — expected the keys {list(_SIGNAL_KEYS)}; "
                              f"missing {missing}, unexpected {extra}",
                              hint="use exactly the five signal names of the docstring")
        if _close_signals(expected, got):
            continue
        bad = next(k for k in _SIGNAL_KEYS if not math.isclose(
            float(got[k]), expected[k], rel_tol=1e-9, abs_tol=1e-12))
        hint = _quality_mistake(text, got)
        raise CheckFailed(name, f"on input {desc} — {bad}: expected {expected[bad]!r}, got "
                          f"{got[bad]!r}", hint=hint or f"recompute {bad} from the docstring's definition")
    return len(_QUALITY_CASES)


def _quality_mistake(text: str, got: dict[str, float]) -> str | None:
    return first_match(got, [
        ("n_words: split(' ') counts empty strings between spaces and keeps newlines inside "
         "words; text.split() with no argument", lambda: _signals_variant(text, "split_space")),
        ("alpha_word_fraction: a word counts when ANY character is a letter "
         "(w.isalpha() demands all of them: 'mat.' would not count)",
         lambda: _signals_variant(text, "isalpha")),
        ("duplicate_line_fraction: strip each line first, so that '  one line  ' repeats "
         "'one line'", lambda: _signals_variant(text, "unstripped")),
        ("duplicate_line_fraction is the share of lines that REPEAT an earlier one: 1 - "
         "distinct / total", lambda: _signals_variant(text, "distinct_lines")),
        ("duplicate_line_fraction: leave blank lines out (an empty line repeated is not "
         "repeated content)", lambda: _signals_variant(text, "blank_lines")),
        ("symbol_ratio is per WORD, not per character", lambda: _signals_variant(text, "symbols_per_char")),
        ("symbol_ratio: count the ellipses too, '...' and '…' (both are in SYMBOLS)",
         lambda: _signals_variant(text, "no_ellipsis")),
        ("symbol_ratio: '...' counts once as a whole (text.count('...')), not as three dots",
         lambda: _signals_variant(text, "dots")),
    ], _close_signals)


# ------------------------------------------------------------------- contamination


_TRAIN_DOCS = [
    "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer",
    "The slings and arrows of outrageous fortune, or to take arms against a sea of troubles",
    "Now is the winter of our discontent made glorious summer by this sun of York",
]


def _contamination_cases() -> list[tuple[str, int]]:
    return [
        ("to be or not to be that is the question", 4),  # case and punctuation differ
        ("TO BE, OR NOT TO BE -- that is the answer, my lord", 4),
        ("the winter of our discontent the winter of our discontent and more words here", 3),
        ("nothing in here comes from the training documents at all", 3),
        ("to be", 4),  # fewer words than n
        ("", 2),
        ("made glorious summer by this sun of York and sea of troubles", 2),
        ("now is the winter of our discontent made glorious summer by this sun of york", 13),
        ("Now is the winter of our discontent made glorious summer by this son of York", 13),
    ]


def _grams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


@exercise("contamination_score", hints=(
    "Turn the document into its list of word n-grams, exactly as the training n-grams were "
    "made: lowercase, words = runs of \\w characters, tuples of n consecutive words. The score "
    "is the fraction of those n-grams that are in train_ngrams.",
    "re.findall(r'\\w+', doc.lower()) gives the words; a document of W words has W - n + 1 "
    "n-grams (none when W < n: return 0.0). Count every n-gram, repeats included (not the "
    "set of distinct ones), and divide by how many there are.",
))
def contamination_score(fn: Callable[..., Any]) -> int:
    """`fn(doc, train_ngrams, n) -> float` against `course.curation.contamination_score`."""
    from course.curation import contamination_score as reference
    from course.curation import ngram_index

    name = "contamination_score"
    cases = _contamination_cases()
    for doc, n in cases:
        index = ngram_index(_TRAIN_DOCS, n)
        desc = f"doc={doc!r}, train_ngrams=<{len(index)} {n}-grams of 3 training lines>, n={n}"
        got = call(name, fn, doc, set(index), n, inputs_desc=desc)
        expect_contract(name, desc, float, got, hint="return the fraction as a float")
        expected = reference(doc, index, n)
        if math.isclose(float(got), expected, rel_tol=1e-9, abs_tol=1e-12):
            continue
        hint = _contamination_mistake(doc, index, n, got)
        if hint is None and not _grams(re.findall(r"\w+", doc.lower()), n):
            hint = f"the document has fewer than n={n} words, so no n-gram: return 0.0"
        raise CheckFailed(name, f"on input {desc} — expected {expected!r}, got {got!r}",
                          hint=hint or "found n-grams / all n-grams of the document")
    return len(cases)


def _contamination_mistake(doc: str, index: set[tuple[str, ...]], n: int, got: Any) -> str | None:
    words = re.findall(r"\w+", doc.lower())
    grams = _grams(words, n)

    def frac(gs: list[tuple[str, ...]]) -> float:
        return sum(g in index for g in gs) / len(gs) if gs else 0.0

    return first_match(got, [
        ("count every n-gram of the document, repeats included, not the set of distinct ones",
         lambda: frac(sorted(set(grams)))),
        ("lowercase the document first: the training n-grams are lowercase",
         lambda: frac(_grams(re.findall(r"\w+", doc), n))),
        ("split into words with re.findall(r'\\w+', ...): str.split() keeps punctuation "
         "attached ('be,' is not 'be')", lambda: frac(_grams(doc.lower().split(), n))),
        ("off by one: a document of W words has W - n + 1 n-grams (the last one too)",
         lambda: frac(grams[:-1])),
        ("return the FRACTION of the document's n-grams found, not their number",
         lambda: float(sum(g in index for g in grams))),
        ("divide by the number of the document's n-grams, not by the size of train_ngrams",
         lambda: sum(g in index for g in grams) / len(index)),
    ], lambda a, b: isinstance(a, (int, float)) and math.isclose(float(a), float(b), abs_tol=1e-12))
