"""The Markov corpus: exact stationary distribution and entropy rate, checked by sampling."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from course.errors import ConfigError, CorpusError
from course.synthetic import DEFAULT_ALPHABET, MarkovSource, synthetic_corpus


@pytest.fixture(scope="module", params=[1, 2], ids=["order1", "order2"])
def source(request) -> MarkovSource:
    return MarkovSource(order=request.param, seed=7)


def test_transition_rows_are_distributions(source):
    P = source.transitions
    K = len(DEFAULT_ALPHABET)
    assert P.shape == (K**source.order, K)
    assert np.all(P > 0)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-12)
    # Sparse-ish: most of each row's mass sits on a few characters, so it is learnable.
    top3 = np.sort(P, axis=1)[:, -3:].sum(axis=1)
    assert np.median(top3) > 0.6


def test_stationary_distribution_is_exact(source):
    pi, M = source.stationary, source.state_matrix()
    assert pi.shape == (source.num_states,) and np.all(pi >= 0)
    assert math.isclose(pi.sum(), 1.0, abs_tol=1e-12)
    np.testing.assert_allclose(pi @ M, pi, atol=1e-13)
    np.testing.assert_allclose(M.sum(axis=1), 1.0, atol=1e-12)


def test_entropy_rate_matches_the_definition(source):
    # H = - sum_s pi(s) sum_x P(x|s) log P(x|s), written as a plain double loop.
    P, pi = source.transitions, source.stationary
    H = 0.0
    for s in range(len(P)):
        H -= pi[s] * sum(p * math.log(p) for p in P[s])
    assert math.isclose(source.entropy_rate, H, rel_tol=1e-10)
    assert math.isclose(source.bits_per_char, H / math.log(2), rel_tol=1e-12)
    assert 0 < H < math.log(len(DEFAULT_ALPHABET))  # below the uniform distribution's entropy


def test_entropy_rate_equals_a_monte_carlo_estimate(source):
    texts = source.sample_batch(200, 2500, rng=123)  # 500 K characters
    surprisal = -np.concatenate([source.conditional_log_probs(t) for t in texts])
    estimate = surprisal.mean()
    stderr = surprisal.std() / math.sqrt(len(surprisal))
    assert abs(estimate - source.entropy_rate) < 4 * stderr
    assert abs(estimate - source.entropy_rate) < 0.01 * source.entropy_rate


def test_documents_start_in_the_stationary_distribution(source):
    K = len(DEFAULT_ALPHABET)
    starts = source.sample_batch(40_000, 1, rng=5)
    counts = np.bincount([DEFAULT_ALPHABET.index(c) for c in starts], minlength=K)
    expected = source.marginal(1) * len(starts)
    np.testing.assert_allclose(counts, expected, atol=5 * np.sqrt(expected).max())
    # The whole-sample entropy: H(first `order` chars) + (n - order) * rate.
    n = 6
    short = source.sample_batch(20_000, n, rng=9)
    mc = -np.mean([source.log_prob(t) for t in short])
    assert abs(mc - source.sequence_entropy(n)) < 0.03 * source.sequence_entropy(n)


def test_log_prob_is_a_normalised_distribution_over_strings():
    src = MarkovSource(alphabet="abc", order=2, concentration=0.5, seed=3)
    for n in (1, 2, 3, 4):
        total = sum(math.exp(src.log_prob("".join(w))) for w in itertools.product("abc", repeat=n))
        assert math.isclose(total, 1.0, rel_tol=1e-12), n
    assert src.log_prob("") == 0.0
    # Exact entropy of all 3-character strings equals sequence_entropy(3).
    H3 = -sum(math.exp(lp) * lp for lp in (src.log_prob("".join(w)) for w in itertools.product("abc", repeat=3)))
    assert math.isclose(H3, src.sequence_entropy(3), rel_tol=1e-10)


def test_both_sampling_loops_agree_and_are_deterministic(source):
    rng = np.random.default_rng(0)
    states = rng.choice(source.num_states, size=4, p=source.stationary)
    u = rng.random((4, 300))
    a = source._walk(states, u, 300 + source.order, loop=True)
    b = source._walk(states, u, 300 + source.order, loop=False)
    np.testing.assert_array_equal(a, b)
    assert source.sample(500, rng=1) == source.sample(500, rng=1) != source.sample(500, rng=2)
    assert len(source.sample(3, rng=0)) == 3 and source.sample(0, rng=0) == ""
    assert [len(t) for t in source.sample_batch(3, 1, rng=0)] == [1, 1, 1]


def test_same_seed_same_source_different_seed_different_source():
    a, b, c = MarkovSource(seed=1), MarkovSource(seed=1), MarkovSource(seed=2)
    np.testing.assert_array_equal(a.transitions, b.transitions)
    assert a.entropy_rate == b.entropy_rate != c.entropy_rate
    assert "bits/char" in repr(a)


def test_default_corpus_is_ascii_and_carries_its_floor():
    corpus = synthetic_corpus()
    assert 500_000 <= corpus.num_chars <= 1_000_000
    assert len(corpus.val) >= 1 and len(corpus.train) > len(corpus.val)
    text = corpus.text("train") + corpus.text("val")
    assert text.isascii() and len(text.encode("utf-8")) == len(text)  # bits/byte == bits/char
    assert set(text) <= set(DEFAULT_ALPHABET) | {"\n"}
    src = corpus.meta["markov_source"]
    assert corpus.entropy_rate == src.entropy_rate == corpus.meta["entropy_rate"]
    assert math.isclose(corpus.meta["bits_per_char"], corpus.entropy_rate / math.log(2))
    assert corpus.name == "synthetic" and "Markov" in corpus.source


def test_corpus_is_deterministic_and_split_seed_only_moves_the_split():
    a = synthetic_corpus(n_docs=30, doc_chars=200, seed=4)
    b = synthetic_corpus(n_docs=30, doc_chars=200, seed=4)
    assert a.train == b.train and a.val == b.val
    c = synthetic_corpus(n_docs=30, doc_chars=200, seed=4, split_seed=9)
    assert sorted(c.documents) == sorted(a.documents) and c.val != a.val
    d = synthetic_corpus(n_docs=30, doc_chars=200, seed=5)
    assert d.entropy_rate != a.entropy_rate and d.documents != a.documents
    assert all(len(doc) == 200 for doc in a.documents)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"alphabet": "a"}, "at least 2"),
        ({"alphabet": "aab"}, "repeats"),
        ({"alphabet": "ab\u00e9"}, "ASCII"),
        ({"order": 0}, "order"),
        ({"order": 4}, "states"),
        ({"concentration": 0}, "concentration"),
    ],
)
def test_bad_source_parameters(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        MarkovSource(**kwargs)


def test_bad_corpus_parameters_and_foreign_text():
    with pytest.raises(ConfigError, match="n_docs"):
        synthetic_corpus(n_docs=0)
    with pytest.raises(ConfigError, match="doc_chars"):
        synthetic_corpus(doc_chars=-1)
    src = MarkovSource(alphabet="ab", order=1)
    with pytest.raises(CorpusError, match="'c'.*not in this source's alphabet"):
        src.log_prob("abc")
    with pytest.raises(CorpusError, match="not in this source's alphabet"):
        src.conditional_log_probs("ab\u00e9")
