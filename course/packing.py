"""Documents of token ids → fixed-length training blocks.

A GPT trains on blocks of exactly `block_size` tokens. Padding each document to that
length would waste most of the compute on short documents, so pretraining *packs*: every
document is followed by the end-of-text token (EOS), all of them are concatenated into one
stream, and the stream is cut into consecutive blocks. A block may therefore hold the end
of one document and the start of the next; the EOS between them tells the model that a
new document starts (and `doc_ids` lets attention be restricted to one document).

Conventions (shared with the rest of the package, see ARCHITECTURE.md):

* ``labels`` have the shape of ``input_ids`` and equal them, except ``-100`` where no loss
  is taken (padding). The model shifts internally: position `t` predicts ``labels[t + 1]``.
  This is what Hugging Face's ``DataCollatorForLanguageModeling(mlm=False)`` builds.
* ``doc_ids`` give every position the index of its document; the EOS that ends a document
  belongs to that document; padding has id ``-1``.

The stream's last, incomplete block (the *tail*) is either dropped (training: every block
is full) or padded (evaluation: no token of the stream is left out). Scoring blocks one by
one still leaves each block's first token unpredicted and restarts the context at every
block, so such a number is a per-block estimate; `course.evaluate.strided_nll` scores every
token but the first, with overlapping context.

A trap with padding: our labels mark padding by *position* (-100 exactly where padding was
added), so reusing the EOS id as the pad id is harmless here. A collator that masks by *id*
(``DataCollatorForLanguageModeling`` sets every position whose id equals
``tokenizer.pad_token_id`` to -100) would then also mask every real EOS, and the model
would never learn to end a document. Give such collators a pad token distinct from EOS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from course.errors import PackingError

if TYPE_CHECKING:  # datasets is imported lazily: it is slow to import
    import datasets

__all__ = ["IGNORE_INDEX", "PAD_DOC_ID", "PackedBlocks", "pack_documents", "pack_with_datasets"]

IGNORE_INDEX = -100  # label of a position that takes no loss (PyTorch / Hugging Face convention)
PAD_DOC_ID = -1  # document id of padding
Tail = Literal["drop", "pad"]


@dataclass
class PackedBlocks:
    """Packed training blocks: three int64 tensors of shape (N, T) plus bookkeeping.

    `num_dropped`: tokens of the incomplete last block that were dropped (tail="drop").
    `num_padded`: pad positions added to fill the last block (tail="pad").
    """

    input_ids: torch.Tensor  # (N, T) token ids
    labels: torch.Tensor  # (N, T) = input_ids, -100 at padding
    doc_ids: torch.Tensor  # (N, T) document index, -1 at padding
    block_size: int
    tail: Tail = "drop"
    num_dropped: int = 0
    num_padded: int = 0

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def num_tokens(self) -> int:
        """Real (non-padding) tokens in the blocks, EOS included."""
        return int(self.input_ids.numel()) - self.num_padded

    def to_dataset(self) -> datasets.Dataset:
        """The blocks as a Hugging Face `Dataset` with columns input_ids, labels, doc_ids.

        Each row is one block (lists of `block_size` ints); call ``.with_format("torch")``
        to get tensors back, or hand it to a `transformers.Trainer`.
        """
        import datasets

        from course.data import quiet_datasets

        ints = (getattr(datasets, "List", None) or datasets.Sequence)(datasets.Value("int64"))
        with quiet_datasets():
            return datasets.Dataset.from_dict(
                {
                    "input_ids": self.input_ids.tolist(),
                    "labels": self.labels.tolist(),
                    "doc_ids": self.doc_ids.tolist(),
                },
                features=datasets.Features({"input_ids": ints, "labels": ints, "doc_ids": ints}),
            )

    def __repr__(self) -> str:
        return (
            f"PackedBlocks({len(self)} blocks x {self.block_size} tokens, tail={self.tail!r}, "
            f"num_tokens={self.num_tokens:,}, num_dropped={self.num_dropped}, num_padded={self.num_padded})"
        )


# ---------------------------------------------------------------------------- checks


def _check_args(block_size: Any, eos_id: Any, tail: Any, pad_id: Any) -> int:
    """Validate the packing arguments; returns the pad id to use."""
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 2:
        raise PackingError(
            f"block_size must be an integer >= 2 (one token to read and one to predict), got {block_size!r}"
        )
    if isinstance(eos_id, bool) or not isinstance(eos_id, (int, np.integer)) or eos_id < 0:
        raise PackingError(f"eos_id must be a non-negative integer token id, got {eos_id!r}; pass tokenizer.eos_id")
    if tail not in ("drop", "pad"):
        raise PackingError(f"tail must be 'drop' or 'pad', got {tail!r}")
    if pad_id is None:
        return int(eos_id)  # safe for our labels: padding is found by position, not by id
    if isinstance(pad_id, bool) or not isinstance(pad_id, (int, np.integer)) or pad_id < 0:
        raise PackingError(f"pad_id must be a non-negative integer token id or None, got {pad_id!r}")
    return int(pad_id)


def _flatten(docs: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(lengths (D,), all tokens concatenated (sum lengths,)) as int64, with checks."""
    if isinstance(docs, (str, bytes)) or not isinstance(docs, Sequence) and not hasattr(docs, "__len__"):
        raise PackingError(
            f"docs must be a list of token-id lists (one per document), got {type(docs).__name__}; "
            "encode your texts first, e.g. tokenizer.encode_batch(texts)"
        )
    if len(docs) == 0:
        raise PackingError("docs is empty: there is nothing to pack; give at least one tokenized document")
    arrays = []
    for i, d in enumerate(docs):  # a loop over documents, never over tokens
        a = d.detach().cpu().numpy() if torch.is_tensor(d) else np.asarray(d)
        if a.ndim != 1 or (a.size and not np.issubdtype(a.dtype, np.integer)):
            raise PackingError(
                f"document {i} is not a flat sequence of integer token ids (got shape {a.shape}, "
                f"dtype {a.dtype}); pass one list of ints per document"
            )
        arrays.append(a.astype(np.int64, copy=False))
    lengths = np.fromiter((a.size for a in arrays), dtype=np.int64, count=len(arrays))
    flat = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
    if flat.size and flat.min() < 0:
        bad = int(np.argmax(flat < 0))
        doc = int(np.searchsorted(np.cumsum(lengths), bad, side="right"))
        raise PackingError(
            f"document {doc} contains the negative token id {int(flat[bad])}; token ids must be >= 0 "
            f"({IGNORE_INDEX} and {PAD_DOC_ID} are reserved for labels and doc ids)"
        )
    return lengths, flat


def _stream(lengths: np.ndarray, flat: np.ndarray, eos_id: int, first_doc: np.ndarray | int = 0
            ) -> tuple[np.ndarray, np.ndarray]:
    """Documents with EOS appended, concatenated: (tokens, doc ids), each (sum lengths + D,).

    `first_doc` is the id of the first document, or an array (D,) of ids (one per document).
    """
    n_docs = len(lengths)
    total = int(lengths.sum()) + n_docs
    eos_pos = np.cumsum(lengths + 1) - 1  # (D,) where each document's EOS lands
    tokens = np.empty(total, dtype=np.int64)
    is_eos = np.zeros(total, dtype=bool)
    is_eos[eos_pos] = True
    tokens[is_eos] = eos_id
    tokens[~is_eos] = flat
    ids = np.arange(n_docs, dtype=np.int64) + first_doc if np.isscalar(first_doc) else np.asarray(first_doc)
    doc_ids = np.repeat(ids.astype(np.int64), lengths + 1)  # the EOS belongs to its document
    return tokens, doc_ids


def _cut(tokens: np.ndarray, doc_ids: np.ndarray, block_size: int, tail: Tail, pad_id: int
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Cut a stream into (N, T) blocks: (input_ids, labels, doc_ids, num_dropped, num_padded)."""
    total = len(tokens)
    rem = total % block_size
    if tail == "drop" or rem == 0:
        keep = total - rem
        ids, docs = tokens[:keep], doc_ids[:keep]
        labels = ids.copy()
        dropped, padded = rem, 0
    else:
        padded = block_size - rem
        ids = np.concatenate([tokens, np.full(padded, pad_id, dtype=np.int64)])
        docs = np.concatenate([doc_ids, np.full(padded, PAD_DOC_ID, dtype=np.int64)])
        labels = ids.copy()
        labels[total:] = IGNORE_INDEX  # padding found by position, never by id
        dropped = 0
    shape = (-1, block_size)
    return ids.reshape(shape), labels.reshape(shape), docs.reshape(shape), dropped, padded


def _too_short(total: int, block_size: int, what: str = "the documents") -> PackingError:
    return PackingError(
        f"{what} hold only {total} tokens (EOS included), fewer than block_size={block_size}, so "
        f"tail='drop' leaves no block; use a block_size of at most {total}, more text, or tail='pad'"
    )


# ---------------------------------------------------------------------------- packing


def pack_documents(
    docs: Sequence[Sequence[int]],
    block_size: int,
    eos_id: int,
    *,
    tail: Tail = "drop",
    pad_id: int | None = None,
) -> PackedBlocks:
    """Append EOS to each document, concatenate, and cut into (N, block_size) blocks.

    `docs`: one sequence of token ids per document (lists, arrays or 1-D tensors; an empty
    document becomes a lone EOS). `tail="drop"` drops the incomplete last block;
    `tail="pad"` fills it with `pad_id` (labels -100, doc id -1). `pad_id` defaults to
    `eos_id`, which is safe for these labels (see the module docstring for the collator
    trap). Vectorised: NumPy does the work, Python only loops over documents.
    """
    pad = _check_args(block_size, eos_id, tail, pad_id)
    block_size = int(block_size)
    lengths, flat = _flatten(docs)
    tokens, doc_ids = _stream(lengths, flat, int(eos_id))
    if tail == "drop" and len(tokens) < block_size:
        raise _too_short(len(tokens), block_size)
    ids, labels, dids, dropped, padded = _cut(tokens, doc_ids, block_size, tail, pad)
    return PackedBlocks(
        input_ids=torch.from_numpy(ids),
        labels=torch.from_numpy(labels),
        doc_ids=torch.from_numpy(dids),
        block_size=block_size,
        tail=tail,
        num_dropped=dropped,
        num_padded=padded,
    )


def pack_with_datasets(
    dataset: datasets.Dataset,
    block_size: int,
    eos_id: int,
    *,
    tail: Tail = "drop",
    pad_id: int | None = None,
    column: str = "input_ids",
    batch_size: int | None = None,
) -> datasets.Dataset:
    """The Hugging Face "group texts" recipe: `dataset.map(batched=True)` → a dataset of blocks.

    `dataset` has one row per document with a `column` of token-id lists. The result has
    columns input_ids, labels and doc_ids, one row per block of `block_size` tokens, and
    (with the default `batch_size=None`) exactly the blocks of `pack_documents`.

    Why the batch size matters: the classic recipe concatenates the documents of each map
    batch (1000 rows by default) and cuts *that* batch into blocks, so every batch drops
    (or pads) its own remainder, and blocks never straddle two batches. The result then
    depends on the batch size and differs from packing the whole stream. `batch_size=None`
    hands the whole dataset to one call (what we want for corpora that fit in memory);
    pass an integer to reproduce the classic per-batch behaviour. Document ids are global
    (`with_indices=True`), so they agree in both modes.
    """
    import datasets

    from course.data import quiet_datasets

    pad = _check_args(block_size, eos_id, tail, pad_id)
    block_size = int(block_size)
    if not isinstance(dataset, datasets.Dataset):
        raise PackingError(
            f"dataset must be a datasets.Dataset, got {type(dataset).__name__}; for plain lists use pack_documents"
        )
    if column not in dataset.column_names:
        raise PackingError(
            f"dataset has no column {column!r} (columns: {dataset.column_names}); tokenize it first "
            "with dataset.map(lambda b: {'input_ids': tokenizer.encode_batch(b['text'])}, batched=True)"
        )
    if len(dataset) == 0:
        raise PackingError("dataset has no rows: there is nothing to pack; give at least one tokenized document")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise PackingError(f"batch_size must be a positive integer or None (one batch), got {batch_size!r}")

    def group(batch: dict[str, list], indices: list[int]) -> dict[str, np.ndarray]:
        lengths, flat = _flatten(batch[column])
        tokens, doc_ids = _stream(lengths, flat, int(eos_id), np.asarray(indices, dtype=np.int64))
        ids, labels, dids, _, _ = _cut(tokens, doc_ids, block_size, tail, pad)
        return {"input_ids": ids, "labels": labels, "doc_ids": dids}

    ints = (getattr(datasets, "List", None) or datasets.Sequence)(datasets.Value("int64"))
    features = datasets.Features({"input_ids": ints, "labels": ints, "doc_ids": ints})
    with quiet_datasets():
        blocks = dataset.map(
            group,
            batched=True,
            batch_size=batch_size,
            with_indices=True,
            remove_columns=dataset.column_names,
            features=features,
            desc="packing",
        )
    if len(blocks) == 0:
        total = sum(len(x) + 1 for x in dataset[column])
        raise _too_short(total, block_size, "the dataset's documents" if batch_size is None
                         else f"each map batch of {batch_size} documents")
    return blocks
