"""The checks of lesson 02 (BPE): a correct solution passes, realistic wrong ones are
rejected with the hint that names their mistake, a placeholder counts as not attempted.
The check's references are also cross-checked against the package's `ByteBPETokenizer`."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest
from lookalikes import AlwaysEqualDict, AlwaysEqualList, AlwaysEqualStr

from course import checks as check
from course.checks import CheckFailed, NotAttempted
from course.checks import _core as core
from course.checks import bpe as bpe_checks
from course.tokenizer import ByteBPETokenizer, count_pretokens, learn_merges, pretokenize


def stub(*args):
    raise NotImplementedError("Exercise: implement it")


# ------------------------------------------------------------------ correct solutions


def pair_counts_ok(ids):
    counts = {}
    for pair in zip(ids, ids[1:], strict=False):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def pair_counts_counter(ids):
    return Counter(zip(ids, ids[1:], strict=False))


def pair_counts_defaultdict(ids):
    counts = defaultdict(int)
    for i in range(len(ids) - 1):
        counts[ids[i], ids[i + 1]] += 1
    return counts


def merge_string_replace(ids, pair, new_id):
    """Wrong: '11 2' contains '1 2', so [11, 2] with the pair (1, 2) becomes [1256]."""
    text = " ".join(map(str, ids)).replace(f"{pair[0]} {pair[1]}", str(new_id))
    return [int(x) for x in text.split()]


def merge_ok(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def best_pair(counts, vocab):
    """The most frequent pair, ties broken by the larger bytes (the lesson's rule)."""
    return max(counts, key=lambda p: (counts[p], vocab[p[0]], vocab[p[1]]))


def train_merging_with(merge, choose=best_pair):
    """A BPE trainer whose merge step and pair choice can be swapped for a mistake."""
    def train(text, vocab_size):
        ids = list(text.encode("utf-8"))
        vocab = {i: bytes([i]) for i in range(256)}
        merges = []
        for new_id in range(256, vocab_size):
            counts = pair_counts_ok(ids)
            if not counts:
                break
            pair = choose(counts, vocab)
            ids = merge(ids, pair, new_id)
            vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]
            merges.append(pair)
        return merges
    return train


train_ok = train_merging_with(merge_ok)


def encode_ok(text, merges):
    rank = {pair: k for k, pair in enumerate(merges)}
    ids = list(text.encode("utf-8"))
    while len(ids) >= 2:
        counts = pair_counts_ok(ids)
        pair = min(counts, key=lambda p: rank.get(p, float("inf")))
        if pair not in rank:
            break
        ids = merge_ok(ids, pair, 256 + rank[pair])
    return ids


def encode_in_merge_order(text, merges):
    """Also correct (only slower): apply merge 0 everywhere, then merge 1, ..."""
    ids = list(text.encode("utf-8"))
    for k, pair in enumerate(merges):
        ids = merge_ok(ids, pair, 256 + k)
    return ids


def decode_ok(ids, merges):
    vocab = {i: bytes([i]) for i in range(256)}
    for k, (a, b) in enumerate(merges):
        vocab[256 + k] = vocab[a] + vocab[b]
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")


@pytest.mark.parametrize(("name", "fn", "n"), [
    ("get_pair_counts", pair_counts_ok, 17),
    ("get_pair_counts", pair_counts_counter, 17),
    ("get_pair_counts", pair_counts_defaultdict, 17),
    ("merge", merge_ok, 23),
    ("train_bpe", train_ok, 12),
    ("bpe_encode", encode_ok, 16),
    ("bpe_encode", encode_in_merge_order, 16),
    ("bpe_decode", decode_ok, 10),
])
def test_correct_solutions_pass_with_one_line(name, fn, n, capsys):
    getattr(check, name)(fn)
    assert capsys.readouterr().out == f"✓ {name}: {n} cases passed\n"


@pytest.mark.parametrize("name", ["get_pair_counts", "merge", "train_bpe", "bpe_encode", "bpe_decode"])
def test_placeholder_is_not_attempted(name):
    with pytest.raises(NotAttempted, match=f"{name}: not attempted yet"):
        getattr(check, name)(stub)


def fails(name, fn, *fragments):
    """Assert the check rejects `fn` with a message containing every fragment."""
    with pytest.raises(CheckFailed) as info:
        getattr(check, name)(fn)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


# ------------------------------------------------------------------------ pair counts


def test_pair_counts_missing_last_pair():
    def wrong(ids):
        counts = {}
        for i in range(len(ids) - 2):
            counts[(ids[i], ids[i + 1])] = counts.get((ids[i], ids[i + 1]), 0) + 1
        return counts

    fails("get_pair_counts", wrong, "ids=[1, 2]", "expected {(1, 2): 1}, got {}",
          "the last pair (ids[-2], ids[-1]) is missing")


def test_pair_counts_set_instead_of_count():
    def wrong(ids):
        counts = {}
        for pair in zip(ids, ids[1:], strict=False):
            counts[pair] = 1
        return counts

    fails("get_pair_counts", wrong, "ids=[1, 1, 1]", "expected {(1, 1): 2}, got {(1, 1): 1}",
          "overlapping ones too")


def test_pair_counts_wrapping_around():
    def wrong(ids):
        return Counter(zip(ids, ids[1:] + ids[:1], strict=True))

    fails("get_pair_counts", wrong, "wraps around")


def test_pair_counts_list_of_pairs_is_a_type_error():
    fails("get_pair_counts", lambda ids: list(zip(ids, ids[1:], strict=False)),
          "expected dict or Counter or defaultdict, got a list", "mapping (a, b) tuples to counts")


def test_pair_counts_list_keys_and_always_equal_dicts_are_rejected():
    fails("get_pair_counts", lambda ids: {str(p): n for p, n in pair_counts_ok(ids).items()},
          "key '(1, 2)' is not a pair", "use the tuple")
    fails("get_pair_counts", lambda ids: {p: float(n) for p, n in pair_counts_ok(ids).items()},
          "got a dict holding a float at [(1, 2)]", "each value an int count")
    fails("get_pair_counts", lambda ids: AlwaysEqualDict(), "got an AlwaysEqualDict")


def test_pair_counts_that_consume_the_ids_are_rejected():
    def wrong(ids):
        counts = {}
        while len(ids) >= 2:
            pair = (ids.pop(0), ids[0])
            counts[pair] = counts.get(pair, 0) + 1
        return counts

    fails("get_pair_counts", wrong, "changed its argument 1 in place", "do not modify the caller's data")


# ------------------------------------------------------------------------------ merge


def test_merge_step_of_one_merges_overlapping_occurrences():
    def wrong(ids, pair, new_id):
        out, i = [], 0
        while i < len(ids):
            if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
                out.append(new_id)
            else:
                out.append(ids[i])
            i += 1
        return out

    fails("merge", wrong, "ids=[1, 1, 1], pair=(1, 1)", "continue at i + 2")


def test_merge_loop_that_skips_the_last_position():
    def wrong(ids, pair, new_id):
        out, i = [], 0
        while i < len(ids) - 1:
            if (ids[i], ids[i + 1]) == pair:
                out.append(new_id)
                i += 2
            else:
                out.append(ids[i])
                i += 1
        return out

    fails("merge", wrong, "ids=[1, 1, 1]", "expected [256, 1], got [256]", "the last id went missing")


def test_merge_that_never_tests_the_final_pair():
    def wrong(ids, pair, new_id):
        out, i = [], 0
        while i < len(ids):
            if i < len(ids) - 2 and (ids[i], ids[i + 1]) == pair:
                out.append(new_id)
                i += 2
            else:
                out.append(ids[i])
                i += 1
        return out

    fails("merge", wrong, "expected [256, 256], got [256, 1, 1]",
          "the pair at the very end was not merged")


def test_merge_in_place_is_caught():
    def wrong(ids, pair, new_id):
        i = 0
        while i < len(ids) - 1:
            if (ids[i], ids[i + 1]) == pair:
                ids[i:i + 2] = [new_id]
            i += 1
        return ids

    fails("merge", wrong, "changed its argument 1 in place", "merge must leave ids as it was",
          "build and return a new list")


def test_merge_as_a_string_replace_is_rejected_on_multi_digit_neighbours():
    # It passes every single-digit case; '11 2' contains '1 2'.
    fails("merge", merge_string_replace, "ids=[11, 2], pair=(1, 2), new_id=256",
          "expected [11, 2], got [1256]", "matches digits across token boundaries")


def test_merge_inventing_ids_gets_the_string_hint_even_when_no_variant_matches():
    def wrong(ids, pair, new_id):  # string replace, plus a stray id on long inputs
        out = merge_string_replace(ids, pair, new_id)
        return [*out, 0] if len(ids) > 20 else out

    fails("merge", wrong, "your output holds id", "neither in ids nor new_id",
          "digits across token boundaries")


def test_merge_wrong_containers_are_rejected():
    fails("merge", lambda ids, pair, new_id: tuple(merge_ok(ids, pair, new_id)),
          "expected list[int], got a tuple")
    fails("merge", lambda ids, pair, new_id: AlwaysEqualList(), "got an AlwaysEqualList")
    fails("merge", lambda ids, pair, new_id: [float(x) for x in merge_ok(ids, pair, new_id)],
          "got a list holding a float at [0]")


def test_merge_of_the_first_occurrence_only():
    def wrong(ids, pair, new_id):
        for i in range(len(ids) - 1):
            if (ids[i], ids[i + 1]) == pair:
                return ids[:i] + [new_id] + ids[i + 2:]
        return list(ids)

    fails("merge", wrong, "not only the first")


# -------------------------------------------------------------------------- train_bpe


def train_with(choose):
    return train_merging_with(merge_ok, choose)


def test_train_minbpe_tie_break_is_rejected():
    # minbpe's `max(stats, key=stats.get)`: the first pair met among the most frequent.
    wrong = train_with(lambda counts, vocab: max(counts, key=counts.get))
    message = fails("train_bpe", wrong, "merge #0 should be (111, 32) = b'o' + b' ' (2 occurrences), "
                    "got (104, 101) = b'h' + b'e' (2 occurrences)", "keeps the first pair it met")
    assert "Hint: among equally frequent pairs" in message


def test_train_tie_break_on_ids_instead_of_bytes_is_rejected():
    wrong = train_with(lambda counts, vocab: max(counts, key=lambda p: (counts[p], p)))
    fails("train_bpe", wrong, "you compared the ids; compare the bytes")


def test_train_one_merge_too_many_is_rejected():
    def wrong(text, vocab_size):
        return train_ok(text, vocab_size + 1)

    fails("train_bpe", wrong, "vocab_size=256", "expected 0 merges", "got 1",
          "vocab_size - 256 merges")


def test_train_that_never_updates_the_ids_is_rejected():
    # the merge's result is dropped: the ids never change
    wrong = train_merging_with(lambda ids, pair, new_id: ids)

    fails("train_bpe", wrong, "merge #1 should be", "recount after every merge")


def test_train_returning_a_dict_is_explained():
    def wrong(text, vocab_size):
        return {pair: 256 + k for k, pair in enumerate(train_ok(text, vocab_size))}

    fails("train_bpe", wrong, "got a dict", "as a list in the order they were learned")


def test_train_with_a_string_replace_merge_crashes_with_a_hint_naming_it():
    # With the learner's own string-replace merge, '110 32' becomes '1256': KeyError in vocab.
    wrong = train_merging_with(merge_string_replace)

    fails("train_bpe", wrong, "KeyError: 1256", "digits across token boundaries")


def test_train_returning_lists_instead_of_tuples_is_rejected():
    # They would break bpe_encode's dict of ranks: "unhashable type: 'list'".
    fails("train_bpe", lambda text, vocab_size: [list(p) for p in train_ok(text, vocab_size)],
          "merge #0 is the list", "expected a tuple (left_id, right_id)",
          "unhashable type: 'list'")
    with pytest.raises(TypeError, match="unhashable type: 'list'"):
        encode_ok("abc", [[98, 99]])


@pytest.mark.parametrize(("wrong", "fragment"), [
    (lambda text, vocab_size: tuple(train_ok(text, vocab_size)), "got a tuple"),
    (lambda text, vocab_size: AlwaysEqualList(train_ok(text, vocab_size)), "got an AlwaysEqualList"),
    (lambda text, vocab_size: [(a, b, 0) for a, b in train_ok(text, vocab_size)],
     "a tuple of 3 items"),
])
def test_train_wrong_containers_are_rejected(wrong, fragment):
    fails("train_bpe", wrong, "expected list[tuple[int, int]]", fragment)


def train_numbered(first, stop_offset=0):
    """The right loop whose merge k creates id `first` + k."""
    def train(text, vocab_size):
        ids = list(text.encode("utf-8"))
        vocab = {i: bytes([i]) for i in range(256)}
        merges = []
        for k in range(vocab_size - 256 + stop_offset):
            counts = pair_counts_ok(ids)
            if not counts:
                break
            pair = max(counts, key=lambda p: (counts[p], vocab[p[0]], vocab[p[1]]))
            ids = merge_ok(ids, pair, first + k)
            vocab[first + k] = vocab[pair[0]] + vocab[pair[1]]
            merges.append(pair)
        return merges
    return train


@pytest.mark.parametrize(("wrong", "fragment"), [
    (train_numbered(255), "one too small"),                   # new_id = 255 + k
    (train_numbered(255, stop_offset=1), "start at 255"),     # range(255, vocab_size)
    (train_numbered(257), "one too large"),                   # new_id = 256 + len(merges) after append
])
def test_train_new_id_off_by_one_gets_the_numbering_hint(wrong, fragment):
    message = fails("train_bpe", wrong, "merge k must create id 256 + k", fragment)
    assert "recount" not in message


def test_train_cases_have_no_ambiguous_ties():
    # Two ids with the same bytes would make the tie-break depend on dict order; the
    # check's texts must never produce them, and must separate every wrong tie-break.
    for text, vocab_size in bpe_checks._train_cases():
        merges = bpe_checks._ref_train(text, vocab_size)
        tokens = list(bpe_checks._vocab(merges).values())
        assert len(set(tokens)) == len(tokens), text
    for wrong, _ in bpe_checks._TIE_MISTAKES:
        assert any(wrong(t, v) != bpe_checks._ref_train(t, v) for t, v in bpe_checks._train_cases())


# ------------------------------------------------------------------------- bpe_encode


def test_encode_in_reading_order_is_rejected():
    def wrong(text, merges):
        rank = {pair: k for k, pair in enumerate(merges)}
        ids = list(text.encode("utf-8"))
        changed = True
        while changed:
            changed = False
            for i in range(len(ids) - 1):
                if (ids[i], ids[i + 1]) in rank:
                    ids[i:i + 2] = [256 + rank[(ids[i], ids[i + 1])]]
                    changed = True
                    break
        return ids

    fails("bpe_encode", wrong, "text='abc'", "expected [97, 256], got [257, 99]",
          "applied by rank, not in the order pairs appear")


def test_encode_with_rank_as_new_id_is_rejected():
    def wrong(text, merges):
        ids = list(text.encode("utf-8"))
        for k, pair in enumerate(merges):
            ids = merge_ok(ids, pair, k)
        return ids

    fails("bpe_encode", wrong, "expected [97, 256], got [97, 0]",
          "merge number k creates id 256 + k")


def test_encode_single_sweep_is_rejected():
    def wrong(text, merges):
        rank = {pair: k for k, pair in enumerate(merges)}
        ids = list(text.encode("utf-8"))
        out, i = [], 0
        while i < len(ids):
            if i + 1 < len(ids) and (ids[i], ids[i + 1]) in rank:
                out.append(256 + rank[(ids[i], ids[i + 1])])
                i += 2
            else:
                out.append(ids[i])
                i += 1
        return out

    fails("bpe_encode", wrong, "one sweep is not enough")


def test_encode_loop_without_a_length_guard_gets_the_hint():
    # min() over the pairs of a single id raises ValueError ("aaa" merges down to one id).
    def wrong(text, merges):
        rank = {pair: k for k, pair in enumerate(merges)}
        ids = list(text.encode("utf-8"))
        while True:
            pair = min(pair_counts_ok(ids), key=lambda p: rank.get(p, float("inf")))
            if pair not in rank:
                return ids
            ids = merge_ok(ids, pair, 256 + rank[pair])

    message = fails("bpe_encode", wrong, "text='aaa'", "ValueError",
                    "your loop called min() on no pairs", "fewer than two ids remain")
    assert "full traceback" not in message and "len(ids) >= 2" not in message


def test_encode_from_code_points_gets_the_code_point_hint():
    def wrong(text, merges):
        rank = {pair: k for k, pair in enumerate(merges)}
        ids = [ord(c) for c in text]
        while len(ids) >= 2:
            pair = min(pair_counts_ok(ids), key=lambda p: rank.get(p, float("inf")))
            if pair not in rank:
                break
            ids = merge_ok(ids, pair, 256 + rank[pair])
        return ids

    message = fails("bpe_encode", wrong, "Der Leuchtturmwärter", "code points (ord() of each "
                    "character), not from the UTF-8 bytes", "'é' is code point 233")
    assert "byte value that is not in the text" not in message


def test_encode_from_latin1_bytes_gets_the_utf8_hint():
    def wrong(text, merges):
        ids = list(text.encode("latin-1"))
        for k, pair in enumerate(merges):
            ids = merge_ok(ids, pair, 256 + k)
        return ids

    fails("bpe_encode", wrong, "UnicodeEncodeError", "encode the text as UTF-8")


def test_encode_with_new_ids_off_by_one_gets_the_numbering_hint():
    def wrong(text, merges):
        ids = list(text.encode("utf-8"))
        for k, pair in enumerate(merges):
            ids = merge_ok(ids, pair, 255 + k)
        return ids

    message = fails("bpe_encode", wrong, "merge number k (its index in merges) creates id 256 + k")
    assert "recount" not in message


def test_encode_that_sorts_the_merges_in_place_is_rejected():
    def wrong(text, merges):
        merges.sort(key=lambda p: -p[0])  # "highest first"
        return encode_ok(text, merges)

    fails("bpe_encode", wrong, "changed its argument 2 in place", "do not change merges")


def test_encode_wrong_containers_are_rejected():
    fails("bpe_encode", lambda text, merges: tuple(encode_ok(text, merges)),
          "expected list[int], got a tuple")
    fails("bpe_encode", lambda text, merges: AlwaysEqualList(), "got an AlwaysEqualList")


def test_encode_reference_matches_the_package_on_each_pretoken():
    # Without pre-tokenization the lesson's encoder is the package's `_bpe` on one piece.
    text = bpe_checks._ENGLISH + bpe_checks._UNICODE
    tok = ByteBPETokenizer().train(text, vocab_size=256 + 60 + 1)
    ids_of = {tok.token_bytes(i): i for i in range(tok.vocab_size)}
    merges = [(ids_of[a], ids_of[b]) for a, b in tok.merges]
    assert [ids_of[a + b] for a, b in tok.merges] == list(range(256, 256 + len(merges)))
    for piece in pretokenize(text + " déjà vu, the keepers' 灯台 lamp"):
        assert bpe_checks._ref_encode(piece, merges) == tok.encode_ordinary(piece), piece


def test_train_reference_matches_the_package_on_a_single_word():
    # One pre-token = no word boundaries, so the lesson's loop and `learn_merges` agree.
    word = "abracadabra" * 5
    merges = bpe_checks._ref_train(word, 256 + 12)
    vocab = bpe_checks._vocab(merges)
    package = learn_merges(count_pretokens(word), 12)
    assert [(vocab[a], vocab[b]) for a, b in merges] == package


# ------------------------------------------------------------------------- bpe_decode


def test_decode_token_by_token_is_rejected():
    def wrong(ids, merges):
        vocab = {i: bytes([i]) for i in range(256)}
        for k, (a, b) in enumerate(merges):
            vocab[256 + k] = vocab[a] + vocab[b]
        return "".join(vocab[i].decode("utf-8", errors="replace") for i in ids)

    fails("bpe_decode", wrong, "ids=[195, 169]", "join all the bytes first")


def test_decode_without_errors_replace_is_explained():
    def wrong(ids, merges):
        vocab = {i: bytes([i]) for i in range(256)}
        for k, (a, b) in enumerate(merges):
            vocab[256 + k] = vocab[a] + vocab[b]
        return b"".join(vocab[i] for i in ids).decode("utf-8")

    fails("bpe_decode", wrong, "UnicodeDecodeError", "errors='replace'")


def test_decode_returning_bytes_is_a_type_error():
    def wrong(ids, merges):
        vocab = {i: bytes([i]) for i in range(256)}
        for k, (a, b) in enumerate(merges):
            vocab[256 + k] = vocab[a] + vocab[b]
        return b"".join(vocab[i] for i in ids)

    fails("bpe_decode", wrong, "expected str, got a bytes", "not bytes")


def test_decode_always_equal_str_is_rejected():
    fails("bpe_decode", lambda ids, merges: AlwaysEqualStr(""), "expected str, got an AlwaysEqualStr")


def test_decode_that_consumes_the_ids_is_rejected():
    def wrong(ids, merges):
        text = decode_ok(ids, merges)
        ids.clear()
        return text

    fails("bpe_decode", wrong, "changed its argument 1 in place")


# ------------------------------------------------------------------------ hint levels

NAMES = ("get_pair_counts", "merge", "train_bpe", "bpe_encode", "bpe_decode")
# Lines of the reference solutions: no hint (level, mistake or fallback) may print them.
ANSWER_LINES = ("max(counts, key=", "list(text.encode", "while len(ids) >= 2", "while i < len(ids)",
                "range(len(ids) - 1)", "rank = {pair: k", "b\"\".join(vocab[i]", "counts.get(pair, 0) + 1",
                "ids = merge(ids")


@pytest.mark.parametrize("name", NAMES)
def test_each_exercise_has_two_hint_levels(name, capsys):
    levels = core.HINTS[name]
    assert len(levels) == 2 and all(len(level) > 40 for level in levels)
    core._SHOWN.pop(name, None)
    check.hint(name)
    check.hint(name)
    out = capsys.readouterr().out
    assert f"{name}: (level 1 of 2) " in out and f"{name}: (level 2 of 2) " in out


def test_no_hint_prints_an_answer_line():
    hints = [h for levels in (core.HINTS[n] for n in NAMES) for h in levels]
    hints += [h for _, h in bpe_checks._PAIR_COUNT_MISTAKES + bpe_checks._MERGE_MISTAKES
              + bpe_checks._TRAIN_MISTAKES + bpe_checks._ENCODE_MISTAKES + bpe_checks._DECODE_MISTAKES]
    hints += [bpe_checks._TIE_HINT, bpe_checks._STRING_REPLACE, bpe_checks._CODE_POINTS]
    for h in hints:
        assert not any(line in h for line in ANSWER_LINES), h


@pytest.mark.parametrize(("name", "fn"), [
    ("get_pair_counts", lambda ids: dict.fromkeys(zip(ids, ids[1:], strict=False), 1)),
    ("merge", lambda ids, pair, new_id: [x for x in ids if x not in pair]),
    ("train_bpe", lambda text, vocab_size: train_ok(text, vocab_size)[::-1]),
    ("bpe_encode", lambda text, merges: list(text.encode()) + [0]),
    ("bpe_decode", lambda ids, merges: decode_ok(ids, merges).upper()),
])
def test_failure_hints_do_not_print_an_answer_line(name, fn):
    message = fails(name, fn)
    assert not any(line in message for line in ANSWER_LINES), message
