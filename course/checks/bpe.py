"""Checks for lesson 02 (byte-level BPE from scratch).

The exercises build the simple, minbpe-style BPE on raw UTF-8 bytes: count adjacent
pairs, merge one pair, the training loop, encoding and decoding. Every check compares
the learner's function with a small reference written here, on hand-picked edge cases
and seeded random inputs. When the answer is wrong, the learner's output is also
compared with a few *typical* wrong implementations (overlapping merges, a tie broken by
first occurrence, merges applied in reading order, ...) so the hint can name the mistake.

Conventions shared with the lesson (and with `course.tokenizer.bpe`):

* ids 0..255 are the bytes; merge number k (counting from 0) creates id ``256 + k``;
* a merge list is ``[(left_id, right_id), ...]`` in the order the merges were learned;
* training picks the most frequent adjacent pair; among equally frequent pairs, the one
  whose ``(bytes of left, bytes of right)`` is greatest (Python's comparison of bytes).
"""

from __future__ import annotations

import copy
import functools
import random
from collections.abc import Callable, Sequence
from typing import Any

from course.checks._core import CheckFailed, call, exercise, expect_equal, expect_type, show

Pair = tuple[int, int]
Merges = list[Pair]

# Text the training and encoding checks learn from: English with punctuation, repeated
# words (so pairs reach real counts) and ties.
_ENGLISH = (
    "The keeper of the lighthouse wrote the names of the ships in a book. "
    "The ships came in at night, and the keeper lit the lamp for them; "
    "when the wind was high the lamp shook, but the light held.\n"
    "She thought: the sea keeps time, and the lamp keeps the sea in its place.\n"
)
_UNICODE = "naïve café — 東京 東京 😀😀 ça va? Ελληνικά, ελληνικά; déjà vu, déjà lu."


# --------------------------------------------------------------------------- references


def _ref_pair_counts(ids: Sequence[int]) -> dict[Pair, int]:
    counts: dict[Pair, int] = {}
    for pair in zip(ids, ids[1:], strict=False):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def _ref_merge(ids: Sequence[int], pair: Pair, new_id: int) -> list[int]:
    out: list[int] = []
    i, n = 0, len(ids)
    while i < n:
        if i + 1 < n and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _vocab(merges: Sequence[Pair]) -> dict[int, bytes]:
    vocab = {i: bytes([i]) for i in range(256)}
    for k, (a, b) in enumerate(merges):
        vocab[256 + k] = vocab[a] + vocab[b]
    return vocab


def _tie_greatest_bytes(counts: dict[Pair, int], vocab: dict[int, bytes]) -> Pair:
    return max(counts, key=lambda p: (counts[p], vocab[p[0]], vocab[p[1]]))


def _ref_train(text: str, vocab_size: int,
               choose: Callable[[dict[Pair, int], dict[int, bytes]], Pair] = _tie_greatest_bytes,
               ) -> Merges:
    """The simple loop; `choose` picks the pair (the wrong variants swap it out)."""
    ids = list(text.encode())
    vocab = {i: bytes([i]) for i in range(256)}
    merges: Merges = []
    for k in range(vocab_size - 256):
        counts = _ref_pair_counts(ids)
        if not counts:
            break
        pair = choose(counts, vocab)
        new_id = 256 + k
        ids = _ref_merge(ids, pair, new_id)
        vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]
        merges.append(pair)
    return merges


def _ref_encode(text: str, merges: Sequence[Pair]) -> list[int]:
    rank = {pair: k for k, pair in enumerate(merges)}
    ids = list(text.encode())
    while len(ids) >= 2:
        pair = min(_ref_pair_counts(ids), key=lambda p: rank.get(p, len(rank)))
        if pair not in rank:
            break
        ids = _ref_merge(ids, pair, 256 + rank[pair])
    return ids


def _ref_decode(ids: Sequence[int], merges: Sequence[Pair]) -> str:
    vocab = _vocab(merges)
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")


# ---------------------------------------------------------------------------- helpers


def _random_ids(rng: random.Random, n: int, alphabet: Sequence[int]) -> list[int]:
    return [rng.choice(alphabet) for _ in range(n)]


def _random_text(rng: random.Random, n: int, alphabet: str = "ab c\n") -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _short(text: str, limit: int = 40) -> str:
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}… ({len(text)} chars)"


def _as_pair_list(name: str, desc: str, got: Any) -> Merges:
    """The learner's merge list as a list of int pairs; CheckFailed explains anything else."""
    if isinstance(got, dict):
        raise CheckFailed(name, f"on input {desc} — expected a list of (left_id, right_id) pairs, "
                                f"got a dict: {show(got)}",
                          hint="return the merges as a list in the order they were learned, "
                               "e.g. [(101, 32), (116, 104), ...]; merge k creates id 256 + k")
    expect_type(name, desc, (list, tuple), got,
                hint="return a list of (left_id, right_id) tuples, one per merge, in order")
    pairs: Merges = []
    for k, p in enumerate(got):
        if (not isinstance(p, (tuple, list)) or len(p) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) for x in p)):
            raise CheckFailed(name, f"on input {desc} — merge #{k} is {show(p)}, not a pair of "
                                    "int ids", hint="each merge is a tuple (left_id, right_id)")
        pairs.append((p[0], p[1]))
    return pairs


def _ids_list(name: str, desc: str, got: Any, what: str) -> list[int]:
    expect_type(name, desc, list, got, hint=f"return {what} as a Python list of ints")
    bad = [x for x in got if not isinstance(x, int) or isinstance(x, bool)]
    if bad:
        raise CheckFailed(name, f"on input {desc} — the list holds {show(bad[0])}, not an int id",
                          hint=f"return {what} as a list of ints")
    return got


def _reproduces(wrong: Callable[..., Any], seen: Sequence[tuple[tuple[Any, ...], Any]]) -> bool:
    """Does the wrong implementation `wrong` give every answer the learner gave?"""
    try:
        return all(wrong(*case) == got for case, got in seen)
    except Exception:  # the variant does not apply to one of the inputs
        return False


def _run_cases(
    name: str,
    fn: Callable[..., Any],
    cases: Sequence[tuple[Any, ...]],
    *,
    describe: Callable[..., str],
    reference: Callable[..., Any],
    accept: Callable[[str, tuple[Any, ...], tuple[Any, ...], Any], Any],
    mistakes: Sequence[tuple[Callable[..., Any], str]],
    explain: Callable[[tuple[Any, ...], str, Any, Any, str | None], None],
    on_crash: Callable[[CheckFailed], CheckFailed] | None = None,
) -> int:
    """Run the learner's `fn` on every case; fail with an explanation on the first wrong one.

    `accept(desc, case, args, got)` validates and normalises an answer (`args` are the
    copies the learner received, to detect mutation). On a wrong answer, the remaining
    cases still run, so that the hint can come from the first of `mistakes` (typical wrong
    implementations) reproducing *all* the learner's answers: one wrong case alone often
    matches several mistakes. `explain(case, desc, expected, got, hint)` raises.
    """
    seen: list[tuple[tuple[Any, ...], Any]] = []
    failure: tuple[tuple[Any, ...], str, Any, Any] | None = None
    for case in cases:
        desc = describe(*case)
        args = copy.deepcopy(case)
        try:
            got = call(name, fn, *args, inputs_desc=desc)
        except CheckFailed as e:
            if failure is not None:
                break  # report the earlier wrong answer, not this crash
            raise (on_crash(e) if on_crash else e) from None
        try:
            got = accept(desc, case, args, got)
        except CheckFailed:
            if failure is not None:
                break
            raise
        seen.append((case, got))
        if failure is None:
            expected = reference(*case)
            if got != expected:
                failure = (case, desc, expected, got)
    if failure is None:
        return len(cases)
    hint = next((h for wrong, h in mistakes if _reproduces(wrong, seen)), None)
    explain(*failure, hint)
    raise AssertionError("unreachable: explain() must raise")  # pragma: no cover


def _check_unchanged(name: str, desc: str, before: list[int], after: Sequence[int]) -> None:
    if list(after) != before:
        raise CheckFailed(name, f"on input {desc} your function changed its input list to "
                                f"{show(list(after))}",
                          hint="build and return a new list; the caller still needs the old one")


# ------------------------------------------------------------------------ pair counts


def _pair_count_cases() -> list[list[int]]:
    rng = random.Random(2)
    cases = [[], [7], [1, 2], [1, 1, 1], [1, 1, 1, 1], [1, 2, 1, 2, 1], [5, 6, 7, 5, 6],
             [256, 32, 256, 300, 256, 32], list("naïve café".encode())]
    cases += [_random_ids(rng, rng.randint(2, 60), [0, 1, 2, 300]) for _ in range(6)]
    cases += [_random_ids(rng, rng.randint(20, 200), range(260)) for _ in range(2)]
    return cases


def _counts_without_last(ids: list[int]) -> dict[Pair, int]:
    return _ref_pair_counts(ids[:-1])


def _counts_wrapped(ids: list[int]) -> dict[Pair, int]:
    return _ref_pair_counts([*ids, ids[0]]) if ids else {}


def _counts_once(ids: list[int]) -> dict[Pair, int]:
    return dict.fromkeys(_ref_pair_counts(ids), 1)


def _counts_without_first(ids: list[int]) -> dict[Pair, int]:
    return _ref_pair_counts(ids[1:])


_PAIR_COUNT_MISTAKES = [
    (_counts_without_last, "the last pair (ids[-2], ids[-1]) is missing: i runs over "
                           "range(len(ids) - 1), and pair i is (ids[i], ids[i + 1])"),
    (_counts_wrapped, "one pair wraps around from the last id to the first; the sequence "
                      "is not circular"),
    (_counts_once, "every occurrence counts, overlapping ones too: [1, 1, 1] holds the pair "
                   "(1, 1) twice"),
    (_counts_without_first, "the first pair (ids[0], ids[1]) is missing: start at i = 0"),
]


@exercise("get_pair_counts")
def get_pair_counts(fn: Callable[[list[int]], dict[Pair, int]]) -> int:
    """`fn(ids)` → {(ids[i], ids[i+1]): number of positions i with that pair}."""
    name = "get_pair_counts"

    def accept(desc: str, case: tuple[list[int]], args: tuple[list[int]], got: Any) -> dict:
        _check_unchanged(name, desc, case[0], args[0])
        expect_type(name, desc, dict, got,
                    hint="return a dict (or collections.Counter) mapping (a, b) tuples to counts")
        bad_key = next((k for k in got if not (isinstance(k, tuple) and len(k) == 2)), None)
        if bad_key is not None:
            raise CheckFailed(name, f"on input {desc} — key {show(bad_key)} is not a pair",
                              hint="use the tuple (ids[i], ids[i + 1]) as the key")
        return dict(got)

    def explain(case: tuple[list[int]], desc: str, expected: dict, got: dict,
                hint: str | None) -> None:
        if hint is None and any(k not in expected for k in got):
            hint = "count only neighbours: the pairs (ids[i], ids[i + 1])"
        expect_equal(name, desc, expected, got,
                     hint=hint or "for every i from 0 to len(ids) - 2, add 1 to the count of "
                                  "(ids[i], ids[i + 1])")

    return _run_cases(name, fn, [(ids,) for ids in _pair_count_cases()],
                      describe=lambda ids: f"ids={show(ids)}", reference=_ref_pair_counts,
                      accept=accept, mistakes=_PAIR_COUNT_MISTAKES, explain=explain)


# ------------------------------------------------------------------------------ merge


def _merge_overlapping(ids: Sequence[int], pair: Pair, new_id: int) -> list[int]:
    """Wrong: a match at i does not consume position i + 1, which is dropped only if it
    starts no match of its own."""
    out = []
    for i in range(len(ids)):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
        elif not (i > 0 and (ids[i - 1], ids[i]) == pair):
            out.append(ids[i])
    return out


def _merge_step_one(ids: Sequence[int], pair: Pair, new_id: int) -> list[int]:
    """Wrong: after a match the loop moves on by 1 instead of 2."""
    out = []
    for i in range(len(ids)):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
        else:
            out.append(ids[i])
    return out


def _merge_right_to_left(ids: Sequence[int], pair: Pair, new_id: int) -> list[int]:
    return _ref_merge(ids[::-1], (pair[1], pair[0]), new_id)[::-1]


def _merge_drop_last(ids: Sequence[int], pair: Pair, new_id: int) -> list[int]:
    """Wrong: the loop stops at len(ids) - 1 and never appends an unmerged last id."""
    out = []
    i = 0
    while i < len(ids) - 1:
        if (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _merge_skip_last_pair(ids: Sequence[int], pair: Pair, new_id: int) -> list[int]:
    """Wrong: the pair starting at len(ids) - 2 is never tested."""
    out = []
    i = 0
    while i < len(ids):
        if i + 2 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _merge_first_only(ids: Sequence[int], pair: Pair, new_id: int) -> list[int]:
    for i in range(len(ids) - 1):
        if (ids[i], ids[i + 1]) == pair:
            return [*ids[:i], new_id, *ids[i + 2:]]
    return list(ids)


_OVERLAP = ("after a match at i, continue at i + 2: the id at i + 1 is used up by the match, "
            "so [1, 1, 1] with pair (1, 1) becomes [new_id, 1]")
_MERGE_MISTAKES = [
    (_merge_step_one, _OVERLAP),
    (_merge_overlapping, _OVERLAP),
    (_merge_drop_last, "the last id went missing: when the loop ends, an id that was not merged "
                       "must still be copied to the output (loop while i < len(ids))"),
    (_merge_skip_last_pair, "the pair at the very end was not merged: test every position i "
                            "with i + 1 < len(ids)"),
    (_merge_right_to_left, "scan left to right: [1, 1, 1] with pair (1, 1) becomes "
                           "[new_id, 1], not [1, new_id]"),
    (_merge_first_only, "replace every occurrence of the pair, not only the first"),
]


def _merge_cases() -> list[tuple[list[int], Pair, int]]:
    rng = random.Random(3)
    cases: list[tuple[list[int], Pair, int]] = [
        ([1, 1, 1], (1, 1), 256),
        ([1, 1, 1, 1], (1, 1), 256),
        ([5, 1, 2], (1, 2), 256),
        ([1, 2, 3, 1, 2], (1, 2), 256),
        ([1, 2, 3, 1, 2, 4], (1, 2), 300),
        ([2, 1, 2, 1], (1, 2), 256),
        ([3, 4], (4, 3), 256),
        ([1, 2], (1, 2), 256),
        ([], (1, 2), 256),
        ([1], (1, 2), 256),
        (list(b"the theme of the thesis"), (116, 104), 256),
    ]
    for _ in range(8):
        ids = _random_ids(rng, rng.randint(2, 40), [1, 2, 3])
        i = rng.randrange(len(ids) - 1)
        cases.append((ids, (ids[i], ids[i + 1]), 256 + rng.randrange(20)))
    return cases


@exercise("merge")
def merge(fn: Callable[[list[int], Pair, int], list[int]]) -> int:
    """`fn(ids, pair, new_id)` replaces every non-overlapping occurrence, left to right."""
    name = "merge"

    def accept(desc: str, case: tuple[Any, ...], args: tuple[Any, ...], got: Any) -> list[int]:
        _check_unchanged(name, desc, case[0], args[0])
        return _ids_list(name, desc, got, "the merged ids")

    def explain(case: tuple[Any, ...], desc: str, expected: list[int], got: list[int],
                hint: str | None) -> None:
        expect_equal(name, desc, expected, got,
                     hint=hint or "walk i from 0: if (ids[i], ids[i + 1]) is the pair, emit "
                                  "new_id and skip 2, else copy ids[i] and skip 1")

    return _run_cases(name, fn, _merge_cases(),
                      describe=lambda ids, pair, new_id: f"ids={show(ids)}, pair={pair}, "
                                                         f"new_id={new_id}",
                      reference=_ref_merge, accept=accept, mistakes=_MERGE_MISTAKES,
                      explain=explain)


# -------------------------------------------------------------------------- train_bpe


def _tie_first_seen(counts: dict[Pair, int], vocab: dict[int, bytes]) -> Pair:
    return max(counts, key=counts.__getitem__)  # the first maximal pair in dict order


def _tie_greatest_ids(counts: dict[Pair, int], vocab: dict[int, bytes]) -> Pair:
    return max(counts, key=lambda p: (counts[p], p))


def _tie_smallest_bytes(counts: dict[Pair, int], vocab: dict[int, bytes]) -> Pair:
    return min(counts, key=lambda p: (-counts[p], vocab[p[0]], vocab[p[1]]))


def _tie_smallest_ids(counts: dict[Pair, int], vocab: dict[int, bytes]) -> Pair:
    return min(counts, key=lambda p: (-counts[p], p))


_TIE_HINT = ("among equally frequent pairs pick the one whose (vocab[left], vocab[right]) "
             "bytes are greatest: max(counts, key=lambda p: (counts[p], vocab[p[0]], "
             "vocab[p[1]])), where vocab maps each id to its bytes")


_TIE_MISTAKES = [
    (functools.partial(_ref_train, choose=_tie_first_seen),
     _TIE_HINT + " (max(counts, key=counts.get) keeps the first pair it met, which is not the "
                 "rule here)"),
    (functools.partial(_ref_train, choose=_tie_greatest_ids),
     _TIE_HINT + " (you compared the ids; compare the bytes the ids stand for: id 256 may stand "
                 "for b'th', which is smaller than b'z' = id 122)"),
    (functools.partial(_ref_train, choose=_tie_smallest_bytes),
     _TIE_HINT + " (you picked the smallest)"),
    (functools.partial(_ref_train, choose=_tie_smallest_ids), _TIE_HINT),
]


def _train_cases() -> list[tuple[str, int]]:
    rng = random.Random(4)
    cases = [("", 260), ("a", 260), ("aaaa", 262), ("hello", 256),
             ("hello world, hello bpe", 270), (_ENGLISH, 300), (_UNICODE, 290)]
    cases += [(_random_text(rng, rng.randint(100, 400)), 256 + rng.randint(10, 30))
              for _ in range(4)]
    return cases


def _explain_train(name: str, desc: str, text: str, vocab_size: int,
                   expected: Merges, got: Merges, hint: str | None) -> None:
    """Raise CheckFailed describing the first wrong merge (the learner's state up to it
    was the reference's, so the reference's counts at that step apply)."""
    k = next((i for i, (e, g) in enumerate(zip(expected, got, strict=False)) if e != g), None)
    if k is None:
        detail = (f"expected {len(expected)} merges (vocab_size - 256, or fewer when no pair "
                  f"is left), got {len(got)}")
        if hint is not None:
            pass
        elif len(expected) == vocab_size - 256:
            hint = ("train exactly vocab_size - 256 merges: the vocabulary is the 256 bytes plus "
                    "one new id per merge")
        elif len(got) > len(expected):
            hint = "stop when the ids have no pair left (fewer than 2 ids)"
        else:
            hint = "keep merging until the ids have no pair left (fewer than 2 ids)"
        raise CheckFailed(name, f"on input {desc} — {detail}", hint)
    ids = list(text.encode())
    for j, pair in enumerate(expected[:k]):
        ids = _ref_merge(ids, pair, 256 + j)
    counts = _ref_pair_counts(ids)
    vocab = _vocab(expected[:k])
    e, g = expected[k], got[k]

    def describe(p: Pair) -> str:
        parts = [repr(vocab[x]) if x in vocab else f"<id {x} does not exist yet>" for x in p]
        n = counts.get(p, 0)
        return f"{p} = {parts[0]} + {parts[1]} ({n} occurrence{'' if n == 1 else 's'})"

    detail = f"merge #{k} should be {describe(e)}, got {describe(g)}"
    if hint is None:
        if any(x not in vocab for x in g):
            hint = ("merge k creates id 256 + k (the first merge creates 256); after each merge, "
                    "replace the pair in ids and record vocab[new_id] = vocab[a] + vocab[b]")
        elif counts.get(g, 0) < counts.get(e, 0):
            hint = ("pick the most frequent pair of the current ids (recount after every merge, "
                    "on the ids with all earlier merges applied)")
        elif counts.get(g, 0) == counts.get(e, 0):
            hint = _TIE_HINT
        else:
            hint = "recount the pairs after each merge, on the merged ids"
    raise CheckFailed(name, f"on input {desc} — {detail}", hint)


@exercise("train_bpe")
def train_bpe(fn: Callable[[str, int], Merges]) -> int:
    """`fn(text, vocab_size)` → the merges of the simple loop on raw UTF-8 bytes."""
    name = "train_bpe"

    def explain(case: tuple[str, int], desc: str, expected: Merges, got: Merges,
                hint: str | None) -> None:
        _explain_train(name, desc, *case, expected, got, hint)

    return _run_cases(name, fn, _train_cases(),
                      describe=lambda text, vocab_size: f"text={_short(text)}, "
                                                        f"vocab_size={vocab_size}",
                      reference=_ref_train,
                      accept=lambda desc, case, args, got: _as_pair_list(name, desc, got),
                      mistakes=_TIE_MISTAKES, explain=explain)


# ------------------------------------------------------------------------- bpe_encode


def _encode_first_found(text: str, merges: Sequence[Pair]) -> list[int]:
    """Wrong: merge the leftmost pair that has *any* merge, whatever its rank."""
    rank = {pair: k for k, pair in enumerate(merges)}
    ids = list(text.encode())
    while True:
        for i in range(len(ids) - 1):
            k = rank.get((ids[i], ids[i + 1]))
            if k is not None:
                ids = [*ids[:i], 256 + k, *ids[i + 2:]]
                break
        else:
            return ids


def _encode_highest_rank(text: str, merges: Sequence[Pair]) -> list[int]:
    rank = {pair: k for k, pair in enumerate(merges)}
    ids = list(text.encode())
    while len(ids) >= 2:
        present = [p for p in _ref_pair_counts(ids) if p in rank]
        if not present:
            break
        pair = max(present, key=rank.__getitem__)
        ids = _ref_merge(ids, pair, 256 + rank[pair])
    return ids


def _encode_rank_as_id(text: str, merges: Sequence[Pair]) -> list[int]:
    rank = {pair: k for k, pair in enumerate(merges)}
    ids = list(text.encode())
    while len(ids) >= 2:
        pair = min(_ref_pair_counts(ids), key=lambda p: rank.get(p, len(rank)))
        if pair not in rank:
            break
        ids = _ref_merge(ids, pair, rank[pair])
    return ids


def _encode_one_sweep(text: str, merges: Sequence[Pair]) -> list[int]:
    """Wrong: a single left-to-right pass, merging any pair that has a merge."""
    rank = {pair: k for k, pair in enumerate(merges)}
    ids = list(text.encode())
    out: list[int] = []
    i = 0
    while i < len(ids):
        k = rank.get((ids[i], ids[i + 1])) if i + 1 < len(ids) else None
        if k is not None:
            out.append(256 + k)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _encode_nothing(text: str, merges: Sequence[Pair]) -> list[int]:
    return list(text.encode())


_ENCODE_MISTAKES = [
    (_encode_nothing, "no merge was applied: start from list(text.encode('utf-8')) and merge "
                      "until no pair of the ids has a merge"),
    (_encode_rank_as_id, "merge number k creates id 256 + k, not k"),
    (_encode_first_found, "merges must be applied by rank, not in the order pairs appear in the "
                          "text: at each step merge the pair whose merge was learned earliest "
                          "(lowest index in merges), wherever it is"),
    (_encode_one_sweep, "one sweep is not enough, and the order matters: repeat 'find the present "
                        "pair with the lowest rank, merge it everywhere' until no present pair "
                        "has a merge"),
    (_encode_highest_rank, "you applied the latest merge first; the earliest learned merge "
                           "(lowest rank) must go first"),
]


def _encode_cases() -> list[tuple[str, Merges]]:
    rng = random.Random(5)
    english = _ref_train(_ENGLISH, 256 + 60)
    uni = _ref_train(_UNICODE + " " + _ENGLISH[:120], 256 + 40)
    cases: list[tuple[str, Merges]] = [
        ("abc", [(98, 99), (97, 98)]),         # rank decides: b+c first, so a+b never applies
        ("abcab", [(98, 99), (97, 98)]),
        ("aaaaa", [(97, 97)]),
        ("aaa", [(97, 97), (256, 97)]),        # a chain: 'aa' then 'aa'+'a'
        ("the cat", []),
        ("", english),
        ("a", english),
        (_ENGLISH, english),
        ("The lamp keeper held the light; the wind was high at night.", english),
        ("Der Leuchtturmwärter schrieb die Namen der Schiffe — 灯台守.", english),
        (_UNICODE, uni),
        ("déjà 東京 😀 vu, and the lamp", uni),
    ]
    for _ in range(4):
        train_text = _random_text(rng, 300)
        merges = _ref_train(train_text, 256 + 25)
        cases.append((_random_text(rng, rng.randint(20, 120)), merges))
    return cases


def _describe_encode(text: str, merges: Merges) -> str:
    shown = show(merges) if len(merges) <= 4 else f"<{len(merges)} merges>"
    return f"text={_short(text)}, merges={shown}"


@exercise("bpe_encode")
def bpe_encode(fn: Callable[[str, Merges], list[int]]) -> int:
    """`fn(text, merges)` → ids: merges applied by rank (lowest first) until none applies."""
    name = "bpe_encode"

    def on_crash(e: CheckFailed) -> CheckFailed:
        # min()/max() over the pairs of fewer than 2 ids: "arg is an empty sequence" (3.11),
        # "iterable argument is empty" (3.12+).
        called = next((f for f in ("min()", "max()") if f in e.detail), None)
        if called is None or "ValueError" not in e.detail or "empty" not in e.detail:
            return e
        return CheckFailed(name, e.detail,
                           hint=f"your loop called {called} on no pairs: stop when fewer than "
                                "two ids remain (while len(ids) >= 2), since one id has no pair")

    def explain(case: tuple[str, Merges], desc: str, expected: list[int], got: list[int],
                hint: str | None) -> None:
        text, merges = case
        if hint is None and any(x < 256 and x not in text.encode() for x in got):
            hint = ("your ids include a byte value that is not in the text: ids below 256 are "
                    "the raw bytes, and merge number k creates id 256 + k")
        elif hint is None and any(x >= 256 + len(merges) for x in got):
            hint = f"no merge creates id {max(got)}: merge number k creates id 256 + k"
        expect_equal(name, desc, expected, got,
                     hint=hint or "loop: counts = get_pair_counts(ids); pair = the pair with the "
                                  "lowest rank among them; stop if it has no merge; else "
                                  "ids = merge(ids, pair, 256 + rank)")

    return _run_cases(name, fn, _encode_cases(), describe=_describe_encode,
                      reference=_ref_encode,
                      accept=lambda desc, case, args, got: _ids_list(name, desc, got, "the token ids"),
                      mistakes=_ENCODE_MISTAKES, explain=explain, on_crash=on_crash)


# ------------------------------------------------------------------------- bpe_decode


def _decode_per_token(ids: Sequence[int], merges: Sequence[Pair]) -> str:
    vocab = _vocab(merges)
    return "".join(vocab[i].decode("utf-8", errors="replace") for i in ids)


def _decode_latin1(ids: Sequence[int], merges: Sequence[Pair]) -> str:
    vocab = _vocab(merges)
    return b"".join(vocab[i] for i in ids).decode("latin-1")


_DECODE_MISTAKES = [
    (_decode_per_token, "decoding token by token breaks characters whose bytes are split over "
                        "two tokens: join all the bytes first (b''.join), then decode once"),
    (_decode_latin1, "decode the bytes as UTF-8"),
]


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _decode_cases() -> list[tuple[list[int], Merges]]:
    english = _ref_train(_ENGLISH, 256 + 40)
    # Trained on text where merges cut through multi-byte characters (b' \xe6', ...).
    uni = _ref_train(_UNICODE * 2, 256 + 30)
    broken = next(i for i, b in _vocab(uni).items() if i >= 256 and not _is_utf8(b))
    cases: list[tuple[list[int], Merges]] = [
        ([], []),
        (list(b"hello"), []),
        ([104, 256, 111], [(101, 108)]),
        ([257, 111], [(104, 101), (256, 108)]),
        (_ref_encode("the lamp, the light", english), english),
        (list("é".encode()), []),              # two tokens, one character
        (list("東".encode())[:2], []),          # an incomplete character
        (_ref_encode(_UNICODE, uni), uni),
        (_ref_encode("déjà vu 東京 😀", uni), uni),
        ([broken, *b" ok"], uni),                     # a token that ends mid-character
    ]
    return cases


def _describe_decode(ids: list[int], merges: Merges) -> str:
    shown = show(merges) if len(merges) <= 3 else f"<{len(merges)} merges>"
    return f"ids={show(ids)}, merges={shown}"


@exercise("bpe_decode")
def bpe_decode(fn: Callable[[list[int], Merges], str]) -> int:
    """`fn(ids, merges)` → the text: join every token's bytes, then decode UTF-8 once."""
    name = "bpe_decode"

    def on_crash(e: CheckFailed) -> CheckFailed:
        if "UnicodeDecodeError" not in e.detail:
            return e
        return CheckFailed(name, e.detail,
                           hint="these bytes are not complete UTF-8 (a token can hold half a "
                                "character); decode with errors='replace', which writes "
                                "U+FFFD '\ufffd' for a broken character")

    def accept(desc: str, case: tuple[Any, ...], args: tuple[Any, ...], got: Any) -> str:
        expect_type(name, desc, str, got, hint="return the decoded text (a str), not bytes")
        return got

    def explain(case: tuple[Any, ...], desc: str, expected: str, got: str,
                hint: str | None) -> None:
        expect_equal(name, desc, expected, got,
                     hint=hint or "build vocab (vocab[256 + k] = vocab[a] + vocab[b] for merge "
                                  "k = (a, b), in order), join vocab[i] for every id, decode "
                                  "with UTF-8 and errors='replace'")

    return _run_cases(name, fn, _decode_cases(), describe=_describe_decode,
                      reference=_ref_decode, accept=accept, mistakes=_DECODE_MISTAKES,
                      explain=explain, on_crash=on_crash)
