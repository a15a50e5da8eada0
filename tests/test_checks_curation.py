"""Lesson 10's checks: the reference and other correct styles pass, realistic mistakes are
rejected with a hint that names them, and wrong containers never pass."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from itertools import combinations

import numpy as np
import pytest
from lookalikes import AlwaysEqualDict, AlwaysEqualFloat, AlwaysEqualList, AlwaysEqualStr

from course import checks as check
from course import curation
from course.checks import CheckFailed, NotAttempted


def todo(*args, **kwargs):
    raise NotImplementedError("Exercise: ...")


def failure(check_fn, fn) -> str:
    with pytest.raises(CheckFailed) as info:
        check_fn(fn)
    return str(info.value)


# ------------------------------------------------------------------------ normalize


def normalize_ok(text):
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def normalize_regex(text):  # another correct style
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).casefold()).strip()


@pytest.mark.parametrize("fn", [normalize_ok, normalize_regex, curation.normalize])
def test_normalize_correct_styles_pass(fn, capsys):
    check.normalize_text(fn)
    assert capsys.readouterr().out == "✓ normalize_text: 12 cases passed\n"


@pytest.mark.parametrize("wrong, hint", [
    (lambda t: " ".join(t.casefold().split()), "apply the Unicode normalisation NFKC first"),
    (lambda t: " ".join(unicodedata.normalize("NFC", t).casefold().split()), "NFC only composes"),
    (lambda t: " ".join(unicodedata.normalize("NFKD", t).casefold().split()), "NFKD leaves accents"),
    (lambda t: " ".join(unicodedata.normalize("NFKC", t).lower().split()), "lower() is not caseless"),
    (lambda t: " ".join(unicodedata.normalize("NFKC", t).split()), "the case is not folded"),
    (lambda t: " ".join(unicodedata.normalize("NFKC", t).casefold().split(" ")).strip(),
     "runs of whitespace are not collapsed"),
    (lambda t: re.sub(r"\s+", " ", unicodedata.normalize("NFKC", t).casefold()),
     "the ends are not stripped"),
])
def test_normalize_mistakes_are_named(wrong, hint):
    assert hint in failure(check.normalize_text, wrong)


def test_normalize_wrong_type_and_lookalike_are_rejected():
    assert "expected str, got a list" in failure(check.normalize_text, lambda t: normalize_ok(t).split())
    assert "AlwaysEqualStr" in failure(check.normalize_text, lambda t: AlwaysEqualStr(t))
    assert "forget to `return`" in failure(check.normalize_text, lambda t: None)


def test_normalize_not_attempted():
    with pytest.raises(NotAttempted):
        check.normalize_text(todo)


# ---------------------------------------------------------------------- exact dedup


def dedup_ok(docs, normalize):
    seen, keep = set(), []
    for i, doc in enumerate(docs):
        h = hashlib.sha1(normalize(doc).encode("utf-8")).hexdigest()
        if h not in seen:
            seen.add(h)
            keep.append(i)
    return keep


def dedup_dict(docs, normalize):  # another correct style: first index per key
    first = {}
    for i, doc in enumerate(docs):
        first.setdefault(normalize(doc), i)
    return sorted(first.values())


def dedup_keeps_last(docs, normalize):
    return sorted({normalize(d): i for i, d in enumerate(docs)}.values())


def dedup_drops_all_copies(docs, normalize):
    keys = [normalize(d) for d in docs]
    return [i for i, k in enumerate(keys) if keys.count(k) == 1]


def dedup_returns_removed(docs, normalize):
    kept = dedup_ok(docs, normalize)
    return [i for i in range(len(docs)) if i not in kept]


def dedup_raw(docs, normalize):
    return dedup_ok(docs, lambda t: t)


def dedup_own_normalize(docs, normalize):
    return dedup_ok(docs, normalize_ok)


def dedup_texts(docs, normalize):
    return [docs[i] for i in dedup_ok(docs, normalize)]


def dedup_pops(docs, normalize):  # right answer, but empties the caller's list
    keep = dedup_ok(docs, normalize)
    docs.clear()
    return keep


@pytest.mark.parametrize("fn", [dedup_ok, dedup_dict, curation.exact_dedup])
def test_dedup_correct_styles_pass(fn, capsys):
    check.exact_dedup(fn)
    assert capsys.readouterr().out == "✓ exact_dedup: 7 cases passed\n"


@pytest.mark.parametrize("wrong, hint", [
    (dedup_keeps_last, "you keep the LAST document"),
    (dedup_drops_all_copies, "you dropped every document that has a duplicate"),
    (dedup_returns_removed, "these are the removed documents"),
    (dedup_raw, "the documents are compared as they are"),
    (dedup_own_normalize, "use the normalize function passed as the second argument"),
    (dedup_texts, "got documents"),
    (lambda d, n: AlwaysEqualList(dedup_ok(d, n)), "AlwaysEqualList"),
    (lambda d, n: tuple(dedup_ok(d, n)), "expected list[int], got a tuple"),
    (dedup_pops, "changed its argument 1 in place"),
])
def test_dedup_mistakes_are_named(wrong, hint):
    assert hint in failure(check.exact_dedup, wrong)


def test_dedup_not_attempted():
    with pytest.raises(NotAttempted):
        check.exact_dedup(todo)


# ------------------------------------------------------------------------- minhash


def minhash_ok(shingle_hashes, a, b, prime):
    return [min((ai * x + bi) % prime for x in shingle_hashes) for ai, bi in zip(a, b, strict=True)]


def minhash_numpy(shingle_hashes, a, b, prime):  # vectorised, int64 is exact below 2**63
    x = np.array(shingle_hashes, dtype=np.int64)
    a_, b_ = np.array(a, dtype=np.int64), np.array(b, dtype=np.int64)
    return ((a_[:, None] * x[None, :] + b_[:, None]) % prime).min(axis=1).tolist()


def minhash_numpy_int32(shingle_hashes, a, b, prime):
    x = np.array(shingle_hashes, dtype=np.int64).astype(np.int32)
    a_, b_ = np.array(a, dtype=np.int64).astype(np.int32), np.array(b, dtype=np.int64).astype(np.int32)
    with np.errstate(over="ignore"):
        return ((a_[:, None] * x[None, :] + b_[:, None]) % prime).min(axis=1).tolist()


@pytest.mark.parametrize("fn", [minhash_ok, minhash_numpy, curation.minhash_signature])
def test_minhash_correct_styles_pass(fn, capsys):
    check.minhash_signature(fn)
    assert capsys.readouterr().out == "✓ minhash_signature: 7 cases passed\n"


@pytest.mark.parametrize("wrong, hint", [
    (lambda h, a, b, p: [max((ai * x + bi) % p for x in h) for ai, bi in zip(a, b, strict=True)], "MAXIMUM"),
    (lambda h, a, b, p: [min(ai * x + bi % p for x in h) for ai, bi in zip(a, b, strict=True)], "operator precedence"),
    (lambda h, a, b, p: [min(ai * x + bi for x in h) for ai, bi in zip(a, b, strict=True)],
     "not reduced modulo prime"),
    (lambda h, a, b, p: [min(h, key=lambda x: (ai * x + bi) % p) for ai, bi in zip(a, b, strict=True)], "argmin"),
    (lambda h, a, b, p: [(ai * min(h) + bi) % p for ai, bi in zip(a, b, strict=True)], "before hashing"),
    (lambda h, a, b, p: sorted(minhash_ok(h, a, b, p)), "your entries are sorted"),
    (lambda h, a, b, p: [min((ai * x + bi) % p for ai, bi in zip(a, b, strict=True)) for x in h],
     "one entry per hash function"),
    (minhash_numpy_int32, "overflow"),
    (lambda h, a, b, p: np.array(minhash_ok(h, a, b, p)), "expected list[int], got a ndarray"),
    (lambda h, a, b, p: AlwaysEqualList(minhash_ok(h, a, b, p)), "AlwaysEqualList"),
])
def test_minhash_mistakes_are_named(wrong, hint):
    assert hint in failure(check.minhash_signature, wrong)


def test_minhash_that_sorts_the_callers_hashes_is_rejected():
    def sorts(h, a, b, p):
        h.sort()
        return minhash_ok(h, a, b, p)

    assert "changed its argument 1 in place" in failure(check.minhash_signature, sorts)


def test_minhash_not_attempted():
    with pytest.raises(NotAttempted):
        check.minhash_signature(todo)


# ------------------------------------------------------------------------------ LSH


def lsh_ok(signatures, bands, rows):
    pairs = set()
    for k in range(bands):
        buckets = {}
        for i, sig in enumerate(signatures):
            buckets.setdefault(tuple(sig[k * rows:(k + 1) * rows]), []).append(i)
        for members in buckets.values():
            pairs.update(combinations(members, 2))
    return pairs


def lsh_bruteforce(signatures, bands, rows):  # every pair compared: slow, but correct
    return {(i, j) for i, j in combinations(range(len(signatures)), 2)
            if any(signatures[i][k * rows:(k + 1) * rows] == signatures[j][k * rows:(k + 1) * rows]
                   for k in range(bands))}


def lsh_all_bands(signatures, bands, rows):
    return {(i, j) for i, j in combinations(range(len(signatures)), 2)
            if signatures[i][:bands * rows] == signatures[j][:bands * rows]}


def lsh_interleaved(signatures, bands, rows):
    return {(i, j) for i, j in combinations(range(len(signatures)), 2)
            if any(signatures[i][k:bands * rows:bands] == signatures[j][k:bands * rows:bands]
                   for k in range(bands))}


def lsh_any_entry(signatures, bands, rows):
    return {(i, j) for i, j in combinations(range(len(signatures)), 2)
            if any(signatures[i][k] == signatures[j][k] for k in range(bands * rows))}


def lsh_one_dict(signatures, bands, rows):  # the buckets of every band in one dict
    buckets = {}
    for k in range(bands):
        for i, sig in enumerate(signatures):
            buckets.setdefault(tuple(sig[k * rows:(k + 1) * rows]), set()).add(i)
    return {p for members in buckets.values() for p in combinations(sorted(members), 2)}


def lsh_whole_signature(signatures, bands, rows):  # bands beyond bands * rows too
    n_bands = -(-len(signatures[0]) // rows) if signatures else bands
    return lsh_ok(signatures, n_bands, rows)


def lsh_with_self(signatures, bands, rows):
    return lsh_ok(signatures, bands, rows) | {(i, i) for i in range(len(signatures))}


def lsh_both_orders(signatures, bands, rows):
    pairs = lsh_ok(signatures, bands, rows)
    return pairs | {(j, i) for i, j in pairs}


@pytest.mark.parametrize("fn", [lsh_ok, lsh_bruteforce, curation.lsh_candidates])
def test_lsh_correct_styles_pass(fn, capsys):
    check.lsh_candidates(fn)
    assert capsys.readouterr().out == "✓ lsh_candidates: 10 cases passed\n"


@pytest.mark.parametrize("wrong, hint", [
    (lsh_all_bands, "only ONE matching band"),
    (lsh_interleaved, "not every bands-th entry"),
    (lsh_any_entry, "one equal entry is not enough"),
    (lsh_one_dict, "every band has buckets of its own"),
    (lsh_whole_signature, "ignore the rest of the signature"),
    (lsh_with_self, "not a candidate pair with itself"),
    (lsh_both_orders, "write each pair once"),
    (lambda s, b, r: sorted(lsh_ok(s, b, r)), "expected set[tuple[int, int]], got a list"),
    (lambda s, b, r: {list(p)[0] for p in lsh_ok(s, b, r)} or {0}, "a set holding an int"),
])
def test_lsh_mistakes_are_named(wrong, hint):
    assert hint in failure(check.lsh_candidates, wrong)


def test_lsh_not_attempted():
    with pytest.raises(NotAttempted):
        check.lsh_candidates(todo)


# ------------------------------------------------------------------------- quality


def signals_ok(text):
    words = text.split()
    n = len(words)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    symbols = ("#", "...", "…", "{", "}", "|")
    return {
        "n_words": n,
        "mean_word_length": sum(map(len, words)) / n if n else 0.0,
        "symbol_ratio": sum(text.count(s) for s in symbols) / n if n else 0.0,
        "duplicate_line_fraction": (len(lines) - len(set(lines))) / len(lines) if lines else 0.0,
        "alpha_word_fraction": sum(1 for w in words if any(c.isalpha() for c in w)) / n if n else 0.0,
    }


def signals_with(**changes):
    def fn(text):
        s = signals_ok(text)
        words, lines = text.split(), text.splitlines()
        n = len(words)
        for key, how in changes.items():
            s[key] = how(text, words, lines, n)
        return s
    return fn


@pytest.mark.parametrize("fn", [signals_ok, curation.quality_signals])
def test_quality_correct_styles_pass(fn, capsys):
    check.quality_signals(fn)
    assert capsys.readouterr().out == "✓ quality_signals: 9 cases passed\n"


@pytest.mark.parametrize("wrong, hint", [
    (signals_with(n_words=lambda t, w, l_, n: len(t.split(" "))), "split(' ') counts empty strings"),
    (signals_with(alpha_word_fraction=lambda t, w, l_, n: sum(x.isalpha() for x in w) / n if n else 0.0),
     "ANY character is a letter"),
    (signals_with(duplicate_line_fraction=lambda t, w, lines, n: (
        len({x.strip() for x in lines if x.strip()}) / len([x for x in lines if x.strip()])
        if any(x.strip() for x in lines) else 0.0)), "REPEAT an earlier one"),
    (signals_with(duplicate_line_fraction=lambda t, w, lines, n: (
        1 - len({x.strip() for x in lines}) / len(lines) if lines else 0.0)), "leave blank lines out"),
    (signals_with(duplicate_line_fraction=lambda t, w, lines, n: (
        1 - len({x for x in lines if x.strip()}) / len([x for x in lines if x.strip()])
        if any(x.strip() for x in lines) else 0.0)), "strip each line first"),
    (signals_with(symbol_ratio=lambda t, w, l_, n: sum(
        t.count(s) for s in ("#", "...", "…", "{", "}", "|")) / max(len(t), 1)), "per WORD"),
    (signals_with(symbol_ratio=lambda t, w, l_, n: sum(
        t.count(s) for s in ("#", "{", "}", "|")) / max(n, 1)), "count the ellipses too"),
    (signals_with(mean_word_length=lambda t, w, l_, n: len(t) / n if n else 0.0),
     "recompute mean_word_length"),
    (lambda t: {k: v for k, v in signals_ok(t).items() if k != "n_words"}, "missing ['n_words']"),
    (lambda t: list(signals_ok(t).values()), "expected dict[str, float], got a list"),
    (lambda t: AlwaysEqualDict(signals_ok(t)), "AlwaysEqualDict"),
    (lambda t: {**signals_ok(t), "n_words": str(len(t.split()))}, "a dict holding a str"),
])
def test_quality_mistakes_are_named(wrong, hint):
    assert hint in failure(check.quality_signals, wrong)


def test_quality_not_attempted():
    with pytest.raises(NotAttempted):
        check.quality_signals(todo)


# ------------------------------------------------------------------- contamination


def contamination_ok(doc, train_ngrams, n):
    words = re.findall(r"\w+", doc.lower())
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    return sum(g in train_ngrams for g in grams) / len(grams)


def contamination_with(words_of=None, grams_of=None, score=None):
    def fn(doc, train_ngrams, n):
        words = (words_of or (lambda d: re.findall(r"\w+", d.lower())))(doc)
        grams = (grams_of or (lambda w, n: [tuple(w[i:i + n]) for i in range(len(w) - n + 1)]))(words, n)
        if not grams:
            return 0.0
        if score:
            return score(grams, train_ngrams)
        return sum(g in train_ngrams for g in grams) / len(grams)
    return fn


@pytest.mark.parametrize("fn", [contamination_ok, curation.contamination_score])
def test_contamination_correct_styles_pass(fn, capsys):
    check.contamination_score(fn)
    assert capsys.readouterr().out == "✓ contamination_score: 9 cases passed\n"


@pytest.mark.parametrize("wrong, hint", [
    (contamination_with(grams_of=lambda w, n: sorted({tuple(w[i:i + n]) for i in range(len(w) - n + 1)})),
     "repeats included"),
    (contamination_with(words_of=lambda d: re.findall(r"\w+", d)), "lowercase the document first"),
    (contamination_with(words_of=lambda d: d.lower().split()), "str.split() keeps punctuation"),
    (contamination_with(grams_of=lambda w, n: [tuple(w[i:i + n]) for i in range(len(w) - n)]),
     "off by one"),
    (contamination_with(score=lambda g, t: float(sum(x in t for x in g))), "not their number"),
    (contamination_with(score=lambda g, t: sum(x in t for x in g) / len(t)), "not by the size of train_ngrams"),
    (lambda d, t, n: AlwaysEqualFloat(contamination_ok(d, t, n)), "AlwaysEqualFloat"),
    (lambda d, t, n: str(contamination_ok(d, t, n)), "expected float, got a str"),
])
def test_contamination_mistakes_are_named(wrong, hint):
    assert hint in failure(check.contamination_score, wrong)


def test_contamination_that_changes_the_index_is_rejected():
    def adds(doc, train_ngrams, n):
        score = contamination_ok(doc, train_ngrams, n)
        train_ngrams.add(("x",) * n)
        return score

    assert "changed its argument 2 in place" in failure(check.contamination_score, adds)


def test_contamination_not_attempted():
    with pytest.raises(NotAttempted):
        check.contamination_score(todo)


# ------------------------------------------------------------------------- hints


@pytest.mark.parametrize("name", ["normalize_text", "exact_dedup", "minhash_signature",
                                  "lsh_candidates", "quality_signals", "contamination_score"])
def test_hint_levels_exist_and_do_not_give_the_answer(name, capsys, monkeypatch):
    from course.checks._core import _SHOWN, HINTS

    monkeypatch.setitem(_SHOWN, name, 0)
    levels = HINTS[name]
    assert len(levels) == 2 and all(len(level) > 80 for level in levels)
    answers = ['normalize("NFKC"', "min((a[i] * x + b[i]) % prime", "casefold().split()",
               "sig[k * rows:(k + 1) * rows]", "sum(g in train_ngrams"]
    assert not [a for a in answers for level in levels if a in level]
    check.hint(name)
    assert capsys.readouterr().out.startswith(f"{name}: (level 1 of 2)")
