"""A Markov-chain corpus whose entropy rate is known exactly.

On real text nobody knows the best achievable loss, so a perplexity of 5 could be great or
poor. Text drawn from a known source fixes that: no model, however large, can beat the
source's *entropy rate* on average, so a model's validation loss (nats per character) can
be compared with a hard floor.

The source is an order-`k` Markov chain over a small ASCII alphabet: the next character
depends only on the previous `k`. Its state is the last `k` characters, so there are
`S = K**k` states for an alphabet of `K` characters. Each state's next-character
distribution is drawn from a Dirichlet with a small concentration, which makes it peaked
(a few likely successors), so a small model can learn it. With `π` the stationary
distribution over states,

    H = - Σ_s π(s) Σ_x P(x | s) log P(x | s)        (nats per character)

is the entropy rate: the expected negative log-probability of the next character once the
chain runs in its stationary regime. Every document starts from `π`, so the rate applies
from the first predicted character. Text is ASCII, so one character is one byte and bits
per character equal bits per byte.
"""

from __future__ import annotations

import math
from bisect import bisect_left

import numpy as np

from course.data import Corpus, make_corpus
from course.errors import ConfigError, CorpusError

__all__ = ["DEFAULT_ALPHABET", "MarkovSource", "synthetic_corpus"]

DEFAULT_ALPHABET = "abcdefghijklmnopqrstuvwxyz "
MAX_STATES = 4096  # the stationary distribution is solved densely: an S x S matrix
# Share of a uniform distribution mixed into every row: keeps every probability positive,
# so the chain is ergodic (a unique stationary distribution) and every string in the
# alphabet has a finite log-probability.
UNIFORM_MIX = 1e-3

SeedLike = int | np.random.Generator | None


class MarkovSource:
    """An order-`order` Markov chain over `alphabet` with exact stationary distribution and entropy rate.

    Attributes (shapes with `K = len(alphabet)`, `S = K ** order`):

    * `transitions`: (S, K), row `s` is P(next char | state s); rows sum to 1.
    * `stationary`: (S,), the distribution π over states with π M = π, where M is the
      (S, S) state-to-state matrix (`state_matrix()`).
    * `entropy_rate`: nats per character; `bits_per_char` the same in bits.

    A state is the last `order` characters read as a base-K number, oldest character most
    significant: for order 2, ``"ab"`` is state ``index('a') * K + index('b')``.
    """

    def __init__(
        self,
        alphabet: str = DEFAULT_ALPHABET,
        order: int = 2,
        concentration: float = 0.1,
        seed: int = 0,
    ) -> None:
        if not isinstance(alphabet, str) or len(alphabet) < 2 or not alphabet.isascii():
            raise ConfigError(f"alphabet must be a string of at least 2 ASCII characters, got {alphabet!r}")
        if len(set(alphabet)) != len(alphabet):
            raise ConfigError(f"alphabet {alphabet!r} repeats a character; list each character once")
        if isinstance(order, bool) or not isinstance(order, int) or order < 1:
            raise ConfigError(f"order must be an integer >= 1, got {order!r}")
        if len(alphabet) ** order > MAX_STATES:
            raise ConfigError(
                f"an order-{order} chain over {len(alphabet)} characters has {len(alphabet) ** order:,} "
                f"states (more than {MAX_STATES:,}); use a lower order or a smaller alphabet"
            )
        if not isinstance(concentration, (int, float)) or not concentration > 0:
            raise ConfigError(f"concentration must be a positive number, got {concentration!r}")
        self.alphabet = alphabet
        self.order = order
        self.concentration = float(concentration)
        self.seed = seed
        K = len(alphabet)
        S = K**order
        rng = np.random.default_rng(seed)
        # Dirichlet rows via normalised Gamma draws; a small concentration gives peaked rows.
        g = rng.standard_gamma(self.concentration, size=(S, K))
        rows = g / np.maximum(g.sum(axis=1, keepdims=True), np.finfo(float).tiny)
        rows[g.sum(axis=1) == 0] = 1.0 / K  # (never seen in practice) all draws underflowed
        self.transitions = (1 - UNIFORM_MIX) * rows + UNIFORM_MIX / K  # (S, K)
        self.transitions /= self.transitions.sum(axis=1, keepdims=True)
        self.stationary = self._solve_stationary()  # (S,)
        logp = np.log(self.transitions)
        self.entropy_rate = float(-(self.stationary @ (self.transitions * logp).sum(axis=1)))
        self._log_transitions = logp
        self._cdf = np.cumsum(self.transitions, axis=1)
        self._cdf[:, -1] = 1.0  # guard against round-off: a uniform draw < 1 always lands
        table = np.full(128, -1, dtype=np.int64)
        table[np.frombuffer(alphabet.encode("ascii"), dtype=np.uint8)] = np.arange(K)
        self._char_index = table
        self._chars = np.frombuffer(alphabet.encode("ascii"), dtype=np.uint8)

    # ----------------------------------------------------------------- exact quantities

    @property
    def num_states(self) -> int:
        return len(self.alphabet) ** self.order

    @property
    def bits_per_char(self) -> float:
        """The entropy rate in bits per character (= bits per byte: the text is ASCII)."""
        return self.entropy_rate / math.log(2)

    def state_matrix(self) -> np.ndarray:
        """(S, S) matrix M with M[s, s'] = P(state s' follows state s)."""
        K, S = len(self.alphabet), self.num_states
        M = np.zeros((S, S))
        nxt = (np.arange(S)[:, None] * K + np.arange(K)[None, :]) % S  # (S, K) next state
        np.add.at(M, (np.repeat(np.arange(S), K), nxt.ravel()), self.transitions.ravel())
        return M

    def _solve_stationary(self) -> np.ndarray:
        # π M = π with Σ π = 1: solve (Mᵀ - I) πᵀ = 0 with one equation swapped for the sum.
        M = self.state_matrix()
        A = M.T - np.eye(len(M))
        A[-1, :] = 1.0
        b = np.zeros(len(M))
        b[-1] = 1.0
        pi = np.linalg.solve(A, b)
        pi = np.clip(pi, 0.0, None)
        return pi / pi.sum()

    def marginal(self, n_chars: int) -> np.ndarray:
        """Distribution of the first `n_chars` (< order) characters: π summed over the rest, shape (K**n_chars,)."""
        K = len(self.alphabet)
        return self.stationary.reshape(K**n_chars, -1).sum(axis=1)

    def sequence_entropy(self, n_chars: int) -> float:
        """Exact expected -log P (nats) of a whole `n_chars`-character sample.

        The first `order` characters are drawn jointly from π (entropy H(π)); each later
        character costs the entropy rate on average: H(π) + (n - order) · H.
        """
        if n_chars <= 0:
            return 0.0
        first = self.marginal(min(n_chars, self.order))
        first = first[first > 0]
        start = float(-(first * np.log(first)).sum())
        return start + max(0, n_chars - self.order) * self.entropy_rate

    # ------------------------------------------------------------------------ sampling

    def _indices(self, text: str) -> np.ndarray:
        try:
            raw = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
        except UnicodeEncodeError:
            raw = None
        idx = None if raw is None else self._char_index[raw]
        if idx is None or (idx < 0).any():
            bad = next(c for c in text if c not in self.alphabet)
            raise CorpusError(
                f"text contains {bad!r}, which is not in this source's alphabet {self.alphabet!r}; "
                "score only text drawn from the same alphabet"
            )
        return idx

    def sample_batch(self, n_seqs: int, n_chars: int, rng: SeedLike) -> list[str]:
        """`n_seqs` independent stationary samples of `n_chars` characters each.

        The walk is vectorised across sequences (one NumPy step per character position),
        so many documents are as cheap as one. The first `order` characters are one state
        drawn from π; then each character is the inverse-CDF of a uniform draw. `rng` is a
        seed or a NumPy Generator (explicit, for reproducibility; None draws fresh entropy).
        """
        if n_seqs < 0 or n_chars < 0:
            raise ConfigError(f"n_seqs and n_chars must be >= 0, got {n_seqs} and {n_chars}")
        rng = np.random.default_rng(rng)
        states = rng.choice(self.num_states, size=n_seqs, p=self.stationary)  # (n,)
        u = rng.random((n_seqs, max(0, n_chars - self.order)))  # (n, n_chars - order)
        out = self._walk(states, u, n_chars)
        chars = self._chars[out]  # (n, n_chars) ASCII codes
        return [r.tobytes().decode("ascii") for r in chars]

    def _walk(self, states: np.ndarray, u: np.ndarray, n_chars: int, *, loop: bool | None = None) -> np.ndarray:
        """Character indices (n, n_chars) of walks from start `states` (n,) driven by uniforms `u`.

        Both branches map the same uniforms to the same characters (inverse CDF, i.e.
        `bisect_left` on each row's cumulative sums); `loop` picks the plain-Python branch,
        by default only for a single sequence, where per-step NumPy overhead dominates.
        """
        K, S, k = len(self.alphabet), self.num_states, self.order
        n_seqs = len(states)
        out = np.empty((n_seqs, max(n_chars, k)), dtype=np.int64)
        for j in range(k):  # digits of the start state, oldest first
            out[:, j] = states // K ** (k - 1 - j) % K
        if (n_seqs == 1) if loop is None else loop:
            cdf = self._cdf.tolist()
            for row, s, us in zip(out, states.tolist(), u.tolist(), strict=True):
                for t, ut in enumerate(us, start=k):
                    x = bisect_left(cdf[s], ut)
                    row[t] = x
                    s = (s * K + x) % S
        else:
            s = states
            for t in range(k, n_chars):
                x = (self._cdf[s] < u[:, t - k, None]).sum(axis=1)  # (n,) = bisect_left per row
                out[:, t] = x
                s = (s * K + x) % S
        return out[:, :n_chars]

    def sample(self, n_chars: int, rng: SeedLike) -> str:
        """One stationary sample of `n_chars` characters (`rng`: a seed or a NumPy Generator)."""
        return self.sample_batch(1, n_chars, rng)[0]

    # ------------------------------------------------------------------- probabilities

    def conditional_log_probs(self, text: str) -> np.ndarray:
        """log P(x_t | previous `order` chars) for t = order .. len-1, shape (len(text) - order,).

        Their negative mean over a long sample estimates the entropy rate.
        """
        idx = self._indices(text)
        K, k = len(self.alphabet), self.order
        n = len(idx) - k
        if n <= 0:
            return np.zeros(0)
        s = np.zeros(n, dtype=np.int64)
        for j in range(k):
            s = s * K + idx[j : j + n]
        return self._log_transitions[s, idx[k:]]

    def log_prob(self, text: str) -> float:
        """Natural-log probability of `text` as a stationary sample (the start state from π)."""
        idx = self._indices(text)
        if len(idx) == 0:
            return 0.0
        K, m = len(self.alphabet), min(len(idx), self.order)
        start = 0
        for x in idx[:m].tolist():
            start = start * K + x
        head = math.log(self.marginal(m)[start])
        return head + float(self.conditional_log_probs(text).sum())

    def __repr__(self) -> str:
        return (
            f"MarkovSource(order={self.order}, alphabet={len(self.alphabet)} chars, "
            f"concentration={self.concentration}, seed={self.seed}, "
            f"entropy_rate={self.entropy_rate:.4f} nats = {self.bits_per_char:.4f} bits/char)"
        )


def synthetic_corpus(
    n_docs: int = 400,
    doc_chars: int = 2000,
    *,
    seed: int = 0,
    order: int = 2,
    alphabet: str = DEFAULT_ALPHABET,
    concentration: float = 0.1,
    val_fraction: float = 0.1,
    split_seed: int | None = None,
    max_chars: int | None = None,
) -> Corpus:
    """`n_docs` documents of `doc_chars` characters from one `MarkovSource` (800 K chars by default).

    `seed` fixes both the source and the samples; `split_seed` (default: `seed`) only the
    train / validation split, so `load_corpus("synthetic", seed=s)` keeps the same source
    and floor for every `s`. `corpus.entropy_rate` (nats/char) and ``corpus.meta`` record
    the floor; ``corpus.meta["markov_source"]`` is the source itself, to score text exactly.
    """
    for label, value in (("n_docs", n_docs), ("doc_chars", doc_chars)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{label} must be a positive integer, got {value!r}")
    src = MarkovSource(alphabet=alphabet, order=order, concentration=concentration, seed=seed)
    docs = src.sample_batch(n_docs, doc_chars, np.random.default_rng([seed, 1]))
    meta = {
        "entropy_rate": src.entropy_rate,
        "bits_per_char": src.bits_per_char,
        "order": order,
        "alphabet": alphabet,
        "concentration": float(concentration),
        "seed": seed,
        "markov_source": src,
    }
    description = (
        f"synthetic: order-{order} Markov chain over {len(alphabet)} characters "
        f"(concentration {concentration}, seed {seed}); entropy rate {src.entropy_rate:.4f} "
        f"nats = {src.bits_per_char:.4f} bits per char"
    )
    return make_corpus(
        "synthetic", docs, source=description, val_fraction=val_fraction,
        seed=seed if split_seed is None else split_seed, max_chars=max_chars, meta=meta,
    )
