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

Each return value must have exactly the type the docstring states (`expect_contract`): the
merges are a list of *tuples*, because `bpe_encode` uses them as dict keys; the ids are a
list of ints. Inputs are passed to the learner as the caller's own objects, so `call`
catches a function that changes them in place.
"""

from __future__ import annotations

import functools
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from course.checks._core import CheckFailed, call, exercise, expect_contract, expect_equal, show

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
               first_id: int = 256, extra: int = 0) -> Merges:
    """The simple loop; `choose` picks the pair, `first_id` is the id of merge 0 and `extra`
    merges are added to the count (the wrong variants change them)."""
    ids = list(text.encode())
    vocab = {i: bytes([i]) for i in range(256)}
    merges: Merges = []
    for k in range(vocab_size - 256 + extra):
        counts = _ref_pair_counts(ids)
        if not counts:
            break
        pair = choose(counts, vocab)
        new_id = first_id + k
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
    """The learner's merges, if they are exactly `list[tuple[int, int]]`; else CheckFailed."""
    if isinstance(got, dict):
        raise CheckFailed(name, f"on input {desc} — expected a list of (left_id, right_id) pairs, "
                                f"got a dict: {show(got)}",
                          hint="return the merges as a list in the order they were learned, "
                               "e.g. [(101, 32), (116, 104), ...]; merge k creates id 256 + k")
    if type(got) is list:
        k, p = next(((k, p) for k, p in enumerate(got) if type(p) is list), (None, None))
        if k is not None:
            raise CheckFailed(name, f"on input {desc} — merge #{k} is the list {show(p)}; "
                                    "expected a tuple (left_id, right_id)",
                              hint="store each merge as a tuple, not a list: bpe_encode uses the "
                                   "pairs as dict keys, and a list cannot be a dict key "
                                   "(TypeError: unhashable type: 'list')")
    expect_contract(name, desc, list[tuple[int, int]], got,
                    hint="return a list of (left_id, right_id) tuples of ints, one per merge, "
                         "in the order they were learned")
    return got


def _ids_list(name: str, desc: str, got: Any, what: str) -> list[int]:
    expect_contract(name, desc, list[int], got, hint=f"return {what} as a Python list of ints")
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
    in_place_hint: str | None = None,
) -> int:
    """Run the learner's `fn` on every case; fail with an explanation on the first wrong one.

    The learner gets the case's own objects, so `call` reports any input changed in place
    (with `in_place_hint`, when given, instead of the generic advice). `accept(desc, case,
    got)` validates an answer's type and returns it. On a wrong answer, the remaining
    cases still run, so that the hint can come from the first of `mistakes` (typical wrong
    implementations) reproducing *all* the learner's answers: one wrong case alone often
    matches several mistakes. `explain(case, desc, expected, got, hint)` raises.
    """
    seen: list[tuple[tuple[Any, ...], Any]] = []
    failure: tuple[tuple[Any, ...], str, Any, Any] | None = None
    for case in cases:
        desc = describe(*case)
        try:
            got = call(name, fn, *case, inputs_desc=desc)
        except CheckFailed as e:
            if failure is not None:
                break  # report the earlier wrong answer, not this crash
            if " in place: " in e.detail:
                raise CheckFailed(name, e.detail, in_place_hint or e.hint) from None
            raise (on_crash(e) if on_crash else e) from None
        try:
            got = accept(desc, case, got)
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
    (_counts_without_last, "the last pair (ids[-2], ids[-1]) is missing: N ids hold N - 1 "
                           "pairs, and the last one starts at position N - 2"),
    (_counts_wrapped, "one pair wraps around from the last id to the first; the sequence "
                      "is not circular"),
    (_counts_once, "every occurrence counts, overlapping ones too: [1, 1, 1] holds the pair "
                   "(1, 1) twice"),
    (_counts_without_first, "the first pair (ids[0], ids[1]) is missing: start at i = 0"),
]


@exercise("get_pair_counts", hints=(
    "A sequence of N ids has N - 1 neighbour pairs, starting at positions 0 .. N-2; each is "
    "the tuple (left id, right id). Overlapping occurrences all count.",
    "Loop over the start position of each pair (or over zip of ids with ids shifted by one), "
    "make the tuple and add 1 to its count in a dict; dict.get with a default of 0 reads a "
    "count that does not exist yet.",
))
def get_pair_counts(fn: Callable[[list[int]], dict[Pair, int]]) -> int:
    """`fn(ids)` → {(ids[i], ids[i+1]): number of positions i with that pair}, a dict (or
    Counter / defaultdict) from tuple[int, int] to int."""
    name = "get_pair_counts"

    def accept(desc: str, case: tuple[list[int]], got: Any) -> dict:
        # A Counter or defaultdict is a dict to every later cell; anything else is not.
        expect_contract(name, desc, dict | Counter | defaultdict, got,
                        hint="return a dict (or collections.Counter) mapping (a, b) tuples to counts")
        bad_key = next((k for k in got if not (type(k) is tuple and len(k) == 2)), None)
        if bad_key is not None:
            raise CheckFailed(name, f"on input {desc} — key {show(bad_key)} is not a pair "
                                    f"(a tuple of two ids)",
                              hint="use the tuple of the two neighbouring ids as the key "
                                   "(a list cannot be a dict key)")
        got = dict(got)
        expect_contract(name, desc, dict[Pair, int], got,
                        hint="each key is a tuple of two int ids, each value an int count")
        return got

    def explain(case: tuple[list[int]], desc: str, expected: dict, got: dict,
                hint: str | None) -> None:
        if hint is None and any(k not in expected for k in got):
            hint = "count only neighbours: the pairs (ids[i], ids[i + 1])"
        expect_equal(name, desc, expected, got,
                     hint=hint or "count every pair of neighbours once per position where it "
                                  "occurs, and nothing else")

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


def _merge_string_replace(ids: Sequence[int], pair: Pair, new_id: int) -> list[int]:
    """Wrong: replace on the ids written as text, where '11 2' contains '1 2'."""
    text = " ".join(map(str, ids)).replace(f"{pair[0]} {pair[1]}", str(new_id))
    return [int(x) for x in text.split()]


_STRING_REPLACE = ("your merge matches digits across token boundaries, as a string replace on "
                   "the ids written as text does: in '11 2' the text '1 2' is found although no "
                   "id is 1, and [11, 2] becomes [1256]; compare whole ids (ints) at neighbouring "
                   "positions instead")


_OVERLAP = ("after a match at i, continue at i + 2: the id at i + 1 is used up by the match, "
            "so [1, 1, 1] with pair (1, 1) becomes [new_id, 1]")
_MERGE_MISTAKES = [
    (_merge_string_replace, _STRING_REPLACE),
    (_merge_step_one, _OVERLAP),
    (_merge_overlapping, _OVERLAP),
    (_merge_drop_last, "the last id went missing: an id that was not merged must still be "
                       "copied to the output, so the loop has to reach the last position too"),
    (_merge_skip_last_pair, "the pair at the very end was not merged: the last pair starts at "
                            "position len(ids) - 2, so test every position that has an id after "
                            "it"),
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
        # Multi-digit ids side by side: no pair here, though '11 2' contains '1 2' as text.
        ([11, 2], (1, 2), 256),
        ([1, 21, 3], (1, 2), 256),
        ([12, 3, 4, 2, 3], (2, 3), 300),
        ([101, 32, 110, 10, 32], (10, 32), 256),   # 'e n\n ': 'n ' is 110 32
        (list(b"the theme of the thesis"), (116, 104), 256),
    ]
    for _ in range(8):
        ids = _random_ids(rng, rng.randint(2, 40), [1, 2, 3])
        i = rng.randrange(len(ids) - 1)
        cases.append((ids, (ids[i], ids[i + 1]), 256 + rng.randrange(20)))
    return cases


@exercise("merge", hints=(
    "Scan ids from left to right with an index i and build a new output list; at each "
    "position decide whether ids[i] and the id after it form the pair (the last position has "
    "no id after it).",
    "On a match, append new_id and move i on by 2 (both ids are used up); otherwise append "
    "ids[i] and move on by 1. Compare the ids as ints, never as text.",
))
def merge(fn: Callable[[list[int], Pair, int], list[int]]) -> int:
    """`fn(ids, pair, new_id)` replaces every non-overlapping occurrence, left to right."""
    name = "merge"

    def accept(desc: str, case: tuple[Any, ...], got: Any) -> list[int]:
        return _ids_list(name, desc, got, "the merged ids")

    def explain(case: tuple[Any, ...], desc: str, expected: list[int], got: list[int],
                hint: str | None) -> None:
        ids, _, new_id = case
        invented = next((x for x in got if x != new_id and x not in ids), None)
        if hint is None and invented is not None:
            hint = (f"your output holds id {invented}, which is neither in ids nor new_id: a merge "
                    "only ever puts new_id where two neighbouring ids equal the pair (a string "
                    "replace on the ids as text also matches digits across token boundaries)")
        expect_equal(name, desc, expected, got,
                     hint=hint or "scan left to right; a match uses up both of its ids, and "
                                  "every other id is copied unchanged")

    return _run_cases(name, fn, _merge_cases(),
                      describe=lambda ids, pair, new_id: f"ids={show(ids)}, pair={pair}, "
                                                         f"new_id={new_id}",
                      reference=_ref_merge, accept=accept, mistakes=_MERGE_MISTAKES,
                      explain=explain,
                      in_place_hint="merge must leave ids as it was and return a new list: "
                                    "the caller (train_bpe, the cells after it) still uses the "
                                    "old ids; build and return a new list instead of editing ids")


# -------------------------------------------------------------------------- train_bpe


def _tie_first_seen(counts: dict[Pair, int], vocab: dict[int, bytes]) -> Pair:
    return max(counts, key=counts.__getitem__)  # the first maximal pair in dict order


def _tie_greatest_ids(counts: dict[Pair, int], vocab: dict[int, bytes]) -> Pair:
    return max(counts, key=lambda p: (counts[p], p))


def _tie_smallest_bytes(counts: dict[Pair, int], vocab: dict[int, bytes]) -> Pair:
    return min(counts, key=lambda p: (-counts[p], vocab[p[0]], vocab[p[1]]))


def _tie_smallest_ids(counts: dict[Pair, int], vocab: dict[int, bytes]) -> Pair:
    return min(counts, key=lambda p: (-counts[p], p))


_TIE_HINT = ("among equally frequent pairs pick the one whose bytes (vocab[left], "
             "vocab[right]) compare greatest, where vocab maps each id to the bytes it stands for "
             "(b'z' > b'th' > b't'); the key of max() may be a tuple, compared item by item")


_TIE_MISTAKES = [
    (functools.partial(_ref_train, choose=_tie_first_seen),
     _TIE_HINT + " (a max() keyed on the count alone keeps the first pair it met, which is not "
                 "the rule here)"),
    (functools.partial(_ref_train, choose=_tie_greatest_ids),
     _TIE_HINT + " (you compared the ids; compare the bytes the ids stand for: id 256 may stand "
                 "for b'th', which is smaller than b'z' = id 122)"),
    (functools.partial(_ref_train, choose=_tie_smallest_bytes),
     _TIE_HINT + " (you picked the smallest)"),
    (functools.partial(_ref_train, choose=_tie_smallest_ids), _TIE_HINT),
]

_NUMBERING = ("merge k must create id 256 + k: ids 0..255 are the 256 single bytes, so the first "
              "merge creates id 256 and the next ones 257, 258, ...; ")
_TRAIN_MISTAKES = [
    (functools.partial(_ref_train, first_id=255),
     _NUMBERING + "your new ids are one too small (your first merge created 255, which is "
                  "already the byte 0xff)"),
    (functools.partial(_ref_train, first_id=255, extra=1),
     _NUMBERING + "your new ids start at 255, which is already the byte 0xff (and that makes "
                  "one merge too many)"),
    (functools.partial(_ref_train, first_id=257),
     _NUMBERING + "your new ids are one too large (your first merge created 257, leaving 256 "
                  "unused)"),
    *_TIE_MISTAKES,
]


def _train_cases() -> list[tuple[str, int]]:
    rng = random.Random(4)
    cases = [("", 260), ("a", 260), ("aaaa", 262), ("hello", 256),
             ("hello world, hello bpe", 270),
             # '\n ' (10, 32) is merged first; 'n ' (110, 32) holds '10 32' as text.
             ("so\n then\n an \n in \n", 262),
             (_ENGLISH, 300), (_UNICODE, 290)]
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
        if any(x not in vocab and x > 256 + len(expected) for x in g):
            hint = ("your ids hold an id that no merge created: merging only ever puts the new "
                    "id where two neighbouring ids equal the pair (a string replace on the ids "
                    "as text matches digits across token boundaries: '110 32' contains '10 32')")
        elif any(x not in vocab for x in g) or (counts.get(g, 0) == 0 and any(x >= 255 for x in g)):
            hint = (_NUMBERING + "after each merge, replace the pair in ids and record the new "
                    "id's bytes (the two parts' bytes joined)")
        elif counts.get(g, 0) < counts.get(e, 0):
            hint = ("pick the most frequent pair of the current ids (recount after every merge, "
                    "on the ids with all earlier merges applied)")
        elif counts.get(g, 0) == counts.get(e, 0):
            hint = _TIE_HINT
        else:
            hint = "recount the pairs after each merge, on the merged ids"
    raise CheckFailed(name, f"on input {desc} — {detail}", hint)


@exercise("train_bpe", hints=(
    "Start from the text's UTF-8 bytes as a list of ints and a vocab {id: bytes} of the 256 "
    "single bytes. Each round: count the pairs of the current ids, choose one, merge it into "
    "the next new id (256, 257, ...), record the pair as a tuple, and keep the merged ids.",
    "Choose with max() over the pairs; its key can return a tuple, which Python compares item "
    "by item: the count first, then the bytes of the left id, then those of the right id. "
    "After merging, the new id's bytes are the two parts' bytes joined.",
))
def train_bpe(fn: Callable[[str, int], Merges]) -> int:
    """`fn(text, vocab_size)` → the merges of the simple loop on raw UTF-8 bytes, exactly a
    `list[tuple[int, int]]`."""
    name = "train_bpe"

    def explain(case: tuple[str, int], desc: str, expected: Merges, got: Merges,
                hint: str | None) -> None:
        _explain_train(name, desc, *case, expected, got, hint)

    def on_crash(e: CheckFailed) -> CheckFailed:
        if "KeyError" not in e.detail:
            return e
        return CheckFailed(name, e.detail,
                           hint="a KeyError in your vocab means the ids hold an id no merge "
                                "created: check that merge only puts new_id where two "
                                "neighbouring ids equal the pair (a string replace on the ids "
                                "as text matches digits across token boundaries: '110 32' "
                                "contains '10 32' and becomes '1256'), and that every new id "
                                "gets its bytes in vocab")

    return _run_cases(name, fn, _train_cases(),
                      describe=lambda text, vocab_size: f"text={_short(text)}, "
                                                        f"vocab_size={vocab_size}",
                      reference=_ref_train,
                      accept=lambda desc, case, got: _as_pair_list(name, desc, got),
                      mistakes=_TRAIN_MISTAKES, explain=explain, on_crash=on_crash)


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


def _encode_from(start: Callable[[str], list[int]], first_id: int = 256,
                 ) -> Callable[[str, Sequence[Pair]], list[int]]:
    """The right loop on the wrong starting ids, or creating the wrong new ids."""
    def encode(text: str, merges: Sequence[Pair]) -> list[int]:
        rank = {pair: k for k, pair in enumerate(merges)}
        ids = start(text)
        while len(ids) >= 2:
            pair = min(_ref_pair_counts(ids), key=lambda p: rank.get(p, len(rank)))
            if pair not in rank:
                break
            ids = _ref_merge(ids, pair, first_id + rank[pair])
        return ids
    return encode


_CODE_POINTS = ("you started from the code points (ord() of each character), not from the UTF-8 "
                "bytes: they agree only on ASCII; 'é' is code point 233 but the two bytes 195, "
                "169, and '東' is code point 26481 but three bytes. The merges were learned on "
                "UTF-8 bytes, so encode the text as UTF-8 first")
_ENCODE_NUMBERING = ("merge number k (its index in merges) creates id 256 + k: ids 0..255 are "
                     "the bytes, so the first merge's id is 256")

_ENCODE_MISTAKES = [
    (_encode_nothing, "no merge was applied: start from the text's UTF-8 bytes and merge until "
                      "no pair of the ids has a merge"),
    (_encode_from(lambda text: [ord(c) for c in text]), _CODE_POINTS),
    (_encode_rank_as_id, "merge number k creates id 256 + k, not k"),
    (_encode_from(lambda text: list(text.encode()), first_id=255), _ENCODE_NUMBERING),
    (_encode_from(lambda text: list(text.encode()), first_id=257), _ENCODE_NUMBERING),
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


@exercise("bpe_encode", hints=(
    "Start from the text's UTF-8 bytes. The rank of a pair is its index in merges; a dict "
    "from pair to rank answers 'does this pair have a merge, and which one?' in one lookup.",
    "Loop while at least two ids remain: among the pairs of the current ids (get_pair_counts) "
    "find the one with the lowest rank, giving pairs without a merge an infinite rank "
    "(min() takes a key); if even that pair has no merge, stop; else merge it into the id "
    "256 + its rank.",
))
def bpe_encode(fn: Callable[[str, Merges], list[int]]) -> int:
    """`fn(text, merges)` → ids: merges applied by rank (lowest first) until none applies."""
    name = "bpe_encode"

    def on_crash(e: CheckFailed) -> CheckFailed:
        if "UnicodeEncodeError" in e.detail:
            return CheckFailed(name, e.detail, hint="encode the text as UTF-8, which writes any "
                                                    "character as 1 to 4 bytes (Latin-1 and ASCII "
                                                    "cannot encode most characters)")
        # min()/max() over the pairs of fewer than 2 ids: "arg is an empty sequence" (3.11),
        # "iterable argument is empty" (3.12+).
        called = next((f for f in ("min()", "max()") if f in e.detail), None)
        if called is None or "ValueError" not in e.detail or "empty" not in e.detail:
            return e
        return CheckFailed(name, e.detail,
                           hint=f"your loop called {called} on no pairs: one id has no pair, so "
                                "the loop must stop when fewer than two ids remain (make that "
                                "its condition), before looking for a pair")

    def explain(case: tuple[str, Merges], desc: str, expected: list[int], got: list[int],
                hint: str | None) -> None:
        text, merges = case
        data = text.encode()
        odd = [x for x in got if (x < 256 and x not in data) or x >= 256 + len(merges)]
        if hint is None and odd and all(x < 0x110000 and chr(x) in text for x in odd):
            hint = _CODE_POINTS
        elif hint is None and any(x < 256 and x not in data for x in got):
            hint = ("your ids include a byte value that is not in the text: ids below 256 are "
                    "the text's UTF-8 bytes, and merge number k creates id 256 + k")
        elif hint is None and any(x >= 256 + len(merges) for x in got):
            hint = f"no merge creates id {max(got)}: merge number k creates id 256 + k"
        expect_equal(name, desc, expected, got,
                     hint=hint or "apply the merges by rank: at each step merge the present "
                                  "pair whose merge was learned earliest, until no present "
                                  "pair has a merge")

    return _run_cases(name, fn, _encode_cases(), describe=_describe_encode,
                      reference=_ref_encode,
                      accept=lambda desc, case, got: _ids_list(name, desc, got, "the token ids"),
                      mistakes=_ENCODE_MISTAKES, explain=explain, on_crash=on_crash,
                      in_place_hint="do not change merges (no sort, pop or append on it): the "
                                    "caller uses the same merge list for every later text")


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


@exercise("bpe_decode", hints=(
    "vocab_of(merges) gives the bytes of every id. Joining bytes objects gives one bytes "
    "object, and decoding it gives the text.",
    "Join the bytes of all the ids first and decode once (a token can hold half a character), "
    "as UTF-8 with errors='replace', so that bytes that are not valid UTF-8 become U+FFFD "
    "instead of raising.",
))
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

    def accept(desc: str, case: tuple[Any, ...], got: Any) -> str:
        expect_contract(name, desc, str, got, hint="return the decoded text (a str), not bytes")
        return got

    def explain(case: tuple[Any, ...], desc: str, expected: str, got: str,
                hint: str | None) -> None:
        expect_equal(name, desc, expected, got,
                     hint=hint or "every id stands for its bytes in vocab_of(merges); the text "
                                  "is all those bytes, joined in order, decoded as UTF-8")

    return _run_cases(name, fn, _decode_cases(), describe=_describe_decode,
                      reference=_ref_decode, accept=accept, mistakes=_DECODE_MISTAKES,
                      explain=explain, on_crash=on_crash)
