"""Checks of lesson 05 (the GPT): references pass, realistic mistakes fail with the right hint."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from lookalikes import AlwaysEqualTensor

from course import checks as check
from course.checks import CheckFailed, NotAttempted

# ------------------------------------------------------------------------------ MLP


def mlp_ok(x, c_fc_weight, c_fc_bias, c_proj_weight, c_proj_bias):
    h = F.gelu(x @ c_fc_weight.T + c_fc_bias, approximate="tanh")
    return h @ c_proj_weight.T + c_proj_bias


def mlp_relu(x, w1, b1, w2, b2):
    return F.linear(F.relu(F.linear(x, w1, b1)), w2, b2)


def mlp_erf(x, w1, b1, w2, b2):
    return F.linear(F.gelu(F.linear(x, w1, b1)), w2, b2)


def mlp_no_bias(x, w1, b1, w2, b2):
    return F.linear(F.gelu(F.linear(x, w1), approximate="tanh"), w2)


def mlp_no_proj_bias(x, w1, b1, w2, b2):
    return F.linear(F.gelu(F.linear(x, w1, b1), approximate="tanh"), w2)


def mlp_untransposed(x, w1, b1, w2, b2):
    return F.gelu(x @ w1 + b1, approximate="tanh") @ w2 + b2


def test_mlp_reference_passes(capsys):
    check.mlp_forward(mlp_ok)
    assert capsys.readouterr().out == "✓ mlp_forward: 4 cases passed\n"


@pytest.mark.parametrize("wrong, hint", [
    (mlp_relu, "you used ReLU"),
    (mlp_erf, "exact (erf) GELU"),
    (mlp_no_bias, "both biases are missing"),
    (mlp_no_proj_bias, "bias of c_proj is missing"),
])
def test_mlp_mistakes_are_named(wrong, hint):
    with pytest.raises(CheckFailed, match="mlp_forward: on input x of shape") as info:
        check.mlp_forward(wrong)
    assert hint in str(info.value)


def test_mlp_untransposed_weight_is_a_crash_naming_the_input_and_the_layout():
    with pytest.raises(CheckFailed, match=r"x of shape \(1, 1, 4\).*raised RuntimeError") as info:
        check.mlp_forward(mlp_untransposed)
    assert "(out_features, in_features)" in str(info.value)


def test_mlp_other_styles_pass():
    def mlp_float64(x, w1, b1, w2, b2):
        return mlp_ok(x.double(), w1.double(), b1.double(), w2.double(), b2.double()).float()

    def mlp_by_formula(x, w1, b1, w2, b2):  # the tanh GELU written out
        h = x @ w1.T + b1
        h = 0.5 * h * (1 + torch.tanh((2 / torch.pi) ** 0.5 * (h + 0.044715 * h ** 3)))
        return torch.addmm(b2, h.reshape(-1, h.size(-1)), w2.T).reshape(*x.shape[:-1], -1)

    check.mlp_forward(mlp_float64)
    check.mlp_forward(mlp_by_formula)


@pytest.mark.parametrize("wrong, got", [
    (lambda *a: mlp_ok(*a).tolist(), "got a list"),
    (lambda *a: mlp_ok(*a).as_subclass(AlwaysEqualTensor), "AlwaysEqualTensor"),
])
def test_mlp_wrong_container_is_rejected(wrong, got):
    with pytest.raises(CheckFailed, match="expected torch.Tensor") as info:
        check.mlp_forward(wrong)
    assert got in str(info.value)


def test_mlp_that_changes_its_input_is_rejected():
    def mlp_in_place(x, w1, b1, w2, b2):
        h = F.gelu(x @ w1.T + b1, approximate="tanh")
        x.mul_(2.0)  # then "reuses" x as scratch space
        return h @ w2.T + b2

    with pytest.raises(CheckFailed, match="changed its argument 1 in place"):
        check.mlp_forward(mlp_in_place)


def test_mlp_fallback_hint_does_not_give_the_answer():
    def mlp_doubled(x, w1, b1, w2, b2):
        return 2 * mlp_ok(x, w1, b1, w2, b2)

    with pytest.raises(CheckFailed) as info:
        check.mlp_forward(mlp_doubled)
    message = str(info.value)
    assert "three steps: the c_fc layer widens" in message and "c_fc_weight.T" not in message


def test_mlp_not_attempted():
    def todo(*args):
        raise NotImplementedError("Exercise: implement mlp_forward()")

    with pytest.raises(NotAttempted):
        check.mlp_forward(todo)


# ---------------------------------------------------------------------------- Block


def block_ok(x, block):
    a, _ = block.attn(block.ln_1(x), None)
    x = x + a
    return x + block.mlp(block.ln_2(x))


def block_post_ln(x, block):
    a, _ = block.attn(x, None)
    x = block.ln_1(x + a)
    return block.ln_2(x + block.mlp(x))


def block_no_residual(x, block):
    a, _ = block.attn(block.ln_1(x), None)
    return block.mlp(block.ln_2(a))


def block_no_mlp_residual(x, block):
    a, _ = block.attn(block.ln_1(x), None)
    x = x + a
    return block.mlp(block.ln_2(x))


def block_tuple_not_unpacked(x, block):
    x = x + block.attn(block.ln_1(x), None)
    return x + block.mlp(block.ln_2(x))


def block_calls_itself(x, block):
    return block(x, None)[0]


def test_block_reference_passes(capsys):
    check.block_forward(block_ok)
    assert capsys.readouterr().out == "✓ block_forward: 4 cases passed\n"


@pytest.mark.parametrize("wrong, hint", [
    (block_post_ln, "post-LN ordering"),
    (block_no_residual, "both residual connections are missing"),
    (block_no_mlp_residual, "residual around the MLP is missing"),
    (block_tuple_not_unpacked, "returns a pair (y, probs)"),
    (block_calls_itself, "build the block from its parts"),
])
def test_block_mistakes_are_named(wrong, hint):
    with pytest.raises(CheckFailed) as info:
        check.block_forward(wrong)
    assert hint in str(info.value)


def block_adds_in_place(x, block):
    a, _ = block.attn(block.ln_1(x), None)
    x += a  # changes the caller's residual stream
    x += block.mlp(block.ln_2(x))
    return x


def test_block_that_adds_into_the_callers_x_is_rejected():
    with pytest.raises(CheckFailed, match="block_forward: on input x of shape .* changed its "
                                          "argument 1 in place") as info:
        check.block_forward(block_adds_in_place)
    assert "x += ... (or x.add_) adds into the caller's tensor" in str(info.value)


def test_block_wrong_container_is_rejected():
    with pytest.raises(CheckFailed, match="expected torch.Tensor, got a list"):
        check.block_forward(lambda x, block: [block_ok(x, block)])
    with pytest.raises(CheckFailed, match="AlwaysEqualTensor"):
        check.block_forward(lambda x, block: block_ok(x, block).as_subclass(AlwaysEqualTensor))


def test_block_hints_do_not_give_the_answer():
    def block_scaled(x, block):
        return 1.5 * block_ok(x, block)

    with pytest.raises(CheckFailed) as info:
        check.block_forward(block_scaled)
    message = str(info.value)
    assert "ln_1 -> attention -> add to x" in message and "block.attn(block.ln_1" not in message
    with pytest.raises(CheckFailed) as info:
        check.block_forward(block_tuple_not_unpacked)
    assert "a, _ =" not in str(info.value)


def test_block_not_attempted():
    def todo(x, block):
        raise NotImplementedError("Exercise: implement block_forward()")

    with pytest.raises(NotAttempted):
        check.block_forward(todo)


# ------------------------------------------------------------------ forward with loss


def _embed(model, idx):
    return model.transformer.wte(idx) + model.transformer.wpe(torch.arange(idx.size(1)))


def _blocks(model, x):
    for block in model.transformer.h:
        x = block_ok(x, block)
    return x


def _loss(logits, labels):
    V = logits.size(-1)
    return F.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1),
                           ignore_index=-100)


def forward_ok(model, idx, labels=None):
    x = _blocks(model, _embed(model, idx))
    logits = model.lm_head(model.transformer.ln_f(x))
    return logits, (None if labels is None else _loss(logits, labels))


def _with_loss(loss_fn):
    def forward(model, idx, labels=None):
        logits, _ = forward_ok(model, idx)
        return logits, (None if labels is None else loss_fn(logits, labels))

    return forward


def forward_no_positions(model, idx, labels=None):
    x = _blocks(model, model.transformer.wte(idx))
    logits = model.lm_head(model.transformer.ln_f(x))
    return logits, (None if labels is None else _loss(logits, labels))


def forward_positions_from_ids(model, idx, labels=None):
    x = _blocks(model, model.transformer.wte(idx) + model.transformer.wpe(idx))
    logits = model.lm_head(model.transformer.ln_f(x))
    return logits, (None if labels is None else _loss(logits, labels))


def forward_no_ln_f(model, idx, labels=None):
    logits = model.lm_head(_blocks(model, _embed(model, idx)))
    return logits, (None if labels is None else _loss(logits, labels))


def forward_probs(model, idx, labels=None):
    logits, loss = forward_ok(model, idx, labels)
    return F.softmax(logits, dim=-1), loss


def forward_hidden_state(model, idx, labels=None):
    return model.transformer.ln_f(_blocks(model, _embed(model, idx))), None


def forward_calls_model(model, idx, labels=None):
    return model(idx, labels)


def forward_logits_only(model, idx, labels=None):
    return forward_ok(model, idx)[0]


def forward_truthy_labels(model, idx, labels=None):
    logits, _ = forward_ok(model, idx)
    if labels:
        return logits, _loss(logits, labels)
    return logits, None


def forward_always_a_loss(model, idx, labels=None):
    logits, _ = forward_ok(model, idx)
    return logits, _loss(logits, idx if labels is None else labels)


def loss_no_shift(logits, labels):
    V = logits.size(-1)
    return F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1), ignore_index=-100)


def loss_shift_backwards(logits, labels):
    V = logits.size(-1)
    return F.cross_entropy(logits[:, 1:].reshape(-1, V), labels[:, :-1].reshape(-1),
                           ignore_index=-100)


def loss_forgets_ignore(logits, labels):
    # A hand-written NLL that never looks at -100: it scores padding as token 0 and
    # averages over every position.
    logp = F.log_softmax(logits[:, :-1], dim=-1)
    targets = labels[:, 1:].clamp(min=0)
    return -logp.gather(-1, targets[..., None]).mean()


def loss_masks_but_divides_by_all(logits, labels):
    logp = F.log_softmax(logits[:, :-1], dim=-1)
    targets = labels[:, 1:]
    keep = targets != -100
    nll = -logp.gather(-1, targets.clamp(min=0)[..., None])[..., 0]
    return (nll * keep).sum() / targets.numel()


def loss_item(logits, labels):
    return _loss(logits, labels).item()


def loss_detached(logits, labels):
    return _loss(logits.detach(), labels)


def loss_per_position(logits, labels):
    V = logits.size(-1)
    return F.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1),
                           ignore_index=-100, reduction="none")


def test_forward_reference_passes(capsys):
    check.gpt_forward(forward_ok)
    assert capsys.readouterr().out == "✓ gpt_forward: 9 cases passed\n"


def test_forward_with_the_package_blocks_passes(capsys):
    def forward(model, idx, labels=None):
        x = _embed(model, idx)
        for block in model.transformer.h:
            x, _ = block(x, None)
        logits = model.lm_head(model.transformer.ln_f(x))
        return logits, (None if labels is None else _loss(logits, labels))

    check.gpt_forward(forward)
    assert capsys.readouterr().out == "✓ gpt_forward: 9 cases passed\n"


def test_forward_reference_is_the_model():
    """The check's reference is the model's own forward (same shift, same ignore_index)."""
    from course.model import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=8))
    idx = torch.randint(0, 13, (2, 8))
    labels = idx.clone()
    labels[1, 5:] = -100
    logits, loss = model(idx, labels)
    mine_logits, mine_loss = forward_ok(model, idx, labels)
    torch.testing.assert_close(mine_logits, logits)
    torch.testing.assert_close(mine_loss, loss)


@pytest.mark.parametrize("wrong, hint", [
    (forward_no_positions, "position embedding is missing"),
    (forward_positions_from_ids, "looked up with the token ids"),
    (forward_no_ln_f, "final LayerNorm is missing"),
    (forward_probs, "those are probabilities"),
    (forward_hidden_state, "that is the hidden state"),
    (forward_calls_model, "build the forward pass from the parts"),
    (forward_logits_only, "return a pair (logits, loss)"),
    (forward_truthy_labels, "`if labels is not None:`"),
    (forward_always_a_loss, "expected None"),
    (_with_loss(loss_no_shift), "off by one: no shift"),
    (_with_loss(loss_shift_backwards), "the shift goes the wrong way"),
    (_with_loss(loss_forgets_ignore), "must be skipped, not scored as token 0"),
    (_with_loss(loss_masks_but_divides_by_all), "must take no loss at all"),
    (_with_loss(loss_item), "return the loss as a 0-dim tensor"),
    (_with_loss(loss_detached), "requires_grad is False"),
    (_with_loss(loss_per_position), "a loss per position"),
])
def test_forward_mistakes_are_named(wrong, hint):
    with pytest.raises(CheckFailed, match="gpt_forward: ") as info:
        check.gpt_forward(wrong)
    assert hint in str(info.value)


def loss_as_the_placeholder_says_without_flattening(logits, labels):
    return F.cross_entropy(logits[:, :-1], labels[:, 1:], ignore_index=-100)


def loss_view_of_a_slice(logits, labels):
    V = logits.size(-1)
    return F.cross_entropy(logits[:, :-1].view(-1, V), labels[:, 1:].view(-1), ignore_index=-100)


def test_forward_unflattened_cross_entropy_gets_the_flattening_hint():
    with pytest.raises(CheckFailed, match="Expected target size") as info:
        check.gpt_forward(_with_loss(loss_as_the_placeholder_says_without_flattening))
    message = str(info.value)
    assert "F.cross_entropy reads axis 1 of a 3-D input as the classes" in message
    assert "flatten the shifted logits to (N, V) and the shifted labels to (N,)" in message


def test_forward_view_of_a_slice_gets_the_reshape_hint():
    with pytest.raises(CheckFailed, match="view size is not compatible") as info:
        check.gpt_forward(_with_loss(loss_view_of_a_slice))
    assert "is not contiguous, so .view cannot flatten it" in str(info.value)


def test_forward_other_correct_styles_pass():
    def loss_by_hand(logits, labels):  # log-softmax and gather, mean over kept positions
        tgt = labels[:, 1:]
        keep = tgt != -100
        logp = F.log_softmax(logits[:, :-1].double(), dim=-1)
        nll = -logp.gather(-1, tgt.clamp(min=0)[..., None])[..., 0]
        return (nll[keep].sum() / keep.sum()).float()

    def loss_flatten(logits, labels):
        return F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten())

    check.gpt_forward(_with_loss(loss_by_hand))
    check.gpt_forward(_with_loss(loss_flatten))


@pytest.mark.parametrize("wrong, got", [
    (lambda model, idx, labels=None: list(forward_ok(model, idx, labels)), "got a list"),
    (lambda model, idx, labels=None: (forward_ok(model, idx)[0].as_subclass(AlwaysEqualTensor),
                                      None), "AlwaysEqualTensor"),
    (lambda model, idx, labels=None: (forward_ok(model, idx)[0].tolist(), None), "a list at [0]"),
])
def test_forward_wrong_container_is_rejected(wrong, got):
    with pytest.raises(CheckFailed, match="expected tuple\\[torch.Tensor, torch.Tensor or None\\]") as info:
        check.gpt_forward(wrong)
    assert got in str(info.value)


def test_forward_that_changes_the_labels_is_rejected():
    def forward_edits_labels(model, idx, labels=None):
        logits, _ = forward_ok(model, idx)
        if labels is None:
            return logits, None
        labels[labels == -100] = 0  # "fixes" the padding in the caller's labels...
        V = logits.size(-1)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1),
                               reduction="none")
        return logits, loss.mean()

    with pytest.raises(CheckFailed, match="changed its argument 3 in place"):
        check.gpt_forward(forward_edits_labels)


@pytest.mark.parametrize("name", ["mlp_forward", "block_forward", "gpt_forward"])
def test_hint_levels_exist_and_do_not_give_the_answer(name, capsys, monkeypatch):
    from course.checks._core import _SHOWN, HINTS

    monkeypatch.setitem(_SHOWN, name, 0)  # as in a fresh session
    levels = HINTS[name]
    assert len(levels) == 2 and all(len(level) > 40 for level in levels)
    for level in levels:
        assert "approximate=" not in level and "a, _ =" not in level and "[:, :-1]" not in level
    check.hint(name)
    assert f"{name}: (level 1 of 2)" in capsys.readouterr().out


def test_forward_loss_mistakes_name_the_input():
    with pytest.raises(CheckFailed, match=r"on input a GPT with random weights .*labels = idx"):
        check.gpt_forward(_with_loss(loss_no_shift))


def test_forward_not_attempted():
    def todo(model, idx, labels=None):
        raise NotImplementedError("Exercise: implement gpt_forward()")

    with pytest.raises(NotAttempted):
        check.gpt_forward(todo)


def test_the_checks_leave_the_global_rng_and_the_thread_setting_alone():
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check.mlp_forward(mlp_ok)
    check.block_forward(block_ok)
    check.gpt_forward(forward_ok)
    torch.testing.assert_close(torch.rand(3), expected)
    assert torch.get_num_threads() == threads
