"""Packing: blocks reproduce the stream exactly, labels match Hugging Face, both paths agree."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from course.errors import PackingError
from course.packing import (
    IGNORE_INDEX,
    PAD_DOC_ID,
    PackedBlocks,
    pack_documents,
    pack_with_datasets,
)

EOS, PAD = 50, 51  # ordinary ids are 0..49

docs_strategy = st.lists(st.lists(st.integers(0, 49), max_size=30), min_size=1, max_size=12)


def stream_of(docs: list[list[int]], eos: int = EOS) -> tuple[list[int], list[int]]:
    """The reference, written token by token: docs with EOS appended, and each token's doc id."""
    tokens, ids = [], []
    for i, doc in enumerate(docs):
        tokens += list(doc) + [eos]
        ids += [i] * (len(doc) + 1)
    return tokens, ids


# -------------------------------------------------------------- properties of the packer


@settings(max_examples=200, deadline=None)
@given(docs=docs_strategy, block_size=st.integers(2, 17), tail=st.sampled_from(["drop", "pad"]))
def test_blocks_reproduce_the_stream(docs, block_size, tail):
    tokens, ids = stream_of(docs)
    total = len(tokens)
    if tail == "drop" and total < block_size:
        with pytest.raises(PackingError, match=f"only {total} tokens"):
            pack_documents(docs, block_size, EOS, tail=tail, pad_id=PAD)
        return
    b = pack_documents(docs, block_size, EOS, tail=tail, pad_id=PAD)
    for t in (b.input_ids, b.labels, b.doc_ids):
        assert t.dtype == torch.int64 and t.shape == (len(b), block_size)
    flat_ids, flat_labels, flat_docs = b.input_ids.flatten(), b.labels.flatten(), b.doc_ids.flatten()
    if tail == "drop":
        assert len(b) == total // block_size and b.num_padded == 0
        assert b.num_dropped == total % block_size
        kept = total - b.num_dropped
        assert flat_ids.tolist() == tokens[:kept]  # blocks + dropped tail == the stream
        assert flat_docs.tolist() == ids[:kept]
        assert flat_labels.tolist() == tokens[:kept]  # no padding: labels are the ids
    else:
        assert len(b) == -(-total // block_size) and b.num_dropped == 0
        assert b.num_padded == len(b) * block_size - total < block_size
        assert flat_ids[:total].tolist() == tokens
        assert flat_ids[total:].tolist() == [PAD] * b.num_padded
        assert flat_labels.tolist() == tokens + [IGNORE_INDEX] * b.num_padded
        assert flat_docs.tolist() == ids + [PAD_DOC_ID] * b.num_padded
    assert b.num_tokens == min(total, flat_ids.numel())
    # Doc ids never decrease along the stream, and every EOS carries the doc it closes.
    real = flat_docs[flat_docs != PAD_DOC_ID]
    assert bool((real[1:] >= real[:-1]).all())
    eos_positions = np.cumsum([len(d) + 1 for d in docs]) - 1
    for doc_index, pos in enumerate(eos_positions):
        if pos < flat_ids.numel() and flat_docs[pos] != PAD_DOC_ID:
            assert flat_ids[pos] == EOS and flat_docs[pos] == doc_index


def test_small_example_by_hand():
    b = pack_documents([[1, 2, 3], [4], [], [5, 6, 7, 8, 9]], 5, eos_id=0, tail="pad", pad_id=99)
    assert b.input_ids.tolist() == [[1, 2, 3, 0, 4], [0, 0, 5, 6, 7], [8, 9, 0, 99, 99]]
    assert b.labels.tolist() == [[1, 2, 3, 0, 4], [0, 0, 5, 6, 7], [8, 9, 0, -100, -100]]
    assert b.doc_ids.tolist() == [[0, 0, 0, 0, 1], [1, 2, 3, 3, 3], [3, 3, 3, -1, -1]]
    assert (len(b), b.num_tokens, b.num_padded, b.num_dropped) == (3, 13, 2, 0)
    d = pack_documents([[1, 2, 3], [4], [], [5, 6, 7, 8, 9]], 5, eos_id=0)
    assert d.input_ids.tolist() == [[1, 2, 3, 0, 4], [0, 0, 5, 6, 7]] and d.num_dropped == 3
    assert "2 blocks x 5 tokens" in repr(d)


def test_pad_id_defaults_to_eos_and_padding_is_found_by_position():
    b = pack_documents([[1, 2, 3]], 3, eos_id=7, tail="pad")
    assert b.input_ids.tolist() == [[1, 2, 3], [7, 7, 7]]
    assert b.labels.tolist() == [[1, 2, 3], [7, -100, -100]]  # the real EOS keeps its label
    assert b.doc_ids.tolist() == [[0, 0, 0], [0, -1, -1]]


def test_accepts_arrays_and_tensors_and_exact_fits():
    docs = [np.array([1, 2], dtype=np.int32), torch.tensor([3]), (4, 5, 6)]
    b = pack_documents(docs, 3, eos_id=0, tail="pad")
    assert b.input_ids.tolist() == [[1, 2, 0], [3, 0, 4], [5, 6, 0]]
    assert b.num_padded == 0 and b.num_dropped == 0


def test_to_dataset_round_trip():
    b = pack_documents([[1, 2, 3], [4, 5]], 4, eos_id=0, tail="pad", pad_id=9)
    ds = b.to_dataset().with_format("torch")
    assert ds.column_names == ["input_ids", "labels", "doc_ids"] and len(ds) == len(b)
    for name in ds.column_names:
        assert torch.equal(torch.stack(list(ds[name])), getattr(b, name))


# ------------------------------------------------------------- agreement with Hugging Face


def tiny_tokenizer(pad_token: str):
    """A word-level PreTrainedTokenizerFast built in memory (no hub): eos and a chosen pad."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<eos>", "<pad>", "<unk>", "the", "cat", "sat", "on", "mat", "a", "dog", "ran"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<eos>", pad_token=pad_token, unk_token="<unk>"
    )


TEXTS = ["the cat sat on the mat", "a dog ran", "the dog sat", "a cat ran on a mat", "the"]


def collate(tok, blocks: PackedBlocks) -> torch.Tensor:
    from transformers import DataCollatorForLanguageModeling
    from transformers.utils import logging

    logging.set_verbosity_error()
    collator = DataCollatorForLanguageModeling(tokenizer=tok, mlm=False)
    return collator([{"input_ids": row} for row in blocks.input_ids.tolist()])["labels"]


@pytest.mark.parametrize("tail", ["drop", "pad"])
@pytest.mark.parametrize("block_size", [4, 7, 16])
def test_labels_equal_data_collator_for_language_modeling(tail, block_size):
    # The pad token must differ from EOS: the collator masks by id (see the next test).
    tok = tiny_tokenizer(pad_token="<pad>")
    ids = tok(TEXTS, add_special_tokens=False)["input_ids"]
    b = pack_documents(ids, block_size, tok.eos_token_id, tail=tail, pad_id=tok.pad_token_id)
    assert torch.equal(collate(tok, b), b.labels)


def test_the_pad_equals_eos_trap():
    """With pad_token == eos_token the collator sets -100 on *every* EOS, not just on padding.

    The model would then never be trained to predict the end of a document. Our labels mark
    padding by position, so they keep the real EOS labels whatever the pad id is.
    """
    tok = tiny_tokenizer(pad_token="<eos>")
    ids = tok(TEXTS, add_special_tokens=False)["input_ids"]
    eos = tok.eos_token_id
    b = pack_documents(ids, 7, eos, tail="pad", pad_id=eos)
    theirs = collate(tok, b)
    real_eos = (b.input_ids == eos) & (b.doc_ids != PAD_DOC_ID)
    assert bool(real_eos.any()) and bool((b.labels[real_eos] == eos).all())
    assert bool((theirs[real_eos] == IGNORE_INDEX).all())  # the trap: real EOS labels lost
    assert torch.equal(theirs, b.labels.masked_fill(b.input_ids == eos, IGNORE_INDEX))


# ------------------------------------------------------------------- the datasets path


def as_tensors(ds: datasets.Dataset) -> tuple[torch.Tensor, ...]:
    return tuple(torch.tensor(ds[c], dtype=torch.int64).reshape(len(ds), -1)
                 for c in ("input_ids", "labels", "doc_ids"))


@settings(max_examples=25, deadline=None)
@given(docs=docs_strategy, block_size=st.integers(2, 9), tail=st.sampled_from(["drop", "pad"]))
def test_pack_with_datasets_equals_pack_documents(docs, block_size, tail):
    total = sum(len(d) + 1 for d in docs)
    ds = datasets.Dataset.from_dict({"input_ids": docs, "text": [str(d) for d in docs]})
    if tail == "drop" and total < block_size:
        with pytest.raises(PackingError, match=f"only {total} tokens"):
            pack_with_datasets(ds, block_size, EOS, tail=tail, pad_id=PAD)
        return
    ours = pack_documents(docs, block_size, EOS, tail=tail, pad_id=PAD)
    out = pack_with_datasets(ds, block_size, EOS, tail=tail, pad_id=PAD)
    assert out.column_names == ["input_ids", "labels", "doc_ids"]
    ids, labels, doc_ids = as_tensors(out)
    assert torch.equal(ids, ours.input_ids)
    assert torch.equal(labels, ours.labels)
    assert torch.equal(doc_ids, ours.doc_ids)


def test_classic_per_batch_grouping_drops_a_remainder_per_batch():
    docs = [[1, 2, 3], [4, 5], [6], [7, 8, 9, 10], [11]]  # 3+1, 2+1, 1+1, 4+1, 1+1 tokens
    ds = datasets.Dataset.from_dict({"input_ids": docs})
    whole = pack_documents(docs, 3, 0)
    one_batch, _, _ = as_tensors(pack_with_datasets(ds, 3, 0))
    assert torch.equal(one_batch, whole.input_ids)  # 16 tokens -> 5 blocks, 1 dropped
    per_batch = pack_with_datasets(ds, 3, 0, batch_size=2)
    # batches of 2 documents: 7 tokens -> 2 blocks (1 dropped), 7 -> 2 (1 dropped), 2 -> 0
    assert per_batch["input_ids"] == [[1, 2, 3], [0, 4, 5], [6, 0, 7], [8, 9, 10]]
    assert per_batch["doc_ids"] == [[0, 0, 0], [0, 1, 1], [2, 2, 3], [3, 3, 3]]  # global ids
    assert len(per_batch) < len(whole)


def test_datasets_path_is_quiet(capfd):
    ds = datasets.Dataset.from_dict({"input_ids": [[1, 2, 3]] * 50})
    pack_with_datasets(ds, 4, 0)
    pack_documents([[1, 2]], 2, 0).to_dataset()
    out, err = capfd.readouterr()
    assert out == "" and err == ""


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize("block_size", [1, 0, -3, 2.5, True, "8"])
def test_bad_block_size(block_size):
    with pytest.raises(PackingError, match="block_size must be an integer >= 2"):
        pack_documents([[1, 2, 3]], block_size, 0)


def test_errors_say_what_to_do():
    with pytest.raises(PackingError, match="docs is empty"):
        pack_documents([], 4, 0)
    with pytest.raises(PackingError, match="list of token-id lists"):
        pack_documents("some text", 4, 0)
    with pytest.raises(PackingError) as err:
        pack_documents([[1, 2], [3]], 8, 0)
    msg = str(err.value)
    assert "only 5 tokens" in msg and "block_size of at most 5" in msg and "tail='pad'" in msg
    with pytest.raises(PackingError, match="tail must be 'drop' or 'pad'"):
        pack_documents([[1, 2, 3]], 2, 0, tail="keep")
    with pytest.raises(PackingError, match="eos_id"):
        pack_documents([[1, 2, 3]], 2, -1)
    with pytest.raises(PackingError, match="pad_id"):
        pack_documents([[1, 2, 3]], 2, 0, tail="pad", pad_id=-100)
    with pytest.raises(PackingError, match="document 1 contains the negative token id -100"):
        pack_documents([[1], [2, -100]], 2, 0)
    with pytest.raises(PackingError, match="document 0 is not a flat sequence of integer"):
        pack_documents([[1.5, 2.0]], 2, 0)
    with pytest.raises(PackingError, match="document 1 is not a flat sequence"):
        pack_documents([[1], [[2, 3]]], 2, 0)


def test_datasets_path_errors():
    ds = datasets.Dataset.from_dict({"text": ["a b", "c"]})
    with pytest.raises(PackingError, match="no column 'input_ids'.*tokenize it first"):
        pack_with_datasets(ds, 4, 0)
    with pytest.raises(PackingError, match="datasets.Dataset"):
        pack_with_datasets([[1, 2, 3]], 4, 0)
    empty = datasets.Dataset.from_dict({"input_ids": [[1]]}).select([])
    with pytest.raises(PackingError, match="no rows"):
        pack_with_datasets(empty, 4, 0)
    small = datasets.Dataset.from_dict({"input_ids": [[1, 2], [3]]})
    with pytest.raises(PackingError, match="only 5 tokens"):
        pack_with_datasets(small, 8, 0)
    with pytest.raises(PackingError, match="batch_size"):
        pack_with_datasets(small, 2, 0, batch_size=0)
    with pytest.raises(PackingError, match="block_size"):
        pack_with_datasets(small, 1, 0)
