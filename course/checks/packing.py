"""Checks for lesson 03 (packing): documents → blocks, the next-token shift, document ids.

The references are the package's own `course.packing.pack_documents` (blocks and document
ids) and plain slicing (the shift). When an answer is wrong, the usual mistakes are
recomputed on the same input (no EOS, EOS before the document, a kept short tail, the EOS
given to the next document, ...) so the message can name the mistake, not just the values.

Token ids in the cases are small random integers; the EOS id is chosen apart from them
(and is not 0 in most cases) so that a hard-coded EOS id shows up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from course.checks._core import CheckFailed, call, exercise, expect_equal, show

# ------------------------------------------------------------------------- helpers


def _stream(docs: Sequence[Sequence[int]], eos_id: int, where: str = "after") -> list[int]:
    """Documents joined with EOS: `after` each (right), `before` each, or only `between`."""
    out: list[int] = []
    for i, doc in enumerate(docs):
        if where == "before":
            out += [eos_id, *doc]
        elif where == "between":
            out += ([eos_id] if i else []) + list(doc)
        elif where == "none":
            out += list(doc)
        else:
            out += [*doc, eos_id]
    return out


def _cut(stream: list[int], block_size: int, tail: str = "drop", fill: int = 0) -> list[list[int]]:
    """Consecutive blocks of `block_size`; the short tail dropped, kept or padded with `fill`."""
    blocks = [stream[i:i + block_size] for i in range(0, len(stream), block_size)]
    if blocks and len(blocks[-1]) < block_size:
        if tail == "drop":
            blocks.pop()
        elif tail == "pad":
            blocks[-1] = blocks[-1] + [fill] * (block_size - len(blocks[-1]))
    return blocks


def _as_lists(value: Any) -> Any:
    """Tensors and arrays become (nested) lists, tuples become lists; anything else is kept."""
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple)):
        return value.tolist()
    if isinstance(value, tuple):
        return [_as_lists(v) for v in value]
    if isinstance(value, list):
        return [_as_lists(v) if isinstance(v, (list, tuple)) or hasattr(v, "tolist") and
                not isinstance(v, (int, float)) else v for v in value]
    return value


def _int_rows(name: str, desc: str, got: Any, what: str) -> list[list[int]]:
    """`got` as a list of lists of ints, or a CheckFailed that says what the shape is instead."""
    got = _as_lists(got)
    if got is None:
        raise CheckFailed(name, f"on input {desc} — expected a list of {what}, got None "
                          "(did the function forget to `return`?)")
    if not isinstance(got, list):
        raise CheckFailed(name, f"on input {desc} — expected a list of {what}, got "
                          f"{type(got).__name__}: {show(got)}", hint="return a list of lists of ints")
    if got and all(isinstance(x, int) for x in got):
        raise CheckFailed(name, f"on input {desc} — expected a list of {what} (one list per block), "
                          f"got one flat list of {len(got)} ints: {show(got)}",
                          hint="cut the stream into consecutive pieces of block_size tokens")
    for row in got:
        if not isinstance(row, list) or not all(isinstance(x, int) for x in row):
            raise CheckFailed(name, f"on input {desc} — expected a list of {what}, but one item is "
                              f"{show(row)}", hint="every block must be a list of ints")
    return got


def _random_docs(rng: Any, n_docs: int, max_len: int, vocab: int) -> list[list[int]]:
    return [[int(t) for t in rng.integers(0, vocab, size=int(rng.integers(0, max_len + 1)))]
            for _ in range(n_docs)]


def _pack_cases() -> list[tuple[list[list[int]], int, int]]:
    """(docs, block_size, eos_id): hand-picked edge cases first, then seeded random ones."""
    import numpy as np

    cases = [
        ([[5, 6, 7], [8, 9]], 3, 1),  # stream 5 6 7 E 8 9 E: two blocks, a tail of 1 dropped
        ([[10, 11, 12], [13, 14, 15, 16]], 3, 99),  # 9 tokens: exactly three blocks, no tail
        ([[1, 2], [], [3]], 2, 7),  # an empty document is a lone EOS
        ([list(range(20, 30))], 4, 50),  # one document spanning several blocks
        ([[4], [5], [6], [7], [8]], 2, 0),  # EOS id 0
        ([[2, 3, 4, 5, 6, 7, 8]], 8, 9),  # the whole stream is one block
    ]
    rng = np.random.default_rng(3)
    while len(cases) < 14:
        docs = _random_docs(rng, int(rng.integers(1, 9)), 15, 40)
        block_size = int(rng.integers(2, 13))
        if sum(len(d) + 1 for d in docs) >= block_size:
            cases.append((docs, block_size, int(rng.integers(40, 60))))
    return cases


# ---------------------------------------------------------------------------- pack


@exercise("pack")
def pack(fn: Callable[..., Any]) -> int:
    """`fn(docs, block_size, eos_id)` against `pack_documents(..., tail="drop").input_ids`."""
    from course.packing import pack_documents

    name = "pack"
    cases = _pack_cases()
    for docs, block_size, eos_id in cases:
        desc = f"docs={docs!r}, block_size={block_size}, eos_id={eos_id}"
        if len(desc) > 200:
            desc = f"docs={show(docs)} ({len(docs)} documents), block_size={block_size}, eos_id={eos_id}"
        expected = pack_documents(docs, block_size, eos_id).input_ids.tolist()
        got = call(name, fn, [list(d) for d in docs], block_size, eos_id, inputs_desc=desc)
        got = _int_rows(name, desc, got, "blocks (lists of ints)")
        if got == expected:
            continue
        stream = _stream(docs, eos_id)
        if all(len(b) == block_size for b in got[:-1]) and got[:-1] == expected and got and \
                len(got[-1]) < block_size and len(got) == len(expected) + 1:
            hint = ("your last block is shorter than block_size: drop the incomplete tail "
                    "(every training block must hold exactly block_size tokens)")
        elif got == _cut(stream, block_size, "pad", eos_id) or (
                len(got) == len(expected) + 1 and got[:-1] == expected):
            hint = "the tail is dropped here, not padded: keep only the full blocks"
        elif got in (_cut(_stream(docs, eos_id, "none"), block_size),
                     _cut(_stream(docs, eos_id, "none"), block_size, "keep")):
            hint = ("there is no EOS in your blocks: append eos_id after every document, so the "
                    "model learns where a document ends")
        elif got in (_cut(_stream(docs, eos_id, "before"), block_size),
                     _cut(_stream(docs, eos_id, "before"), block_size, "keep")):
            hint = ("you put the EOS before each document; it goes after each one "
                    "(it *ends* a document: doc + [eos_id])")
        elif got in (_cut(_stream(docs, eos_id, "between"), block_size),
                     _cut(_stream(docs, eos_id, "between"), block_size, "keep")):
            hint = ("the last document has no EOS: every document, the last one included, "
                    "is followed by eos_id (not only the gaps between documents)")
        elif got in ([stream[i:i + block_size] for i in range(0, len(stream) - block_size + 1, step)]
                     for step in (block_size - 1, 1)):
            hint = ("your blocks overlap: block k starts at k * block_size, so no token is used "
                    "twice (the one-position shift happens inside each block, not between blocks)")
        elif any(len(b) != block_size for b in got):
            bad = next(b for b in got if len(b) != block_size)
            hint = (f"every block must hold exactly block_size={block_size} tokens; one of yours "
                    f"has {len(bad)}")
        else:
            hint = ("build the stream doc_0 + [eos] + doc_1 + [eos] + ..., then cut it into "
                    "consecutive pieces of block_size and drop the short last piece")
        expect_equal(name, desc, expected, got, hint=hint)
    return len(cases)


# --------------------------------------------------------------------------- shift


@exercise("shift")
def shift(fn: Callable[..., Any]) -> int:
    """`fn(block) -> (inputs, targets)` = (block[:-1], block[1:]), on lists and 1-D tensors."""
    import numpy as np
    import torch

    name = "shift"
    rng = np.random.default_rng(7)
    blocks: list[Any] = [
        [10, 11, 12, 13, 14],
        [3, 8],  # the shortest block: one input, one target
        [int(x) for x in rng.permutation(50)[:9]],
        torch.tensor([7, 1, 4, 4, 2, 9, 0, 5]),
        torch.tensor([int(x) for x in rng.permutation(100)[:16]]),
        [int(x) for x in rng.integers(0, 30, size=12)],
    ]
    for block in blocks:
        as_list = _as_lists(block)
        desc = f"block={show(block)}"
        got = call(name, fn, block.clone() if torch.is_tensor(block) else list(block), inputs_desc=desc)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise CheckFailed(name, f"on input {desc} — expected a pair (inputs, targets), got "
                              f"{show(got)}", hint="return two sequences: return inputs, targets")
        inputs, targets = (_as_lists(x) for x in got)
        expected = (as_list[:-1], as_list[1:])
        if (inputs, targets) == expected:
            continue
        if (inputs, targets) == (as_list[1:], as_list[:-1]):
            hint = ("inputs and targets are swapped: the model reads block[:-1] and must predict "
                    "the token that follows each one, block[1:]")
        elif isinstance(inputs, list) and isinstance(targets, list) and len(inputs) != len(targets):
            hint = (f"inputs has {len(inputs)} tokens and targets {len(targets)}: they must pair up "
                    f"one to one, T - 1 = {len(as_list) - 1} each (the last token has nothing to "
                    "predict, the first is never predicted)")
        elif inputs == targets:
            hint = ("targets equal inputs: the target at position t is the NEXT token, "
                    "so targets are shifted one position to the left (block[1:])")
        elif inputs == as_list and targets == as_list[1:] + as_list[:1]:
            hint = ("torch.roll wraps the first token around to the end, so the last input gets "
                    "the first token as a fake target; the last token has no target inside the "
                    "block: drop it (inputs = block[:-1], targets = block[1:])")
        elif inputs == as_list:
            hint = ("inputs keep the last token, but nothing in the block follows it, so it has "
                    "no target: inputs = block[:-1]")
        else:
            hint = "off by one: inputs = block[:-1] and targets = block[1:]"
        expect_equal(name, desc, expected, (inputs, targets), hint=hint)
    return len(blocks)


# ------------------------------------------------------------------------- doc ids


def _doc_ids_variant(docs: Sequence[Sequence[int]], block_size: int, kind: str) -> list[list[int]]:
    ids: list[int] = []
    for i, doc in enumerate(docs):
        if kind == "eos_to_next":
            ids += [i] * len(doc) + [i + 1]
        elif kind == "no_eos":
            ids += [i] * len(doc)
        elif kind == "eos_minus_one":
            ids += [i] * len(doc) + [-1]
        elif kind == "from_one":
            ids += [i + 1] * (len(doc) + 1)
        else:
            ids += [i] * (len(doc) + 1)
    tail = {"keep": "keep", "pad": "pad"}.get(kind, "drop")
    return _cut(ids, block_size, tail, -1)


@exercise("doc_ids_for")
def doc_ids_for(fn: Callable[..., Any]) -> int:
    """`fn(docs, block_size)` against `pack_documents(...).doc_ids` (EOS belongs to its document)."""
    from course.packing import pack_documents

    name = "doc_ids_for"
    cases = [(docs, block_size) for docs, block_size, _ in _pack_cases()]
    for docs, block_size in cases:
        desc = f"docs={docs!r}, block_size={block_size}"
        if len(desc) > 200:
            desc = f"docs={show(docs)} ({len(docs)} documents), block_size={block_size}"
        expected = pack_documents(docs, block_size, eos_id=0).doc_ids.tolist()
        got = call(name, fn, [list(d) for d in docs], block_size, inputs_desc=desc)
        got = _int_rows(name, desc, got, "blocks of document ids")
        if got == expected:
            continue
        if got == _doc_ids_variant(docs, block_size, "eos_to_next"):
            hint = ("your EOS positions carry the id of the NEXT document; the EOS that ends a "
                    "document belongs to that document (it is predicted from it): "
                    "document i fills len(doc) + 1 positions with i")
        elif got == _doc_ids_variant(docs, block_size, "no_eos"):
            hint = ("the EOS positions are missing: document i takes len(doc) + 1 positions "
                    "(its tokens and its EOS), all with id i")
        elif got == _doc_ids_variant(docs, block_size, "eos_minus_one"):
            hint = ("your EOS positions have id -1, which is reserved for padding; the EOS that "
                    "ends a document belongs to that document: give it id i too")
        elif got == _doc_ids_variant(docs, block_size, "from_one"):
            hint = "document ids count from 0: the first document has id 0"
        elif got in (_doc_ids_variant(docs, block_size, "keep"),
                     _doc_ids_variant(docs, block_size, "pad")):
            hint = ("drop the incomplete last block, as pack does: the ids must line up with "
                    "the blocks of tokens")
        else:
            hint = ("give every position of the stream (each document followed by its EOS) the "
                    "index of its document, then cut into blocks of block_size and drop the tail")
        expect_equal(name, desc, expected, got, hint=hint)
    return len(cases)
