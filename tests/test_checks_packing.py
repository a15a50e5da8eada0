"""Checks of lesson 03 (packing): references pass, realistic mistakes fail with the right hint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lookalikes import AlwaysEqualList as AlwaysEqual

from course import checks as check
from course.checks import CheckFailed, NotAttempted


def todo(*args):
    raise NotImplementedError("Exercise: implement it")


# ---------------------------------------------------------------------------- pack


def pack_ok(docs, block_size, eos_id):
    stream = [t for doc in docs for t in [*doc, eos_id]]
    n = len(stream) // block_size
    return [stream[i * block_size:(i + 1) * block_size] for i in range(n)]


def pack_numpy(docs, block_size, eos_id):  # an array: the next cells' == .tolist() says False
    stream = np.concatenate([np.append(np.asarray(d, dtype=np.int64), eos_id) for d in docs])
    n = len(stream) // block_size
    return stream[: n * block_size].reshape(n, block_size)


def pack_tensor(docs, block_size, eos_id):
    return torch.as_tensor(pack_numpy(docs, block_size, eos_id))


def pack_tuples(docs, block_size, eos_id):
    return [tuple(b) for b in pack_ok(docs, block_size, eos_id)]


def pack_numpy_rows(docs, block_size, eos_id):  # lists of NumPy ints: == still works later
    return [list(row) for row in pack_numpy(docs, block_size, eos_id)]


def pack_with_itertools(docs, block_size, eos_id):  # another correct style
    from itertools import chain

    stream = list(chain.from_iterable([*d, eos_id] for d in docs))
    return [stream[i:i + block_size] for i in range(0, len(stream) // block_size * block_size,
                                                      block_size)]


def pack_appends_to_docs(docs, block_size, eos_id):  # right blocks, but edits the caller's docs
    stream = []
    for doc in docs:
        doc.append(eos_id)
        stream.extend(doc)
    n = len(stream) // block_size
    return [stream[i * block_size:(i + 1) * block_size] for i in range(n)]


def pack_drops_full_last_block(docs, block_size, eos_id):  # off by one in the number of blocks
    stream = [t for doc in docs for t in [*doc, eos_id]]
    return [stream[i:i + block_size] for i in range(0, len(stream) - block_size, block_size)]


def pack_always_equal(docs, block_size, eos_id):
    return AlwaysEqual()


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


def test_pack_other_correct_styles_pass():
    check.pack(pack_with_itertools)
    check.pack(pack_numpy_rows)


@pytest.mark.parametrize("wrong, got", [
    (pack_numpy, "got a ndarray"),
    (pack_tensor, "got a torch.Tensor"),
    (pack_tuples, "a list holding a tuple at [0]"),
    (pack_always_equal, "got an AlwaysEqual"),
])
def test_pack_wrong_container_is_rejected(wrong, got):
    with pytest.raises(CheckFailed, match=r"pack: on input docs=\[\[5, 6, 7\], \[8, 9\]\]") as info:
        check.pack(wrong)
    message = str(info.value)
    assert "expected list[list[int]]" in message and got in message
    assert "return a list of lists of Python ints" in message


def test_pack_that_appends_eos_to_the_callers_docs_is_rejected():
    with pytest.raises(CheckFailed, match="changed its argument 1 in place") as info:
        check.pack(pack_appends_to_docs)
    assert "changed the caller's documents (e.g. doc.append(eos_id)" in str(info.value)


def test_pack_dropping_a_full_last_block_is_named():
    with pytest.raises(CheckFailed, match=r"docs=\[\[10, 11, 12\], \[13, 14, 15, 16\]\]") as info:
        check.pack(pack_drops_full_last_block)
    message = str(info.value)
    assert "your last block is missing" in message
    assert "9 tokens, an exact multiple of block_size=3" in message and "off-by-one" in message


@pytest.mark.parametrize("wrong, hint", [
    (pack_no_eos, "there is no EOS in your blocks"),
    (pack_eos_before, "you put the EOS before each document"),
    # An EOS only between documents gives exactly the blocks of an off-by-one block count
    # (the stream is one token shorter): the hint names both causes.
    (pack_eos_between, "that the last document gets its EOS too"),
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


def test_pack_between_with_kept_tail_is_named():
    def pack_eos_between_keeps_tail(docs, block_size, eos_id):
        stream = []
        for i, doc in enumerate(docs):
            stream += ([eos_id] if i else []) + list(doc)
        n = len(stream) // block_size
        return [stream[i * block_size:(i + 1) * block_size] for i in range(n)]

    with pytest.raises(CheckFailed) as info:
        check.pack(pack_eos_between_keeps_tail)
    assert "the last document gets its EOS too" in str(info.value)


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
    inputs, targets = t, torch.roll(t, -1)
    if isinstance(block, list):
        return inputs.tolist(), targets.tolist()
    return inputs, targets


def shift_keeps_last_input(block):
    return list(block), [*list(block[1:]), block[-1]]


def test_shift_reference_passes(capsys):
    check.shift(shift_ok)
    assert capsys.readouterr().out == "✓ shift: 6 cases passed\n"


def test_shift_other_correct_styles_pass():
    def shift_by_index(block):
        n = len(block)
        if isinstance(block, torch.Tensor):
            return block[torch.arange(n - 1)], block[torch.arange(1, n)]
        return [block[i] for i in range(n - 1)], [block[i] for i in range(1, n)]

    check.shift(shift_by_index)
    check.shift(lambda b: (b[:len(b) - 1], b[1:]))


@pytest.mark.parametrize("wrong, where, got", [
    # tensors for a list: the table cell then gets 0-dim tensors, not token ids
    (lambda b: (torch.as_tensor(b[:-1]), torch.as_tensor(b[1:])), r"block=\[10, 11", "a torch.Tensor"),
    # lists for a tensor: the next cell's F.cross_entropy fails on a list
    (lambda b: (list(b[:-1]), list(b[1:])) if isinstance(b, torch.Tensor) else (b[:-1], b[1:]),
     r"block=tensor of shape \(8,\)", "a list"),
    (lambda b: [b[:-1], b[1:]], r"block=\[10, 11", "got a list"),
    (lambda b: (tuple(b[:-1]), tuple(b[1:])), r"block=\[10, 11", "a tuple"),
    (lambda b: (AlwaysEqual(), AlwaysEqual()), r"block=\[10, 11", "AlwaysEqual"),
])
def test_shift_wrong_container_is_rejected(wrong, where, got):
    with pytest.raises(CheckFailed, match=f"shift: on input {where}") as info:
        check.shift(wrong)
    message = str(info.value)
    assert "expected tuple[" in message and got in message
    assert "return the same kind of sequence you were given" in message


def test_shift_tensor_of_another_dtype_is_rejected():
    def shift_float(block):
        if isinstance(block, torch.Tensor):
            return block[:-1].float(), block[1:].float()
        return block[:-1], block[1:]

    with pytest.raises(CheckFailed, match="expected a 1-D tensor of dtype torch.int64"):
        check.shift(shift_float)


def test_shift_that_changes_the_block_is_rejected():
    def shift_pop(block):
        if isinstance(block, torch.Tensor):
            return block[:-1], block[1:]
        targets = block[1:]
        block.pop()
        return block, targets

    def shift_in_place_tensor(block):
        if isinstance(block, torch.Tensor):
            targets = block[1:].clone()
            block[1:] = block[:-1].clone()  # "shift" in place
            return block[1:], targets
        return block[:-1], block[1:]

    for wrong in (shift_pop, shift_in_place_tensor):
        with pytest.raises(CheckFailed, match="changed its argument 1 in place") as info:
            check.shift(wrong)
        assert "changed the block it was given" in str(info.value)


@pytest.mark.parametrize("wrong, hint", [
    (shift_swapped, "inputs and targets are swapped"),
    (shift_whole_block_as_input, "inputs has 5 tokens and targets 4"),
    (shift_none, "targets equal inputs"),
    (shift_by_two, "off by one"),
    (shift_roll, "a roll wraps the first token around"),
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


def doc_ids_drops_full_last_block(docs, block_size):
    ids = [i for i, doc in enumerate(docs) for _ in range(len(doc) + 1)]
    return [ids[j:j + block_size] for j in range(0, len(ids) - block_size, block_size)]


def test_doc_ids_dropping_a_full_last_block_is_named():
    with pytest.raises(CheckFailed, match=r"docs=\[\[10, 11, 12\], \[13, 14, 15, 16\]\]") as info:
        check.doc_ids_for(doc_ids_drops_full_last_block)
    assert "your last block is missing" in str(info.value)


@pytest.mark.parametrize("wrong, got", [
    (lambda docs, bs: [tuple(b) for b in doc_ids_ok(docs, bs)], "a list holding a tuple"),
    (lambda docs, bs: torch.tensor(doc_ids_ok(docs, bs)), "got a torch.Tensor"),
    (lambda docs, bs: AlwaysEqual(), "AlwaysEqual"),
])
def test_doc_ids_wrong_container_is_rejected(wrong, got):
    with pytest.raises(CheckFailed, match="expected list\\[list\\[int\\]\\]") as info:
        check.doc_ids_for(wrong)
    assert got in str(info.value)


def test_doc_ids_that_changes_the_docs_is_rejected():
    def doc_ids_appends(docs, block_size):
        for doc in docs:
            doc.append(-1)  # marks the EOS position, in the caller's documents
        ids = [i for i, doc in enumerate(docs) for _ in doc]
        n = len(ids) // block_size
        return [ids[j * block_size:(j + 1) * block_size] for j in range(n)]

    with pytest.raises(CheckFailed, match="changed its argument 1 in place") as info:
        check.doc_ids_for(doc_ids_appends)
    assert "changed the caller's documents" in str(info.value)


@pytest.mark.parametrize("name", ["pack", "shift", "doc_ids_for"])
def test_hint_levels_exist_and_do_not_give_the_answer(name, capsys, monkeypatch):
    from course.checks._core import _SHOWN, HINTS

    monkeypatch.setitem(_SHOWN, name, 0)  # as in a fresh session

    levels = HINTS[name]
    assert len(levels) == 2 and all(len(level) > 40 for level in levels)
    for level in levels:
        assert "[:-1]" not in level and "[1:]" not in level and "range(" not in level
    check.hint(name)
    assert capsys.readouterr().out.startswith(f"{name}: (level ")


def test_doc_ids_not_attempted():
    with pytest.raises(NotAttempted):
        check.doc_ids_for(todo)
