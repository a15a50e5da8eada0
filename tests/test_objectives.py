"""The other pretraining objectives (`course.objectives`): statistics of the MLM masks and
agreement with Hugging Face's collator, exact round trips for span corruption and FIM,
prefix-LM masks and labels, multi-token heads that reduce to the causal LM, InfoNCE
against a direct computation, and the data mixing of continued pretraining."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from course.errors import ConfigError
from course.masks import bidirectional_mask, causal_mask, prefix_lm_mask
from course.model import GPT, GPTConfig
from course.objectives import (
    MASK_TOKEN,
    MaskedLM,
    MultiTokenGPT,
    apply_fim,
    continued_pretraining,
    fill_masks,
    fim_arrange,
    fim_inverse,
    fim_transform,
    hidden_states,
    info_nce,
    mean_pool,
    mixed_blocks,
    mlm_loss,
    mlm_mask,
    prefix_lm_batch,
    random_spans_mask,
    sentinel_tokens,
    span_corrupt,
    span_reconstruct,
)
from course.train import TrainConfig, batch_indices, train


def tiny_gpt(vocab_size: int = 40, block_size: int = 16, seed: int = 0, n_layer: int = 2) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer,
                         n_head=2, n_embd=16))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ================================================================== masked LM
V, MASK, SPECIAL = 100, 99, (0, 98)  # 0 = EOS, 98 = another special, 99 = <mask>


def mlm_stats(ids: torch.Tensor, inputs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    chosen = labels != -100
    n = int(chosen.sum())
    masked = chosen & (inputs == MASK)
    kept = chosen & (inputs == ids)
    random = chosen & ~masked & ~kept
    return {"chosen": n / ids.numel(), "mask": int(masked.sum()) / n,
            "random": int(random.sum()) / n, "kept": int(kept.sum()) / n}


@pytest.fixture(scope="module")
def many_ids() -> torch.Tensor:
    g = gen(123)
    ids = torch.randint(1, 98, (400, 512), generator=g)  # 204,800 ordinary tokens
    ids[:, ::50] = 0  # some specials
    ids[:, 7::50] = 98
    return ids


def test_mlm_mask_proportions_are_15_percent_then_80_10_10(many_ids):
    inputs, labels = mlm_mask(many_ids, MASK, V, generator=gen(0), special_ids=SPECIAL)
    ordinary = ~torch.isin(many_ids, torch.tensor(SPECIAL))
    s = mlm_stats(many_ids, inputs, labels)
    assert abs(s["chosen"] / ordinary.float().mean().item() - 0.15) < 0.004
    assert abs(s["mask"] - 0.8) < 0.01
    # a random replacement equals the original with probability 1/96: counted as kept
    assert abs(s["random"] - 0.1 * 95 / 96) < 0.008
    assert abs(s["kept"] - (0.1 + 0.1 / 96)) < 0.008


def test_mlm_labels_and_inputs_are_exact_where_they_must_be(many_ids):
    inputs, labels = mlm_mask(many_ids, MASK, V, generator=gen(1), special_ids=SPECIAL)
    chosen = labels != -100
    assert torch.equal(labels[chosen], many_ids[chosen])  # the original token is the target
    assert torch.equal(inputs[~chosen], many_ids[~chosen])  # untouched elsewhere
    special = torch.isin(many_ids, torch.tensor(SPECIAL))
    assert not bool((chosen & special).any())  # specials are never chosen
    changed = inputs != many_ids
    injected = inputs[changed & (inputs != MASK)]
    assert not bool(torch.isin(injected, torch.tensor([*SPECIAL, MASK])).any())  # noise is real tokens


def test_mlm_mask_is_seeded_and_leaves_its_input_alone(many_ids):
    before = many_ids.clone()
    a = mlm_mask(many_ids[:4], MASK, V, generator=gen(5), special_ids=SPECIAL)
    b = mlm_mask(many_ids[:4], MASK, V, generator=gen(5), special_ids=SPECIAL)
    c = mlm_mask(many_ids[:4], MASK, V, generator=gen(6), special_ids=SPECIAL)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    assert torch.equal(many_ids, before)
    assert a[0].dtype == many_ids.dtype and a[1].shape == many_ids[:4].shape


def test_mlm_mask_matches_hugging_face_collator_semantics(many_ids):
    from transformers import DataCollatorForLanguageModeling

    from course.tokenizer import EOS_TOKEN, CharTokenizer

    alphabet = "".join(chr(33 + k) for k in range(60))
    tok = CharTokenizer().train(alphabet, special_tokens=(EOS_TOKEN, MASK_TOKEN, "<pad>"))
    hf = tok.to_hf()
    hf.mask_token, hf.pad_token = MASK_TOKEN, "<pad>"
    eos, mask_id, pad = tok.eos_id, tok.special_tokens[MASK_TOKEN], tok.special_tokens["<pad>"]
    ids = torch.randint(0, 60, (200, 256), generator=gen(3))
    ids[:, ::64] = eos
    # the collator's `seed=` argument is newer than our transformers floor (4.45); it draws
    # from torch's global generator otherwise
    collator = DataCollatorForLanguageModeling(hf, mlm=True, mlm_probability=0.15)
    torch.manual_seed(0)
    theirs = collator([{"input_ids": row.tolist()} for row in ids])
    ours = mlm_mask(ids, mask_id, tok.vocab_size, generator=gen(0), special_ids=(eos, pad))

    for inputs, labels in ((theirs["input_ids"], theirs["labels"]), ours):
        chosen = labels != -100
        # Same contract: -100 exactly where the input was not chosen, the original elsewhere.
        assert torch.equal(inputs[~chosen], ids[~chosen])
        assert torch.equal(labels[chosen], ids[chosen])
        assert not bool(chosen[ids == eos].any())
    s_theirs = mlm_stats_generic(ids, theirs["input_ids"], theirs["labels"], mask_id)
    s_ours = mlm_stats_generic(ids, *ours, mask_id)
    for key in ("chosen", "mask", "changed"):
        assert abs(s_theirs[key] - s_ours[key]) < 0.015, (key, s_theirs, s_ours)


def mlm_stats_generic(ids, inputs, labels, mask_id) -> dict[str, float]:
    chosen = labels != -100
    n = int(chosen.sum())
    return {"chosen": n / ids.numel(),
            "mask": int((chosen & (inputs == mask_id)).sum()) / n,
            "changed": int((chosen & (inputs != mask_id) & (inputs != ids)).sum()) / n}


def test_mlm_mask_rejects_bad_arguments():
    ids = torch.randint(0, 10, (2, 8))
    with pytest.raises(ConfigError, match="mask_id"):
        mlm_mask(ids, 10, 10, generator=gen())
    with pytest.raises(ConfigError, match="generator"):
        mlm_mask(ids, 9, 10, generator=0)
    with pytest.raises(ConfigError, match="mask_frac"):
        mlm_mask(ids, 9, 10, generator=gen(), mask_frac=0.95, random_frac=0.1)
    with pytest.raises(ConfigError, match="integer"):
        mlm_mask(ids.float(), 9, 10, generator=gen())


def test_mlm_loss_has_no_shift_and_only_chosen_positions_count():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11)
    labels = torch.full((2, 6), -100)
    labels[0, 2], labels[1, 5] = 3, 7
    expected = -(F.log_softmax(logits[0, 2], -1)[3] + F.log_softmax(logits[1, 5], -1)[7]) / 2
    assert torch.allclose(mlm_loss(logits, labels), expected)
    # Changing the logits at a position without a label changes nothing.
    other = logits.clone()
    other[0, 3] += 5.0
    other[1, 0] -= 3.0
    assert torch.allclose(mlm_loss(other, labels), expected)
    with pytest.raises(ConfigError, match="shape"):
        mlm_loss(logits, labels[:, :-1])


def test_masked_lm_loss_comes_from_exactly_the_chosen_positions():
    gpt = tiny_gpt(vocab_size=V)
    model = MaskedLM(gpt, MASK, special_ids=SPECIAL, seed=3)
    x = torch.randint(1, 98, (4, 16), generator=gen(1))
    labels = x.clone()
    labels[:, -2:] = -100  # padding: never chosen
    _, loss = model(x, labels)
    # Replay the same draw to know which positions were chosen.
    inputs, mlm_labels = mlm_mask(x, MASK, V, generator=gen(3), special_ids=SPECIAL)
    mlm_labels[:, -2:] = -100
    logits, _ = gpt(inputs, attn_mask=bidirectional_mask(16))
    assert torch.allclose(loss, mlm_loss(logits, mlm_labels))
    per_token = F.cross_entropy(logits.reshape(-1, V), mlm_labels.reshape(-1), ignore_index=-100,
                                reduction="none")
    chosen = (mlm_labels != -100).reshape(-1)
    assert torch.allclose(loss, per_token[chosen].mean())
    assert bool((per_token[~chosen] == 0).all())


def test_masked_lm_attends_both_ways_and_trains_with_the_course_loop():
    gpt = tiny_gpt(vocab_size=V)
    model = MaskedLM(gpt, MASK, special_ids=SPECIAL)
    x = torch.randint(1, 98, (1, 16), generator=gen(2))
    y = x.clone()
    y[0, 12] = (int(x[0, 12]) % 97) + 1
    a, _ = model(x)
    b, _ = model(y)
    assert not torch.allclose(a[0, 3], b[0, 3])  # an earlier position sees a later token
    c, _ = gpt(x)
    d, _ = gpt(y)
    assert torch.allclose(c[0, 3], d[0, 3])  # the causal GPT does not

    blocks = torch.randint(1, 20, (64, 16), generator=gen(4))  # a tiny, learnable vocabulary
    result = train(model, blocks, None, TrainConfig(max_steps=30, batch_size=16, warmup_steps=3,
                                                    lr=1e-2, eval_interval=100), progress=False)
    losses = [r["train_loss"] for r in result.history]
    assert losses[-1] < losses[0] - 1.0


def test_fill_masks_changes_only_the_masked_positions():
    gpt = tiny_gpt(vocab_size=V)
    x = torch.randint(1, 98, (2, 10), generator=gen(0))
    x[0, 3] = MASK
    x[1, 7] = MASK
    out = fill_masks(gpt, x, MASK)
    keep = x != MASK
    assert torch.equal(out[keep], x[keep])
    logits, _ = gpt(x, attn_mask=bidirectional_mask(10))
    assert int(out[0, 3]) == int(logits[0, 3].argmax()) and int(out[1, 7]) == int(logits[1, 7].argmax())
    assert torch.equal(fill_masks(MaskedLM(gpt, MASK), x, MASK), out)


# ================================================================== span corruption
SENTINELS = list(range(1000, 1040))


def test_span_corruption_matches_the_t5_paper_example():
    words = "Thank you for inviting me to your party last week .".split()
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    ids = [vocab[w] for w in words]
    noise = [w in ("for", "inviting", "last") for w in words]
    inputs, targets = span_corrupt(ids, [100, 101, 102], noise_mask=noise)
    name = {**{i: w for w, i in vocab.items()}, 100: "<X>", 101: "<Y>", 102: "<Z>"}
    assert " ".join(name[i] for i in inputs) == "Thank you <X> me to your party <Y> week ."
    assert " ".join(name[i] for i in targets) == "<X> for inviting <Y> last <Z>"
    assert span_reconstruct(inputs, targets, [100, 101, 102]) == ids


def test_random_spans_mask_follows_the_recipe():
    for seed in range(20):
        for length in (2, 3, 10, 57, 200, 512):
            m = random_spans_mask(length, rng=seed)
            n_noise = min(max(round(length * 0.15), 1), length - 1)
            assert m.dtype == bool and m.shape == (length,)
            assert int(m.sum()) == n_noise
            assert not m[0]  # starts with a kept gap
            starts = int((m[1:] & ~m[:-1]).sum())
            assert starts == min(max(1, round(n_noise / 3)), n_noise, length - n_noise)
    lengths = []
    for seed in range(50):
        m = random_spans_mask(1000, rng=seed)
        lengths.append(m.sum() / (m[1:] & ~m[:-1]).sum())
    assert abs(np.mean(lengths) - 3.0) < 0.05
    assert random_spans_mask(1, rng=0).tolist() == [False]
    assert random_spans_mask(0, rng=0).tolist() == []


@settings(max_examples=150, deadline=None)
@given(ids=st.lists(st.integers(0, 99), max_size=120), seed=st.integers(0, 10_000),
       density=st.floats(0.05, 0.6), mean_span=st.floats(1.0, 6.0))
def test_span_corruption_round_trips_with_random_spans(ids, seed, density, mean_span):
    inputs, targets = span_corrupt(ids, SENTINELS, noise_density=density,
                                   mean_span_length=mean_span, rng=seed)
    assert span_reconstruct(inputs, targets, SENTINELS) == ids
    n_spans = sum(1 for t in inputs if t in SENTINELS)
    assert [t for t in targets if t in SENTINELS] == SENTINELS[: n_spans + 1]  # distinct, in order
    assert [t for t in inputs if t in SENTINELS] == SENTINELS[:n_spans]
    assert targets[0] == SENTINELS[0] and targets[-1] == SENTINELS[n_spans]


@settings(max_examples=150, deadline=None)
@given(pairs=st.lists(st.tuples(st.integers(0, 99), st.booleans()), max_size=60))
def test_span_corruption_round_trips_with_any_noise_mask(pairs):
    ids = [t for t, _ in pairs]
    noise = [b for _, b in pairs]
    inputs, targets = span_corrupt(ids, SENTINELS, noise_mask=noise)
    assert span_reconstruct(inputs, targets, SENTINELS) == ids
    assert len(inputs) + len(targets) == len(ids) + 2 * sum(1 for t in inputs if t in SENTINELS) + 1


def test_span_corruption_errors_are_specific():
    with pytest.raises(ConfigError, match="more spans than sentinels"):
        span_corrupt([1, 2, 3, 4, 5], [100, 101], noise_mask=[1, 0, 1, 0, 0])
    with pytest.raises(ConfigError, match="already contains sentinel"):
        span_corrupt([1, 100, 3], [100, 101], noise_mask=[0, 0, 1])
    with pytest.raises(ConfigError, match="distinct"):
        span_corrupt([1, 2], [100, 100], noise_mask=[0, 1])
    with pytest.raises(ConfigError, match="noise_mask or rng"):
        span_corrupt([1, 2], [100, 101])
    with pytest.raises(ConfigError, match="start with a sentinel"):
        span_reconstruct([1], [5, 100], [100])
    assert sentinel_tokens(2) == ("<extra_id_0>", "<extra_id_1>")


# ================================================================== prefix LM
def test_prefix_lm_batch_mask_and_labels():
    ids = torch.arange(10, 16)[None].repeat(2, 1)  # (2, 6)
    batch = prefix_lm_batch(ids, 3)
    assert torch.equal(batch.attn_mask, prefix_lm_mask(6, 3))
    assert batch.labels.tolist() == [[-100, -100, -100, 13, 14, 15]] * 2
    per_row = prefix_lm_batch(ids, [0, 6])
    assert per_row.attn_mask.shape == (2, 6, 6)
    assert torch.equal(per_row.attn_mask[0], causal_mask(6))
    assert torch.equal(per_row.attn_mask[1], bidirectional_mask(6))
    assert per_row.labels.tolist() == [list(range(10, 16)), [-100] * 6]
    one = prefix_lm_batch(torch.arange(4), 2)
    assert one.labels.tolist() == [-100, -100, 2, 3]
    padded = torch.tensor([[1, 2, 3, 4]]), torch.tensor([[1, 2, 3, -100]])
    assert prefix_lm_batch(padded[0], 1, labels=padded[1]).labels.tolist() == [[-100, 2, 3, -100]]
    with pytest.raises(ConfigError):
        prefix_lm_batch(ids, 7)


def test_prefix_lm_loss_is_the_suffix_loss_and_the_suffix_never_sees_the_future():
    gpt = tiny_gpt()
    ids = torch.randint(0, 40, (3, 12), generator=gen(0))
    P = 5
    batch = prefix_lm_batch(ids, P)
    logits, loss = gpt(ids, batch.labels, attn_mask=batch.attn_mask)
    # logits at t predict ids[t+1]; the first target is ids[P], predicted from position P-1
    expected = F.cross_entropy(logits[:, P - 1 : -1].reshape(-1, 40), ids[:, P:].reshape(-1))
    assert torch.allclose(loss, expected)
    changed = ids.clone()
    changed[:, 9] = (changed[:, 9] + 1) % 40
    other, _ = gpt(changed, attn_mask=batch.attn_mask)
    assert torch.allclose(logits[:, :9], other[:, :9], atol=1e-6)  # nothing before 9 sees it
    changed = ids.clone()
    changed[:, 3] = (changed[:, 3] + 1) % 40  # inside the prefix: seen by position 1 too
    other, _ = gpt(changed, attn_mask=batch.attn_mask)
    assert not torch.allclose(logits[:, 1], other[:, 1])


# ================================================================== fill-in-the-middle
PRE, SUF, MID = 90, 91, 92
FIM_IDS = {"pre_id": PRE, "suf_id": SUF, "mid_id": MID}


def test_fim_layouts_are_psm_and_spm():
    p, m, s = [1, 2], [3, 4, 5], [6]
    assert fim_arrange(p, m, s, **FIM_IDS) == [PRE, 1, 2, SUF, 6, MID, 3, 4, 5]
    assert fim_arrange(p, m, s, **FIM_IDS, mode="spm") == [PRE, SUF, 6, MID, 1, 2, 3, 4, 5]
    with pytest.raises(ConfigError, match="mode"):
        fim_arrange(p, m, s, **FIM_IDS, mode="pms")


@settings(max_examples=200, deadline=None)
@given(ids=st.lists(st.integers(0, 89), max_size=80), seed=st.integers(0, 10_000),
       mode=st.sampled_from(["psm", "spm"]))
def test_fim_inverse_recovers_the_document(ids, seed, mode):
    out = fim_transform(ids, **FIM_IDS, mode=mode, rng=seed)
    assert len(out) == len(ids) + 3
    assert sorted(t for t in out if t < 90) == sorted(ids)
    assert fim_inverse(out, **FIM_IDS) == ids
    assert out[0] == PRE and (out[1] == SUF if mode == "spm" else True)


def test_fim_cut_points_are_uniform_and_the_pieces_are_in_place():
    ids = list(range(10))
    middles = []
    for seed in range(300):
        out = fim_transform(ids, **FIM_IDS, rng=seed)
        suf, mid = out.index(SUF), out.index(MID)
        prefix, suffix, middle = out[1:suf], out[suf + 1 : mid], out[mid + 1 :]
        assert prefix + middle + suffix == ids
        middles.append(len(middle))
    # |i - j| for i, j uniform on 0..10: mean (n^2 - 1) / (3n) with n = 11 → 3.64
    assert abs(np.mean(middles) - 120 / 33) < 0.5


def test_apply_fim_transforms_a_fraction_and_is_invertible():
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 90, size=int(rng.integers(0, 30))).tolist() for _ in range(2000)]
    for mode in ("psm", "spm", "mixed"):
        out = apply_fim(docs, 0.5, **FIM_IDS, mode=mode, rng=1)
        share = np.mean([d[:1] == [PRE] for d in out])
        assert abs(share - 0.5) < 0.04
        assert [fim_inverse(d, **FIM_IDS) for d in out] == docs
    assert apply_fim(docs, 0.0, **FIM_IDS, rng=0) == docs
    assert apply_fim(docs[:5], 0.5, **FIM_IDS, rng=7) == apply_fim(docs[:5], 0.5, **FIM_IDS, rng=7)
    with pytest.raises(ConfigError, match="already contains FIM"):
        fim_transform([1, PRE, 2], **FIM_IDS, rng=0)
    with pytest.raises(ConfigError, match="different"):
        fim_transform([1], pre_id=1, suf_id=1, mid_id=2, rng=0)


# ================================================================== multi-token prediction
def test_one_head_is_exactly_the_causal_lm():
    gpt = tiny_gpt()
    x = torch.randint(0, 40, (3, 16), generator=gen(0))
    labels = x.clone()
    labels[0, 5:9] = -100
    logits, loss = gpt(x, labels)
    mt_logits, mt_loss = MultiTokenGPT(gpt, n_future=1)(x, labels)
    assert torch.allclose(mt_logits, logits, atol=1e-6)
    assert torch.allclose(mt_loss, loss, atol=1e-6)


def test_head_k_predicts_token_t_plus_k_and_the_loss_is_their_mean():
    gpt = tiny_gpt(n_layer=3)
    model = MultiTokenGPT(gpt, n_future=3)
    x = torch.randint(0, 40, (2, 16), generator=gen(1))
    _, gpt_loss = gpt(x, x)
    losses = model.head_losses(x, x)
    assert torch.allclose(losses[0], gpt_loss, atol=1e-6)  # head 1 = the GPT
    logits = model.head_logits(x)
    for k in (1, 2, 3):
        manual = F.cross_entropy(logits[k - 1][:, :-k].reshape(-1, 40), x[:, k:].reshape(-1))
        assert torch.allclose(losses[k - 1], manual, atol=1e-6)
    _, loss = model(x, x)
    assert torch.allclose(loss, torch.stack(losses).mean(), atol=1e-6)
    # The extra heads are their own parameters (initialised as copies of the last block).
    n_block = sum(p.numel() for p in gpt.transformer.h[-1].parameters())
    assert sum(p.numel() for p in model.parameters()) == gpt.num_params(False) + 2 * n_block
    assert model.extra_heads[0].mlp.c_fc.weight is not gpt.transformer.h[-1].mlp.c_fc.weight


def test_multi_token_gpt_trains_with_the_course_loop():
    model = MultiTokenGPT(tiny_gpt(), n_future=2)
    blocks = torch.arange(16).repeat(64, 1) % 7  # periodic: t+1 and t+2 are both learnable
    result = train(model, blocks, blocks[:8], TrainConfig(max_steps=40, batch_size=16,
                   warmup_steps=4, lr=1e-2, eval_interval=40), progress=False)
    losses = [r["train_loss"] for r in result.history]
    assert losses[-1] < 0.5 * losses[0]
    with torch.no_grad():
        head2 = model.head_losses(blocks[:4], blocks[:4])[1]
    assert float(head2) < 1.0
    with pytest.raises(ConfigError):
        MultiTokenGPT(tiny_gpt(), n_future=0)


# ================================================================== contrastive
def test_info_nce_is_cross_entropy_over_the_similarity_matrix():
    torch.manual_seed(0)
    a, b = torch.randn(6, 8), torch.randn(6, 8)
    t = 0.1
    an, bn = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    sim = an @ bn.T / t
    rows = -torch.stack([F.log_softmax(sim[i], -1)[i] for i in range(6)]).mean()
    cols = -torch.stack([F.log_softmax(sim[:, j], -1)[j] for j in range(6)]).mean()
    assert torch.allclose(info_nce(a, b, t), rows, atol=1e-6)
    assert torch.allclose(info_nce(a, b, t, symmetric=True), (rows + cols) / 2, atol=1e-6)
    assert torch.allclose(info_nce(a, b, t, symmetric=True), info_nce(b, a, t, symmetric=True), atol=1e-6)
    assert not torch.allclose(info_nce(a, b, t), info_nce(b, a, t))
    assert float(info_nce(a, a, 0.01)) < 1e-3  # identical views: the diagonal wins
    with pytest.raises(ConfigError, match="temperature"):
        info_nce(a, b, 0)


def test_mean_pool_and_hidden_states():
    h = torch.arange(24, dtype=torch.float32).view(2, 3, 4)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    pooled = mean_pool(h, mask)
    assert torch.allclose(pooled[0], h[0, :2].mean(0)) and torch.equal(pooled[1], torch.zeros(4))
    assert torch.allclose(mean_pool(h), h.mean(1))
    gpt = tiny_gpt()
    x = torch.randint(0, 40, (2, 16), generator=gen(0))
    hidden = hidden_states(gpt, x)
    logits, _ = gpt(x)
    assert hidden.shape == (2, 16, 16) and torch.allclose(gpt.lm_head(hidden), logits, atol=1e-6)


# ================================================================== continued pretraining
class RecordingGPT(GPT):
    """A GPT that remembers every training batch it was given."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__(config)
        self.seen: list[torch.Tensor] = []

    def forward(self, idx, labels=None, **kwargs):
        if labels is not None:
            self.seen.append(idx.clone())
        return super().forward(idx, labels, **kwargs)


def corpora() -> tuple[torch.Tensor, torch.Tensor]:
    a = torch.randint(0, 20, (30, 16), generator=gen(0))  # corpus A: ids 0..19
    b = torch.randint(20, 40, (50, 16), generator=gen(1))  # corpus B: ids 20..39
    return a, b


def recorded_run(replay: float, steps: int = 10, batch_size: int = 8):
    torch.manual_seed(0)
    model = RecordingGPT(GPTConfig(vocab_size=40, block_size=16, n_layer=1, n_head=2, n_embd=16))
    a, b = corpora()
    result = continued_pretraining(model, a, b, steps=steps, val_a=a[:4], val_b=b[:4],
                                   replay_fraction=replay, eval_every=4,
                                   cfg=TrainConfig(batch_size=batch_size, lr=1e-3, warmup_steps=2))
    return model, result


def test_without_replay_training_sees_only_corpus_b():
    model, result = recorded_run(0.0)
    assert len(model.seen) == 10
    assert all(bool((batch >= 20).all()) for batch in model.seen)
    assert result.a_per_batch == 0 and result.replay_fraction == 0.0


@pytest.mark.parametrize(("replay", "expected"), [(0.25, 2), (0.5, 4), (0.3, 2), (1.0, 8)])
def test_replay_puts_the_same_share_of_a_in_every_batch(replay, expected):
    model, result = recorded_run(replay)
    for batch in model.seen:
        from_a = (batch < 20).all(dim=1)
        assert int(from_a.sum()) == expected
        assert bool(((batch >= 20).all(dim=1) | from_a).all())
    assert result.a_per_batch == expected and result.replay_fraction == expected / 8


def test_history_has_both_perplexities_and_is_deterministic():
    _, r1 = recorded_run(0.25)
    _, r2 = recorded_run(0.25)
    assert [h["step"] for h in r1.history] == [0, 4, 8, 10]
    for h in r1.history:
        assert h["ppl_a"] == pytest.approx(np.exp(h["nll_a"])) and h["ppl_b"] == pytest.approx(np.exp(h["nll_b"]))
    assert "train_loss" not in r1.history[0] and all("train_loss" in h for h in r1.history[1:])
    assert r1.history == r2.history
    # Training on B lowers B's loss.
    assert r1.history[-1]["nll_b"] < r1.history[0]["nll_b"]


def test_replay_limits_forgetting_of_corpus_a():
    a, b = corpora()
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=40, block_size=16, n_layer=1, n_head=2, n_embd=16))
    train(model, a, None, TrainConfig(max_steps=60, batch_size=8, lr=1e-2, warmup_steps=3,
                                      eval_interval=60), progress=False)  # "pretrained" on A
    cfg = TrainConfig(batch_size=8, lr=1e-2, warmup_steps=3)
    runs = {}
    for replay in (0.0, 0.5):
        runs[replay] = continued_pretraining(copy.deepcopy(model), a, b, steps=30, val_a=a[:8],
                                             val_b=b[:8], replay_fraction=replay, eval_every=10,
                                             cfg=cfg).history
    before = runs[0.0][0]
    assert runs[0.5][0] == before  # both start from the same checkpoint
    assert before["nll_a"] < np.log(20) < np.log(40) < before["nll_b"]  # it knows A, not B
    for hist in runs.values():
        assert hist[-1]["nll_b"] < before["nll_b"] - 2.0  # both adapt to B
    # Without replay A is forgotten; replaying A in every batch keeps it.
    assert runs[0.0][-1]["nll_a"] > before["nll_a"] + 1.0
    assert runs[0.5][-1]["nll_a"] < before["nll_a"] + 0.3
    assert runs[0.0][-1]["nll_a"] > runs[0.5][-1]["nll_a"] + 1.0


def test_mixed_blocks_follow_the_training_order_and_cycle_through_each_corpus():
    a, b = corpora()
    steps, bs = 20, 8
    data = mixed_blocks(a, b, steps=steps, batch_size=bs, replay_fraction=0.25, seed=3, order_seed=5)
    assert data.input_ids.shape == (steps * bs, 16) and data.a_per_batch == 2
    for s in range(steps):
        rows = batch_indices(s, steps * bs, bs, 5)
        assert int(data.from_a[rows].sum()) == 2
    # A's 30 blocks are all used once before any repeats (40 = 30 + 10 draws).
    a_rows = [int(i) for s in range(steps) for i in data.source_index[batch_indices(s, steps * bs, bs, 5)]
              [data.from_a[batch_indices(s, steps * bs, bs, 5)]]]
    assert sorted(a_rows[:30]) == list(range(30))
    with pytest.raises(ConfigError, match="replay_fraction"):
        mixed_blocks(a, b, steps=2, batch_size=4, replay_fraction=1.5)
    with pytest.raises(ConfigError, match="block length"):
        mixed_blocks(a, b[:, :8], steps=2, batch_size=4)
