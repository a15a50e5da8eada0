"""course.curation: dedup, MinHash/LSH (against brute force and datasketch), quality signals,
contamination, streaming mixtures, the mixture grid and its widget."""

from __future__ import annotations

import json
import math
from itertools import combinations

import numpy as np
import pytest

from course import curation as C
from course.errors import ConfigError, CorpusError

# --------------------------------------------------------------------- normalise, dedup


@pytest.mark.parametrize("text, expected", [
    ("Hello   World", "hello world"),
    ("\tﬁne\u00a0ＦＬＯＵＲ\n", "fine flour"),
    ("Straße", "strasse"),
    ("cafe\u0301", "café"),
    ("   ", ""),
])
def test_normalize(text, expected):
    assert C.normalize(text) == expected


def test_exact_dedup_keeps_the_first_of_each_normalised_group():
    docs = ["A cat.", "a  CAT.", "a dog", "ａ ｃａｔ.", "a dog ", "other"]
    assert C.exact_dedup(docs) == [0, 2, 5]
    assert C.exact_dedup(docs, normalize=lambda t: t) == [0, 1, 2, 3, 4, 5]
    assert C.exact_dedup([]) == []


# ------------------------------------------------------------------------- shingles


def test_shingles_and_jaccard():
    assert C.shingles("The cat sat on the mat", 3) == {"the cat sat", "cat sat on", "sat on the",
                                                       "on the mat"}
    assert C.shingles("Two words", 3) == {"two words"}
    assert C.shingles("", 3) == set()
    assert C.jaccard({1, 2, 3}, {2, 3, 4}) == 0.5
    assert C.jaccard(set(), set()) == 1.0
    with pytest.raises(ConfigError):
        C.shingles("a b", 0)


def test_shingle_hash_is_datasketchs_sha1_hash32():
    datasketch = pytest.importorskip("datasketch")
    from datasketch.hashfunc import sha1_hash32

    assert datasketch is not None
    for s in ("the cat sat", "ünïcode", ""):
        assert C.shingle_hash(s) == sha1_hash32(s.encode("utf-8"))


# -------------------------------------------------------------------------- MinHash


def test_minhash_signature_matches_the_definition_and_python_ints():
    rng = np.random.default_rng(0)
    hashes = [int(x) for x in rng.integers(0, 2**32, size=40)]
    a, b = C.make_permutations(16, seed=1)
    sig = C.minhash_signature(hashes, a, b)
    assert sig == [min((ai * x + bi) % C.MERSENNE_31 for x in hashes) for ai, bi in zip(a, b, strict=True)]
    assert all(type(v) is int for v in sig)
    # a prime beyond int64's reach takes the exact Python path
    big = (1 << 61) - 1
    assert C.minhash_signature(hashes, a, b, big) == [
        min((ai * x + bi) % big for x in hashes) for ai, bi in zip(a, b, strict=True)]
    with pytest.raises(ConfigError):
        C.minhash_signature([], a, b)


def test_signature_agreement_estimates_jaccard():
    words = [f"w{i}" for i in range(400)]
    x, y = " ".join(words[:300]), " ".join(words[100:])  # true Jaccard of 3-gram sets
    truth = C.jaccard(C.shingles(x), C.shingles(y))
    sig = C.minhash_signatures([x, y], 512, seed=0)
    est = C.signature_similarity(sig[0], sig[1])
    assert abs(est - truth) < 4 * math.sqrt(truth * (1 - truth) / 512)
    assert C.signature_similarity(sig[0], sig[0]) == 1.0


# ------------------------------------------------------------------------------ LSH


def test_lsh_candidates_equal_brute_force_banding():
    rng = np.random.default_rng(3)
    sigs = rng.integers(0, 3, size=(30, 12))  # few values: many colliding bands
    bands, rows = 4, 3
    brute = {(i, j) for i, j in combinations(range(30), 2)
             if any((sigs[i, k * rows:(k + 1) * rows] == sigs[j, k * rows:(k + 1) * rows]).all()
                    for k in range(bands))}
    assert C.lsh_candidates(sigs, bands, rows) == brute and brute
    with pytest.raises(ConfigError, match="bands\\*rows"):
        C.lsh_candidates(sigs, 5, 3)


def test_s_curve_and_its_threshold():
    assert C.candidate_probability(0.0, 20, 5) == 0.0
    assert C.candidate_probability(1.0, 20, 5) == 1.0
    s = np.linspace(0, 1, 101)
    p = C.candidate_probability(s, 20, 5)
    assert np.all(np.diff(p) >= 0)
    t = C.lsh_threshold(20, 5)
    assert 0.5 < t < 0.6 and 0.3 < C.candidate_probability(t, 20, 5) < 0.7


def test_lsh_finds_what_the_s_curve_predicts():
    """Empirical candidate rate of pairs at a known similarity, against 1 - (1 - s^r)^b."""
    rng = np.random.default_rng(0)
    bands, rows, num_perm = 8, 4, 32
    base = list(range(100))
    found = 0
    n_pairs = 150
    docs = []
    for k in range(n_pairs):  # pairs of sets with Jaccard 60/140 = 0.43 exactly
        offset = 1000 * (k + 1)
        a = [offset + x for x in base]
        b = [offset + x for x in base[40:]] + [offset + 500 + x for x in range(40)]
        docs.append((a, b))
    pa, pb = C.make_permutations(num_perm, seed=7)
    for a, b in docs:
        sa, sb = C.minhash_signature(a, pa, pb), C.minhash_signature(b, pa, pb)
        found += (0, 1) in C.lsh_candidates([sa, sb], bands, rows)
    s = 60 / 140
    expected = float(C.candidate_probability(s, bands, rows))
    sd = math.sqrt(expected * (1 - expected) / n_pairs)
    assert abs(found / n_pairs - expected) < 4 * sd
    del rng


@pytest.fixture(scope="module")
def planted():
    texts = [" ".join(f"w{k}_{i}" for i in range(60)) for k in range(40)]
    return C.plant_near_duplicates(texts, n_sources=10, copies=2, seed=0)


def test_planted_near_duplicates_truth(planted):
    docs, truth, cluster = planted
    assert len(docs) == 60 and len(truth) == 10 * 3  # each group of 3 gives 3 pairs
    for i, j in truth:
        assert i < j and cluster[i] == cluster[j] >= 0
        assert C.jaccard(C.shingles(docs[i]), C.shingles(docs[j])) > 0.3
    assert sum(c == -1 for c in cluster) == 30


def test_by_hand_and_datasketch_both_find_the_planted_pairs(planted):
    pytest.importorskip("datasketch")
    docs, truth, _ = planted
    sigs = C.minhash_signatures(docs, 128)
    ours = C.lsh_candidates(sigs, 32, 4)
    theirs, hashes = C.datasketch_pairs(docs, bands=32, rows=4)
    for found in (ours, theirs):
        precision, recall = C.precision_recall(found, truth)
        assert precision == 1.0 and recall >= 0.9
    # the library's Jaccard estimate agrees with ours within MinHash noise
    for i, j in sorted(truth)[:10]:
        assert abs(hashes[i].jaccard(hashes[j]) - C.signature_similarity(sigs[i], sigs[j])) < 0.25
    with pytest.raises(ConfigError):
        C.datasketch_pairs(docs, bands=64, rows=4)


def test_precision_recall():
    assert C.precision_recall({1, 2, 3, 4}, {2, 3, 9}) == (0.5, 2 / 3)
    assert C.precision_recall(set(), {1}) == (1.0, 0.0)


# ------------------------------------------------------------------------- quality


def test_quality_signals_values():
    text = "# Title\nthe cat sat...\nthe cat sat...\n\n  x1 42 ok"
    s = C.quality_signals(text)
    words = text.split()
    assert s["n_words"] == len(words) == 11
    assert s["mean_word_length"] == sum(map(len, words)) / 11
    assert s["symbol_ratio"] == 3 / 11  # one '#', two '...'
    assert s["duplicate_line_fraction"] == 1 / 4
    assert s["alpha_word_fraction"] == 9 / 11  # "#" and "42" have no letter
    assert C.quality_signals("") == dict.fromkeys(s, 0.0)


def test_planted_junk_is_flagged_and_good_text_mostly_kept():
    good = [(" ".join(["the quick brown fox jumps over the lazy dog"] * 3) + f" line {k}\n") * 3
            for k in range(30)]
    good = [g.replace(" line", "\nline") for g in good]
    docs, labels = C.plant_junk(good, n_per_kind=5, seed=0)
    assert labels.count("good") == 30 and len(docs) == 50
    assert {lab for lab in labels} == {"good", "boilerplate", "keyboard mash", "repeated lines", "code dump"}
    flagged = {i for i, d in enumerate(docs) if C.quality_flags(C.quality_signals(d))}
    junk = {i for i, lab in enumerate(labels) if lab != "good"}
    assert junk <= flagged  # every planted junk document breaks a rule
    with pytest.raises(ConfigError, match="missing"):
        C.quality_flags({"n_words": 3.0})


# ------------------------------------------------------------------- contamination


def test_contamination_score_and_ngrams():
    index = C.ngram_index(["To be, or not to be: that is the question."], 3)
    assert ("to", "be", "or") in index and len(index) == 8
    assert C.contamination_score("TO BE OR NOT", index, 3) == 1.0
    assert C.contamination_score("to be or else", index, 3) == 0.5
    assert C.contamination_score("to be", index, 3) == 0.0
    assert C.word_ngrams("a b c", 4) == []


# ---------------------------------------------------------------------- memorisation


def test_common_prefix_length():
    assert C.common_prefix_length("abcd", "abxd") == 2
    assert C.common_prefix_length("", "abc") == 0
    assert C.common_prefix_length("abc", "abc") == 3


def test_text_nll_and_greedy_continuation_of_a_tiny_model():
    import torch

    from course.model import GPT, GPTConfig
    from course.sample import generate
    from course.tokenizer import CharTokenizer

    tok = CharTokenizer().train("abc ")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=8, n_layer=1, n_head=1, n_embd=8))
    nll = C.text_nll(model, tok, "abcabcabcabc ab")  # longer than block_size: sliding window
    assert 0 < nll < 5
    out = C.greedy_continuation(model, tok, "abc", 12)
    ids = [tok.eos_id, *tok.encode("abc")]
    expected = generate(model, ids, 12, greedy=True)[0, len(ids):].tolist()
    assert out == tok.decode(expected)
    logits, _ = model(torch.tensor([ids]))
    assert tok.encode(out[:1]) == [int(logits[0, -1].argmax())] or out[:1] == ""


# ------------------------------------------------------------------- domains, streams


def test_chunk_documents_respects_size_and_keeps_text():
    doc = "line one\nline two is longer\n" + "x" * 25 + "\nend"
    chunks = C.chunk_documents([doc], 12)
    assert all(0 < len(c) <= 12 for c in chunks)
    assert "".join(chunks).replace("\n", "") == doc.replace("\n", "")
    with pytest.raises(ConfigError):
        C.chunk_documents([doc], 0)


def test_stdlib_code_documents_are_ascii_python():
    docs = C.stdlib_code_documents(("textwrap", "bisect", "heapq", "sys"))  # sys: built in, skipped
    assert len(docs) == 3 and all(d.isascii() and "def " in d for d in docs)


def test_domain_documents_unknown_domain():
    with pytest.raises(ConfigError, match="unknown domain"):
        C.domain_documents("web")


def test_streaming_shuffle_and_mixture(tmp_path):
    docs_a = [f"a{i}" for i in range(40)]
    docs_b = [f"b{i}" for i in range(40)]
    fa = C.write_jsonl_shards(docs_a, tmp_path / "a", n_shards=4)
    fb = C.write_jsonl_shards(docs_b, tmp_path / "b", n_shards=2)
    assert len(fa) == 4 and json.loads(fa[1].read_text().splitlines()[0]) == {"text": "a1", "id": 1}
    plain = [r["text"] for r in C.stream_documents(fa)]
    assert sorted(plain) == sorted(docs_a)
    shuffled = [r["text"] for r in C.stream_documents(fa, shuffle_buffer=8, seed=0)]
    assert sorted(shuffled) == sorted(docs_a) and shuffled != plain
    again = [r["text"] for r in C.stream_documents(fa, shuffle_buffer=8, seed=0)]
    assert again == shuffled
    mixed = list(C.mix_streams({"a": C.stream_documents(fa), "b": C.stream_documents(fb)},
                               {"a": 0.75, "b": 0.25}, seed=0))
    assert {r["domain"] for r in mixed} == {"a", "b"}
    assert all(r["text"][0] == r["domain"] for r in mixed)
    share_a = sum(r["domain"] == "a" for r in mixed) / len(mixed)
    assert 0.6 < share_a < 0.9
    with pytest.raises(ConfigError, match="sum to 1"):
        C.mix_streams({"a": C.stream_documents(fa)}, {"a": 0.5})
    with pytest.raises(CorpusError, match="not found"):
        C.stream_documents([tmp_path / "missing.jsonl"])


# ------------------------------------------------------------------------- mixtures


def test_mixture_blocks_proportions_and_determinism():
    import torch

    blocks = {"x": torch.zeros(50, 4, dtype=torch.long), "y": torch.ones(30, 4, dtype=torch.long)}
    out = C.mixture_blocks(blocks, {"x": 0.25, "y": 0.75}, 100, seed=0)
    assert out.shape == (100, 4) and int((out[:, 0] == 1).sum()) == 75
    assert torch.equal(out, C.mixture_blocks(blocks, {"x": 0.25, "y": 0.75}, 100, seed=0))
    only_x = C.mixture_blocks(blocks, {"x": 1.0}, 10, seed=0)
    assert int(only_x.sum()) == 0
    with pytest.raises(ConfigError):
        C.mixture_blocks(blocks, {"z": 1.0}, 10)
    with pytest.raises(ConfigError):
        C.mixture_blocks(blocks, {"x": 0.0}, 10)


def test_mixture_points_cover_the_simplex():
    pts = C.mixture_points(0.25)
    assert len(pts) == 15
    assert all(math.isclose(sum(p.values()), 1.0) for p in pts)
    with pytest.raises(ConfigError):
        C.mixture_points(0.3)


def test_shipped_grid_is_complete_and_consistent():
    grid = C.load_mixture_grid()
    assert grid["domains"] == list(C.DOMAINS)
    assert [r["weights"] for r in grid["rows"]] == C.mixture_points(grid["step"])
    assert grid["model"] == C.MIXTURE_MODEL and grid["train"] == C.MIXTURE_TRAIN
    for d in C.DOMAINS:  # more of a domain never hurts it much, and all of it is far better than none
        alone = next(r for r in grid["rows"] if r["weights"][d] == 1.0)["val_loss"][d]
        never = [r["val_loss"][d] for r in grid["rows"] if r["weights"][d] == 0.0]
        assert alone < min(never) - 0.1
    with pytest.raises(CorpusError):
        C.load_mixture_grid("/nonexistent/grid.json")


@pytest.mark.slow
def test_a_grid_point_is_reproduced_by_train_mixture():
    grid = C.load_mixture_grid()
    row = next(r for r in grid["rows"] if r["weights"] == {"shakespeare": 0.5, "pydoc": 0.25, "code": 0.25})
    got = C.train_mixture(C.MixtureData.build(), row["weights"])
    for d in C.DOMAINS:
        assert abs(got[d] - row["val_loss"][d]) < 0.02, (d, got, row)


def test_mixture_widget_reads_the_grid():
    from course.widgets import mixture_explorer, mixture_figure

    grid = C.load_mixture_grid()
    w = mixture_explorer(grid)
    w.set(shakespeare=1.0, pydoc=0.0)
    row = next(r for r in grid["rows"] if r["weights"]["shakespeare"] == 1.0)
    assert list(w.figure.data[0].y) == [row["val_loss"][d] for d in C.DOMAINS]
    best = [min(r["val_loss"][d] for r in grid["rows"]) for d in C.DOMAINS]
    assert list(w.figure.data[1].y) == best
    w.set(shakespeare=0.75, pydoc=0.5)  # sums past 1: a message, the figure stays
    assert "add up to 1.25" in w.message.value
    assert list(w.figure.data[0].y) == [row["val_loss"][d] for d in C.DOMAINS]
    with pytest.raises(ConfigError, match="no mixture"):
        mixture_figure(grid, {"shakespeare": 0.3, "pydoc": 0.7, "code": 0.0})


def test_cli_module_runs_a_tiny_grid(tmp_path, monkeypatch, capsys):
    data = C.MixtureData.build(chars_per_domain=4_000, val_chars_per_domain=2_000, chunk_chars=500)
    monkeypatch.setattr(C.MixtureData, "build", classmethod(lambda cls, **kw: data))
    monkeypatch.setitem(C.MIXTURE_TRAIN, "steps", 3)
    out = tmp_path / "grid.json"
    assert C.main(["mixture-grid", "--step", "0.5", "--out", str(out)]) == 0
    grid = json.loads(out.read_text())
    assert len(grid["rows"]) == 6 and grid["train"]["steps"] == 3
    assert "wrote" in capsys.readouterr().out
    assert C.main(["mixture-grid", "--step", "0.3", "--out", str(out)]) == 2
