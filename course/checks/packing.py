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

from course.checks._core import (
    CheckFailed,
    call,
    exercise,
    expect_contract,
    expect_equal,
    show,
)

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


_ROWS_HINT = ("return a list of lists of Python ints, one list per block (not tuples, not a tensor "
              "or an array): the next cells compare it with a tensor's .tolist()")


def _int_rows(name: str, desc: str, got: Any, what: str) -> list[list[int]]:
    """`got` checked against the docstring's `list[list[int]]` (strictly), as plain ints."""
    if type(got) is list and got and all(type(x) is int for x in got):
        raise CheckFailed(name, f"on input {desc} — expected a list of {what} (one list per block), "
                          f"got one flat list of {len(got)} ints: {show(got)}",
                          hint="cut the stream into consecutive pieces of block_size tokens")
    expect_contract(name, desc, list[list[int]], got, hint=_ROWS_HINT)
    return [[int(t) for t in row] for row in got]  # NumPy ints compare like ints later on


def _call_keeping_docs(name: str, fn: Callable[..., Any], docs: list[list[int]], *args: Any,
                       desc: str) -> Any:
    """`call`, with a hint that names the usual way of changing the caller's documents."""
    try:
        return call(name, fn, docs, *args, inputs_desc=desc)
    except CheckFailed as e:
        if "argument 1 in place" not in e.detail:
            raise
        raise CheckFailed(name, e.detail, hint=(
            "your function changed the caller's documents (e.g. doc.append(eos_id) or "
            "doc.extend(...) on an item of docs): the lesson packs the same docs again later, "
            "which then see your extra tokens. Copy the tokens into a new list (the stream) "
            "and add the EOS there")) from None


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


@exercise("pack", hints=(
    "Two steps. First one long new list, the stream, in which every document is followed by "
    "eos_id (the last document too). Then consecutive, non-overlapping pieces of exactly "
    "block_size tokens; how many full pieces fit in the stream?",
    "The number of full blocks is the integer division of the stream's length by block_size; "
    "block k covers stream positions k * block_size up to, not including, (k + 1) * block_size. "
    "Never append to the documents you are given, and return lists (not tuples or a tensor).",
))
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
        got = _call_keeping_docs(name, fn, [list(d) for d in docs], block_size, eos_id, desc=desc)
        got = _int_rows(name, desc, got, "blocks (lists of ints)")
        if got == expected:
            continue
        stream = _stream(docs, eos_id)
        if got == expected[:-1] and len(stream) % block_size == 0:
            # Also what an EOS only *between* documents gives (the stream is one token shorter):
            # on any input the two give the same blocks, so the hint names both.
            hint = (f"your last block is missing: the stream (every document followed by its EOS) "
                    f"has {len(stream)} tokens, an exact multiple of block_size={block_size}, so "
                    f"it makes {len(stream) // block_size} full blocks and there is no tail to "
                    "drop. Check how you count the blocks (an off-by-one in the number of "
                    "blocks or in a range's stop), and that the last document gets its EOS too")
        elif all(len(b) == block_size for b in got[:-1]) and got[:-1] == expected and got and \
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


_SHIFT_TYPES = ("return the same kind of sequence you were given: slices keep the type (a "
                "list's slices are lists, a tensor's slices are tensors), and the next cells "
                "use both: token ids from a list, cross_entropy on tensors")


@exercise("shift", hints=(
    "Each position's target is the token right after it. The last token of the block has no "
    "successor inside the block, and the first token is never anybody's target.",
    "Both outputs are slices of the block, T - 1 tokens each: one leaves out the last token, the "
    "other leaves out the first. Slicing never changes the block and keeps its type.",
))
def shift(fn: Callable[..., Any]) -> int:
    """`fn(block) -> (inputs, targets)` = (block[:-1], block[1:]), on lists and 1-D tensors:
    a list gives a tuple of two lists, a tensor a tuple of two tensors; the block is unchanged."""
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
        is_tensor = isinstance(block, torch.Tensor)
        as_list = block.tolist() if is_tensor else list(block)
        desc = f"block={show(block)}"
        try:
            got = call(name, fn, block.clone() if is_tensor else list(block), inputs_desc=desc)
        except CheckFailed as e:
            if "in place" not in e.detail:
                raise
            raise CheckFailed(name, e.detail, hint=(
                "your function changed the block it was given (e.g. .pop() or del on it): the "
                "caller still needs the whole block. Return slices, which are new sequences")) from None
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise CheckFailed(name, f"on input {desc} — expected a pair (inputs, targets), got "
                              f"{show(got)}", hint="return two sequences: return inputs, targets")
        spec = tuple[torch.Tensor, torch.Tensor] if is_tensor else tuple[list[int], list[int]]
        expect_contract(name, desc, spec, got, hint=_SHIFT_TYPES)
        inputs, targets = (x.tolist() if is_tensor else [int(t) for t in x] for x in got)
        expected = (as_list[:-1], as_list[1:])
        if (inputs, targets) == expected:
            if is_tensor:  # values right: the dtype must be the block's too (int64 ids)
                for what, x in zip(("inputs", "targets"), got, strict=True):
                    if x.dtype != block.dtype or x.dim() != 1:
                        raise CheckFailed(name, f"on input {desc} — {what} is {show(x)}; expected "
                                          f"a 1-D tensor of dtype {block.dtype}",
                                          hint="slice the block itself: token ids stay int64")
            continue
        if (inputs, targets) == (as_list[1:], as_list[:-1]):
            hint = ("inputs and targets are swapped: the model reads every token but the last, "
                    "and must predict the token that follows each one")
        elif len(inputs) != len(targets):
            hint = (f"inputs has {len(inputs)} tokens and targets {len(targets)}: they must pair up "
                    f"one to one, T - 1 = {len(as_list) - 1} each (the last token has nothing to "
                    "predict, the first is never predicted)")
        elif inputs == targets:
            hint = ("targets equal inputs: the target at position t is the NEXT token, "
                    "so the targets are the block shifted one position to the left")
        elif inputs == as_list and targets == as_list[1:] + as_list[:1]:
            hint = ("a roll wraps the first token around to the end, so the last input gets "
                    "the first token as a fake target; the last token has no target inside the "
                    "block: leave it out of the inputs, and leave the first token out of the "
                    "targets")
        elif inputs == as_list:
            hint = ("inputs keep the last token, but nothing in the block follows it, so it has "
                    "no target: the inputs stop one token before the end")
        else:
            hint = ("off by one: the inputs leave out exactly the last token and the targets "
                    "exactly the first, so targets[t] is the token after inputs[t]")
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


@exercise("doc_ids_for", hints=(
    "Walk over the documents with their index i: document i covers its own tokens plus the "
    "EOS that follows it, all with id i.",
    "Build one new flat list of ids exactly as long as pack's stream (len(doc) + 1 entries of "
    "i for document i), then cut it exactly as pack cuts the stream, dropping the same tail.",
))
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
        got = _call_keeping_docs(name, fn, [list(d) for d in docs], block_size, desc=desc)
        got = _int_rows(name, desc, got, "blocks of document ids")
        if got == expected:
            continue
        n_ids = sum(len(d) + 1 for d in docs)
        if got == expected[:-1] and n_ids % block_size == 0:
            hint = (f"your last block is missing: the documents with their EOS fill {n_ids} "
                    f"positions, an exact multiple of block_size={block_size}, so there are "
                    f"{n_ids // block_size} full blocks and no tail to drop; check how you count "
                    "the blocks (an off-by-one), and that each document's EOS position is there")
        elif got == _doc_ids_variant(docs, block_size, "eos_to_next"):
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
