"""Attention masks: exact small matrices, agreement with PyTorch, argument checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from course.errors import ConfigError
from course.masks import (
    bidirectional_mask,
    causal_mask,
    document_mask,
    prefix_lm_mask,
    sliding_window_mask,
    to_additive,
)


def as_bool(rows: list[str]) -> torch.Tensor:
    return torch.tensor([[c == "1" for c in r] for r in rows])


# ---------------------------------------------------------------- exact matrices
def test_causal_mask_is_lower_triangular():
    expected = as_bool(["1000", "1100", "1110", "1111"])
    assert causal_mask(4).dtype == torch.bool
    assert torch.equal(causal_mask(4), expected)


def test_causal_row_i_sees_exactly_i_plus_one_keys():
    T = 9
    assert causal_mask(T).sum(dim=-1).tolist() == list(range(1, T + 1))


def test_bidirectional_mask_is_all_true():
    assert torch.equal(bidirectional_mask(3), torch.ones(3, 3, dtype=torch.bool))


def test_prefix_lm_mask_is_bidirectional_in_the_prefix_and_causal_after():
    expected = as_bool(["11100", "11100", "11100", "11110", "11111"])
    assert torch.equal(prefix_lm_mask(5, 3), expected)
    assert torch.equal(prefix_lm_mask(5, 0), causal_mask(5))
    assert torch.equal(prefix_lm_mask(5, 1), causal_mask(5))
    assert torch.equal(prefix_lm_mask(5, 5), bidirectional_mask(5))


def test_sliding_window_mask_keeps_the_window_most_recent_keys():
    expected = as_bool(["10000", "11000", "01100", "00110", "00011"])
    assert torch.equal(sliding_window_mask(5, 2), expected)
    assert torch.equal(sliding_window_mask(5, 1), torch.eye(5, dtype=torch.bool))
    assert torch.equal(sliding_window_mask(5, 5), causal_mask(5))
    assert torch.equal(sliding_window_mask(5, 50), causal_mask(5))
    assert sliding_window_mask(8, 3).sum(-1).tolist() == [1, 2, 3, 3, 3, 3, 3, 3]


def test_document_mask_is_block_diagonal_causal():
    doc_ids = torch.tensor([[0, 0, 1, 1, 1, -1]])
    expected = as_bool([
        "100000",
        "110000",
        "001000",
        "001100",
        "001110",
        "000001",  # padding sees only itself
    ])
    m = document_mask(doc_ids)
    assert m.shape == (1, 6, 6)
    assert torch.equal(m[0], expected)


def test_document_mask_equals_causal_blocks_for_random_documents():
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        lengths = torch.randint(1, 5, (4,), generator=g).tolist()
        doc_ids = torch.cat([torch.full((n,), d) for d, n in enumerate(lengths)])[None]  # (1, T)
        blocks = torch.block_diag(*[causal_mask(n).int() for n in lengths]).bool()
        assert torch.equal(document_mask(doc_ids)[0], blocks)


def test_document_mask_batches_rows_independently_and_never_has_an_empty_row():
    doc_ids = torch.tensor([[0, 0, 0, -1], [3, 4, -1, -1]])
    m = document_mask(doc_ids)
    assert torch.equal(m[0], document_mask(doc_ids[:1])[0])
    assert torch.equal(m[1], document_mask(doc_ids[1:])[0])
    assert bool(m.any(-1).all())
    assert bool(m.diagonal(dim1=-2, dim2=-1).all())


# ---------------------------------------------------------------- against PyTorch
def test_causal_mask_matches_sdpa_is_causal():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 8, generator=g) for _ in range(3))
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    ours = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(7))
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("mask", [
    causal_mask(6), prefix_lm_mask(6, 3), sliding_window_mask(6, 2),
    document_mask(torch.tensor([[0, 0, 1, 1, 1, -1]]))[0],
])
def test_additive_form_gives_the_same_attention_as_the_boolean_form(mask):
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 2, 6, 4, generator=g) for _ in range(3))
    add = to_additive(mask)
    assert add.dtype == torch.float32
    assert set(add.unique().tolist()) <= {0.0, float("-inf")}
    assert torch.equal(add == 0, mask)
    with_bool = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    with_add = F.scaled_dot_product_attention(q, k, v, attn_mask=add)
    torch.testing.assert_close(with_add, with_bool, atol=1e-6, rtol=1e-5)
    # and by hand: scores + additive mask == masked_fill(~mask, -inf)
    scores = q @ k.transpose(-2, -1)
    torch.testing.assert_close((scores + add).softmax(-1),
                               scores.masked_fill(~mask, float("-inf")).softmax(-1))


def test_to_additive_respects_dtype():
    assert to_additive(causal_mask(3), torch.bfloat16).dtype == torch.bfloat16


def test_masks_follow_the_requested_device():
    assert causal_mask(3, device="cpu").device.type == "cpu"
    assert sliding_window_mask(3, 2, device=torch.device("cpu")).device.type == "cpu"


def test_empty_sequence_gives_empty_masks():
    assert causal_mask(0).shape == (0, 0)
    assert prefix_lm_mask(0, 0).shape == (0, 0)


# ---------------------------------------------------------------- bad arguments
@pytest.mark.parametrize("call, words", [
    (lambda: causal_mask(-1), "T must be >= 0"),
    (lambda: causal_mask(2.5), "T must be an integer"),
    (lambda: bidirectional_mask(-3), "T must be >= 0"),
    (lambda: prefix_lm_mask(4, 5), "prefix_len (5) is longer"),
    (lambda: prefix_lm_mask(4, -1), "prefix_len must be >= 0"),
    (lambda: sliding_window_mask(4, 0), "window must be >= 1"),
    (lambda: sliding_window_mask(-4, 2), "T must be >= 0"),
    (lambda: document_mask(torch.zeros(5, dtype=torch.long)), "shape (B, T)"),
    (lambda: document_mask(torch.zeros(1, 5)), "integers"),
    (lambda: document_mask([[0, 0]]), "must be a tensor"),
    (lambda: to_additive(torch.ones(2, 2)), "boolean mask"),
    (lambda: to_additive(causal_mask(2), torch.long), "floating dtype"),
])
def test_bad_arguments_raise_config_error_naming_the_input(call, words):
    with pytest.raises(ConfigError) as e:
        call()
    assert words in str(e.value)
