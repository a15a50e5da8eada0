"""Checks of lesson 03 (packing): references pass, realistic mistakes fail with the right hint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course import checks as check
from course.checks import CheckFailed, NotAttempted


def todo(*args):
    raise NotImplementedError("Exercise: implement it")


# ---------------------------------------------------------------------------- pack


def pack_ok(docs, block_size, eos_id):
    stream = [t for doc in docs for t in [*doc, eos_id]]
    n = len(stream) // block_size
    return [stream[i * block_size:(i + 1) * block_size] for i in range(n)]


def pack_numpy(docs, block_size, eos_id):  # another valid style: an array, not lists
    stream = np.concatenate([np.append(np.asarray(d, dtype=np.int64), eos_id) for d in docs])
    n = len(stream) // block_size
    return stream[: n * block_size].reshape(n, block_size)


def pack_no_eos(docs, block_size, eos_id):
    stream = [t for doc in docs for t in doc]
    return [stream[i:i + block_size] for i in range(0, len(stream) - block_size + 1, block_size)]


def pack_eos_before(docs, block_size, eos_id):
    stream = [t for doc in docs for t in [eos_id, *doc]]
    return [stream[i:i + block_size] for i in range(0, len(stream) - block_size + 1, block_size)]


def pack_eos_between(docs, block_size, eos_id):
    stream = []
    for i, doc in enumerate(docs):
        stream += ([eos_id] if i else []) + list(doc)
    return [stream[i:i + block_size] for i in range(0, len(stream) - block_size + 1, block_size)]


def pack_keeps_tail(docs, block_size, eos_id):
    stream = [t for doc in docs for t in [*doc, eos_id]]
    return [stream[i:i + block_size] for i in range(0, len(stream), block_size)]


def pack_pads_tail(docs, block_size, eos_id):
    blocks = pack_keeps_tail(docs, block_size, eos_id)
    blocks[-1] = blocks[-1] + [eos_id] * (block_size - len(blocks[-1]))
    return blocks


def pack_overlapping(docs, block_size, eos_id):  # stride T - 1, as if blocks had to share a token
    stream = [t for doc in docs for t in [*doc, eos_id]]
    return [stream[i:i + block_size] for i in range(0, len(stream) - block_size + 1, block_size - 1)]


def pack_flat(docs, block_size, eos_id):
    return [t for doc in docs for t in [*doc, eos_id]]


def test_pack_reference_passes(capsys):
    check.pack(pack_ok)
    assert capsys.readouterr().out == "✓ pack: 14 cases passed\n"


def test_pack_accepts_an_array():
    check.pack(pack_numpy)


@pytest.mark.parametrize("wrong, hint", [
    (pack_no_eos, "there is no EOS in your blocks"),
    (pack_eos_before, "you put the EOS before each document"),
    (pack_eos_between, "the last document has no EOS"),
    (pack_keeps_tail, "drop the incomplete tail"),
    (pack_pads_tail, "the tail is dropped here, not padded"),
    (pack_overlapping, "your blocks overlap"),
    (pack_flat, "one flat list"),
])
def test_pack_mistakes_are_named(wrong, hint):
    with pytest.raises(CheckFailed, match=r"pack: on input docs=\[\[") as info:
        check.pack(wrong)
    assert hint in str(info.value)


def test_pack_wrong_message_shows_expected_and_got():
    with pytest.raises(CheckFailed) as info:
        check.pack(pack_eos_before)
    assert "expected [[5, 6, 7], [1, 8, 9]], got [[1, 5, 6], [7, 1, 8]]" in str(info.value)


def test_pack_not_attempted():
    with pytest.raises(NotAttempted):
        check.pack(todo)


# --------------------------------------------------------------------------- shift


def shift_ok(block):
    return block[:-1], block[1:]


def shift_swapped(block):
    return block[1:], block[:-1]


def shift_whole_block_as_input(block):
    return block, block[1:]


def shift_none(block):
    return block[:-1], block[:-1]


def shift_by_two(block):
    return block[:-2], block[2:]


def shift_roll(block):
    t = torch.as_tensor(block)
    return t, torch.roll(t, -1)


def shift_keeps_last_input(block):
    return block, [*list(block[1:]), block[-1]]


def test_shift_reference_passes(capsys):
    check.shift(shift_ok)
    assert capsys.readouterr().out == "✓ shift: 6 cases passed\n"


def test_shift_accepts_tensors_for_list_inputs():
    check.shift(lambda b: (torch.as_tensor(b[:-1]), torch.as_tensor(b[1:])))


@pytest.mark.parametrize("wrong, hint", [
    (shift_swapped, "inputs and targets are swapped"),
    (shift_whole_block_as_input, "inputs has 5 tokens and targets 4"),
    (shift_none, "targets equal inputs"),
    (shift_by_two, "off by one"),
    (shift_roll, "torch.roll wraps the first token around"),
    (shift_keeps_last_input, "inputs keep the last token"),
])
def test_shift_mistakes_are_named(wrong, hint):
    with pytest.raises(CheckFailed, match=r"shift: on input block=\[10, 11, 12, 13, 14\]") as info:
        check.shift(wrong)
    assert hint in str(info.value)


def test_shift_must_return_a_pair():
    with pytest.raises(CheckFailed, match="expected a pair"):
        check.shift(lambda b: b[1:])


def test_shift_not_attempted():
    with pytest.raises(NotAttempted):
        check.shift(todo)


# ------------------------------------------------------------------------- doc ids


def doc_ids_ok(docs, block_size):
    ids = [i for i, doc in enumerate(docs) for _ in range(len(doc) + 1)]
    n = len(ids) // block_size
    return [ids[j * block_size:(j + 1) * block_size] for j in range(n)]


def _cut(ids, block_size, keep_tail=False):
    stop = len(ids) if keep_tail else len(ids) - block_size + 1
    return [ids[j:j + block_size] for j in range(0, stop, block_size)]


def doc_ids_eos_to_next(docs, block_size):
    ids = []
    for i, doc in enumerate(docs):
        ids += [i] * len(doc) + [i + 1]  # the EOS counted as the start of the next document
    return _cut(ids, block_size)


def doc_ids_no_eos(docs, block_size):
    return _cut([i for i, doc in enumerate(docs) for _ in doc], block_size)


def doc_ids_eos_minus_one(docs, block_size):
    return _cut([i for i, doc in enumerate(docs) for i in [i] * len(doc) + [-1]], block_size)


def doc_ids_from_one(docs, block_size):
    return _cut([i + 1 for i, doc in enumerate(docs) for _ in range(len(doc) + 1)], block_size)


def doc_ids_keep_tail(docs, block_size):
    return _cut([i for i, doc in enumerate(docs) for _ in range(len(doc) + 1)], block_size,
                keep_tail=True)


def test_doc_ids_reference_passes(capsys):
    check.doc_ids_for(doc_ids_ok)
    assert capsys.readouterr().out == "✓ doc_ids_for: 14 cases passed\n"


@pytest.mark.parametrize("wrong, hint", [
    (doc_ids_eos_to_next, "your EOS positions carry the id of the NEXT document"),
    (doc_ids_no_eos, "the EOS positions are missing"),
    (doc_ids_eos_minus_one, "your EOS positions have id -1"),
    (doc_ids_from_one, "document ids count from 0"),
    (doc_ids_keep_tail, "drop the incomplete last block"),
])
def test_doc_ids_mistakes_are_named(wrong, hint):
    with pytest.raises(CheckFailed, match=r"doc_ids_for: on input docs=\[\[5, 6, 7\], \[8, 9\]\], "
                                          "block_size=3") as info:
        check.doc_ids_for(wrong)
    assert hint in str(info.value)


def test_doc_ids_not_attempted():
    with pytest.raises(NotAttempted):
        check.doc_ids_for(todo)
