"""Checks for lesson 05 (the GPT): the MLP, the pre-LayerNorm block, the forward pass with loss.

Each check builds the package's own module (`course.model.MLP`, `Block`, `GPT`) with
random weights, runs the learner's function on random inputs and compares with it. When
the answer is wrong, the usual mistakes are recomputed and compared too, so the message
can say *which* mistake it was (ReLU instead of GELU, a post-LN block, no position
embedding, no shift, -100 not ignored, ...). The module's own `forward` is disabled
during a check, so the learner's code must assemble it from the parts.

Biases and LayerNorm parameters are drawn at random rather than left at their initial
zeros and ones: a missing bias or a LayerNorm in the wrong place must change the output.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from course.checks._core import (
    FLOAT_ATOL,
    FLOAT_RTOL,
    CheckFailed,
    call,
    exercise,
    expect_close,
    expect_contract,
    first_float_match,
    float_close,
    one_thread,
    show,
)


def _config(C: int, n_head: int = 2):
    from course.model import GPTConfig

    return GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=n_head, n_embd=C)


def _randomise_(module: Any, g: Any) -> None:
    """Give every parameter (biases and LayerNorm gains included) random values, in place."""
    import torch

    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("weight") and p.dim() == 1:  # LayerNorm gain: around 1
                p.copy_(1.0 + 0.5 * torch.randn(p.shape, generator=g))
            elif p.dim() == 1:  # biases
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            else:  # matrices: large enough that GELU's curved part matters
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[1]))


# ------------------------------------------------------------------------------ MLP


def _mlp_case(fn: Callable[..., Any], B: int, T: int, C: int, g: Any) -> None:
    import torch
    import torch.nn.functional as F

    from course.model import MLP

    name = "mlp_forward"
    mlp = MLP(_config(C, n_head=4)).eval()
    _randomise_(mlp, g)
    x = 2.0 * torch.randn(B, T, C, generator=g)
    w1, b1 = mlp.c_fc.weight.detach().clone(), mlp.c_fc.bias.detach().clone()
    w2, b2 = mlp.c_proj.weight.detach().clone(), mlp.c_proj.bias.detach().clone()
    with torch.no_grad():
        expected = mlp(x)
    desc = (f"x of shape {(B, T, C)}, c_fc_weight {tuple(w1.shape)}, c_fc_bias {tuple(b1.shape)}, "
            f"c_proj_weight {tuple(w2.shape)}, c_proj_bias {tuple(b2.shape)}")
    with torch.no_grad():
        try:  # the tensors themselves: `call` fails if the learner changes one in place
            got = call(name, fn, x, w1, b1, w2, b2, inputs_desc=desc)
        except CheckFailed as e:
            if "cannot be multiplied" in e.detail or "size of tensor" in e.detail:
                raise CheckFailed(name, e.detail, hint=(
                    "nn.Linear stores its weight as (out_features, in_features), so a layer is "
                    "x @ W.T + b (or F.linear(x, W, b)), not x @ W")) from None
            raise
    expect_contract(name, desc, torch.Tensor, got, hint="return the output tensor (B, T, C)")
    if float_close(got, expected):
        return

    def gelu(h: torch.Tensor) -> torch.Tensor:
        return F.gelu(h, approximate="tanh")

    with torch.no_grad():
        hint = first_float_match(got, [
            ("you used ReLU; GPT-2's MLP uses GELU in its tanh form (F.gelu has an "
             "`approximate` argument)",
             lambda: F.linear(F.relu(F.linear(x, w1, b1)), w2, b2)),
            ("that is the exact (erf) GELU; GPT-2 and course.model use its tanh approximation "
             "(F.gelu has an `approximate` argument)",
             lambda: F.linear(F.gelu(F.linear(x, w1, b1)), w2, b2)),
            ("the bias of c_fc is missing: the first layer adds c_fc_bias after the matmul",
             lambda: F.linear(gelu(F.linear(x, w1)), w2, b2)),
            ("the bias of c_proj is missing: the second layer adds c_proj_bias",
             lambda: F.linear(gelu(F.linear(x, w1, b1)), w2)),
            ("both biases are missing: each Linear layer is x @ W.T + b",
             lambda: F.linear(gelu(F.linear(x, w1)), w2)),
            ("the activation is missing: without GELU the two layers collapse into one linear map",
             lambda: F.linear(F.linear(x, w1, b1), w2, b2)),
            ("the activation is applied after c_proj instead of between the two layers",
             lambda: gelu(F.linear(F.linear(x, w1, b1), w2, b2))),
        ]) or ("three steps: the c_fc layer widens each position to 4C (weight transposed, "
               "plus its bias), the tanh GELU, then the c_proj layer back to C; nn.Linear "
               "weights are stored (out, in)")
    expect_close(name, desc, expected, got, rtol=FLOAT_RTOL, atol=FLOAT_ATOL, hint=hint)


@exercise("mlp_forward", hints=(
    "Three steps, all on the last axis: widen C -> 4C with the c_fc weight and bias, apply the "
    "non-linearity, narrow 4C -> C with the c_proj weight and bias. Check the shapes: the "
    "weights are stored (out_features, in_features).",
    "A linear layer computes x times the transpose of its weight, plus its bias (F.linear does "
    "exactly that); GPT-2's non-linearity is the tanh approximation of GELU (see F.gelu's "
    "`approximate` argument). Compute new tensors; never change x or the weights in place.",
))
def mlp_forward(fn: Callable[..., Any]) -> int:
    """`fn(x, c_fc_weight, c_fc_bias, c_proj_weight, c_proj_bias)` against `course.model.MLP`."""
    import torch

    g = torch.Generator().manual_seed(5)
    shapes = [(1, 1, 4), (2, 3, 8), (3, 5, 16), (1, 7, 12)]
    with torch.random.fork_rng(devices=[]), one_thread():  # modules draw from the global RNG
        for B, T, C in shapes:
            _mlp_case(fn, B, T, C, g)
    return len(shapes)


# ---------------------------------------------------------------------------- Block


def _guarded_block(C: int, n_head: int, g: Any) -> Any:
    """A Block with random parameters whose own forward refuses to run (the learner must
    assemble it from the submodules)."""
    from course.model import Block

    block = Block(_config(C, n_head)).eval()
    _randomise_(block, g)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise CheckFailed(
            "block_forward",
            "your function called the block itself (block(x) / block.forward)",
            hint="build the block from its parts: block.ln_1, block.attn, block.ln_2, block.mlp")

    block.forward = refuse  # instance attribute: nn.Module.__call__ finds it first
    return block


def _reference_block(x: Any, block: Any) -> Any:
    a, _ = block.attn(block.ln_1(x), None)
    x = x + a
    return x + block.mlp(block.ln_2(x))


def _block_case(fn: Callable[..., Any], B: int, T: int, C: int, H: int, g: Any) -> None:
    import torch

    name = "block_forward"
    block = _guarded_block(C, H, g)
    x = torch.randn(B, T, C, generator=g)
    with torch.no_grad():
        expected = _reference_block(x, block)
    desc = f"x of shape {(B, T, C)} and a Block with n_head={H} and random weights"
    with torch.no_grad():
        try:  # the caller's x itself: `x += ...` would change it, and `call` notices
            got = call(name, fn, x, block, inputs_desc=desc)
        except CheckFailed as e:
            if "argument 1 in place" in e.detail:
                raise CheckFailed(name, e.detail, hint=(
                    "x += ... (or x.add_) adds into the caller's tensor: the residual stream "
                    "the caller passed in is changed. Write x = x + ..., which makes a new "
                    "tensor")) from None
            if "tuple" in e.detail or "mask" in e.detail:
                raise CheckFailed(name, e.detail, hint=(
                    "block.attn(h, None) returns a pair (y, probs): unpack it and add only y "
                    "to the stream")) from None
            raise
    if isinstance(got, tuple) and len(got) == 2:
        raise CheckFailed(name, f"on input {desc} — got a tuple {show(got)}",
                          hint="return only the new residual stream x (B, T, C), not (x, probs)")
    expect_contract(name, desc, torch.Tensor, got, hint="return the new residual stream (B, T, C)")
    if float_close(got, expected):
        return

    ln1, ln2, mlp = block.ln_1, block.ln_2, block.mlp

    def attn(h: torch.Tensor) -> torch.Tensor:
        return block.attn(h, None)[0]

    def post_ln() -> torch.Tensor:
        y = ln1(x + attn(x))
        return ln2(y + mlp(y))

    def no_residual() -> torch.Tensor:
        return mlp(ln2(attn(ln1(x))))

    def no_attn_residual() -> torch.Tensor:
        y = attn(ln1(x))
        return y + mlp(ln2(y))

    def no_mlp_residual() -> torch.Tensor:
        return mlp(ln2(x + attn(ln1(x))))

    def residual_of_normed() -> torch.Tensor:
        h = ln1(x)
        y = h + attn(h)
        h2 = ln2(y)
        return h2 + mlp(h2)

    def parallel() -> torch.Tensor:
        return x + attn(ln1(x)) + mlp(ln2(x))

    def swapped_ln() -> torch.Tensor:
        y = x + attn(ln2(x))
        return y + mlp(ln1(y))

    def one_ln() -> torch.Tensor:
        y = x + attn(ln1(x))
        return y + mlp(ln1(y))

    def mlp_first() -> torch.Tensor:
        y = x + mlp(ln2(x))
        return y + attn(ln1(y))

    with torch.no_grad():
        hint = first_float_match(got, [
            ("that is the post-LN ordering (LayerNorm after the residual add, as in the 2017 "
             "Transformer); GPT-2 is pre-LN: each sub-layer reads a LayerNorm-ed copy of the "
             "stream, and its output is added to the un-normalised stream", post_ln),
            ("both residual connections are missing: add each sub-layer's output to x "
             "(x = x + attn(...), x = x + mlp(...)) instead of replacing x", no_residual),
            ("the residual around attention is missing: attention's output is added to the "
             "stream x, it does not replace it", no_attn_residual),
            ("the residual around the MLP is missing: the MLP's output is added to the "
             "stream, it does not replace it", no_mlp_residual),
            ("the residual adds the normalised h instead of the raw stream x: the LayerNorm "
             "output only feeds the sub-layer, x itself is never normalised", residual_of_normed),
            ("both sub-layers read the same input x (a 'parallel' block); in GPT-2 the MLP "
             "reads the stream after attention was added", parallel),
            ("ln_1 and ln_2 are swapped: ln_1 goes before attention, ln_2 before the MLP",
             swapped_ln),
            ("ln_1 is used twice; the MLP has its own LayerNorm, block.ln_2", one_ln),
            ("the MLP runs before attention; the order is attention first, then the MLP",
             mlp_first),
        ]) or ("pre-LN block, in this order: ln_1 -> attention -> add to x; then ln_2 -> MLP "
               "-> add to the updated x")
    expect_close(name, desc, expected, got, rtol=FLOAT_RTOL, atol=FLOAT_ATOL, hint=hint)


@exercise("block_forward", hints=(
    "The stream x is never normalised itself: each sub-layer reads a LayerNorm-ed copy of it, "
    "and the sub-layer's output is added to x. Attention comes first, then the MLP.",
    "ln_1 goes with attention, ln_2 with the MLP, and the MLP reads the stream AFTER "
    "attention's output was added. block.attn(h, mask) returns a pair (y, probs), and a mask "
    "of None means causal. Make new tensors (x + ...), never x += on the caller's x.",
))
def block_forward(fn: Callable[..., Any]) -> int:
    """`fn(x, block)` against `course.model.Block.forward` (pre-LayerNorm, two residuals)."""
    import torch

    g = torch.Generator().manual_seed(7)
    shapes = [(1, 1, 8, 2), (2, 4, 8, 2), (3, 6, 16, 4), (1, 9, 12, 3)]
    with torch.random.fork_rng(devices=[]), one_thread():  # modules draw from the global RNG
        for B, T, C, H in shapes:
            _block_case(fn, B, T, C, H, g)
    return len(shapes)


# ------------------------------------------------------------------ forward with loss


def _loss_reference(logits: Any, labels: Any) -> Any:
    import torch.nn.functional as F

    V = logits.size(-1)
    return F.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1),
                           ignore_index=-100)


def _guarded_gpt(g: Any) -> Any:
    """A small GPT with random parameters whose own forward refuses to run."""
    import torch

    from course.model import GPT, GPTConfig

    model = GPT(GPTConfig(vocab_size=13, block_size=16, n_layer=2, n_head=2, n_embd=8)).eval()
    _randomise_(model, g)
    with torch.no_grad():  # embeddings of the size of a trained model's: positions matter
        model.transformer.wpe.weight.mul_(2.0)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise CheckFailed(
            "gpt_forward", "your function called the model itself (model(idx) / model.forward)",
            hint="build the forward pass from the parts: model.transformer.wte, .wpe, .h, .ln_f "
                 "and model.lm_head")

    model.forward = refuse  # instance attribute: nn.Module.__call__ finds it first
    return model


def _logits_variants(model: Any, idx: Any, expected: Any) -> list[tuple[str, Callable[[], Any]]]:
    """Wrong forward passes a learner typically writes, with the hint for each."""
    import torch
    import torch.nn.functional as F

    tr = model.transformer
    T = idx.size(1)
    pos = torch.arange(T)

    def run(x: torch.Tensor, ln_f: bool = True) -> torch.Tensor:
        for block in tr.h:
            x, _ = block(x, None)
        return model.lm_head(tr.ln_f(x) if ln_f else x)

    return [
        ("the position embedding is missing: x = wte(idx) + wpe(positions), with positions "
         "torch.arange(T)", lambda: run(tr.wte(idx))),
        ("the position embedding was looked up with the token ids (wpe(idx)); it is indexed by "
         "the position: wpe(torch.arange(T))", lambda: run(tr.wte(idx) + tr.wpe(idx))),
        ("the final LayerNorm is missing: apply model.transformer.ln_f after the last block, "
         "before lm_head", lambda: run(tr.wte(idx) + tr.wpe(pos), ln_f=False)),
        ("those are probabilities (softmax of the logits); return the raw logits: the loss "
         "applies log-softmax itself", lambda: F.softmax(expected, dim=-1)),
        ("those are log-probabilities; return the raw logits (model.lm_head's output)",
         lambda: F.log_softmax(expected, dim=-1)),
    ]


def _loss_variants(lg: Any, labels: Any) -> list[tuple[str, Callable[[], Any]]]:
    import torch
    import torch.nn.functional as F

    B, V = lg.size(0), lg.size(-1)

    def ce(pred: torch.Tensor, tgt: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return F.cross_entropy(pred.reshape(-1, V), tgt.reshape(-1), **kwargs)

    def masked_but_divided_by_all() -> torch.Tensor:
        tgt = labels[:, 1:]
        logp = F.log_softmax(lg[:, :-1], dim=-1)
        nll = -logp.gather(-1, tgt.clamp(min=0)[..., None])[..., 0] * (tgt != -100)
        return nll.sum() / tgt.numel()

    def mean_of_block_means() -> torch.Tensor:
        per_block = [ce(lg[b : b + 1, :-1], labels[b : b + 1, 1:]) for b in range(B)]
        return torch.stack(per_block).nanmean()

    return [
        ("off by one: no shift. The logit at position t predicts the NEXT token, so score "
         "logits[:, :-1] against labels[:, 1:]", lambda: ce(lg, labels)),
        ("the shift goes the wrong way: the logit at t predicts labels[t + 1], so pair "
         "logits[:, :-1] with labels[:, 1:] (not logits[:, 1:] with labels[:, :-1])",
         lambda: ce(lg[:, 1:], labels[:, :-1])),
        ("positions labelled -100 must take no loss at all: pass ignore_index=-100 (the "
         "mean is then over the remaining positions only)", masked_but_divided_by_all),
        ("positions labelled -100 must be skipped, not scored as token 0: use "
         "ignore_index=-100", lambda: ce(lg[:, :-1], labels[:, 1:].clamp(min=0))),
        ("that is the sum of the per-token losses; the loss is their mean",
         lambda: ce(lg[:, :-1], labels[:, 1:], reduction="sum")),
        ("each block's loss was averaged, then the blocks: the mean must be over all scored "
         "tokens of the batch at once", mean_of_block_means),
    ]


def _forward_case(fn: Callable[..., Any], B: int, T: int, ignore: list[tuple[int, int]] | None,
                  g: Any) -> None:
    import torch

    name = "gpt_forward"
    model = _guarded_gpt(g)
    V = model.config.vocab_size
    idx = torch.randint(0, V, (B, T), generator=g)
    labels = None
    if ignore is not None:
        labels = idx.clone()
        for b, t in ignore:
            labels[b, t] = -100
    tr = model.transformer
    with torch.no_grad():
        x = tr.wte(idx) + tr.wpe(torch.arange(T))
        for block in tr.h:
            x, _ = block(x, None)
        expected = model.lm_head(tr.ln_f(x))  # (B, T, V)
    shown = show(idx) if idx.numel() <= 12 else f"of shape {(B, T)}"
    desc = f"a GPT with random weights (V={V}, block_size=16), idx {shown}"
    if labels is None:
        desc += ", labels=None"
    else:
        desc += " and labels = idx" + (f" with {len(ignore)} set to -100" if ignore else "")
    try:  # idx and labels themselves: `call` fails if either is changed in place
        got = call(name, fn, model, idx, labels, inputs_desc=desc, may_change=(0,))
    except CheckFailed as e:
        if "ambiguous" in e.detail:
            raise CheckFailed(name, e.detail, hint=(
                "`if labels:` asks a whole tensor for one truth value; test "
                "`if labels is not None:` instead")) from None
        if "Expected target size" in e.detail or "only batches of spatial targets" in e.detail:
            raise CheckFailed(name, e.detail, hint=(
                "F.cross_entropy reads axis 1 of a 3-D input as the classes, so with (B, T-1, V) "
                "logits it takes T-1 for the vocabulary: flatten the shifted logits to (N, V) and "
                "the shifted labels to (N,), N = B * (T - 1), before calling it")) from None
        if "view size is not compatible" in e.detail:
            raise CheckFailed(name, e.detail, hint=(
                "a slice such as logits[:, :-1] is not contiguous, so .view cannot flatten it; "
                "use .reshape, which copies when it must")) from None
        raise

    # ---- what came back
    if isinstance(got, torch.Tensor):
        raise CheckFailed(name, f"on input {desc} — got a single tensor {show(got)}",
                          hint="return a pair (logits, loss), with loss None when labels is None")
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise CheckFailed(name, f"on input {desc} — expected a pair (logits, loss), got {show(got)}",
                          hint="end with `return logits, loss`")
    logits, loss = got
    if isinstance(loss, (int, float)) and not isinstance(loss, bool):
        raise CheckFailed(name, f"on input {desc} — the loss is the Python number {loss!r}",
                          hint="return the loss as a 0-dim tensor (not .item()): training "
                               "calls loss.backward() on it")
    expect_contract(name, desc, tuple[torch.Tensor, torch.Tensor | None], got,
                    hint="return a tuple (logits, loss): logits a tensor (B, T, V), loss a 0-dim "
                         "tensor, or None when labels is None")

    # ---- the logits
    if logits.dim() == 3 and tuple(logits.shape) == (B, T, model.config.n_embd) and V != model.config.n_embd:
        raise CheckFailed(name, f"on input {desc} — the first element has shape {tuple(logits.shape)}: "
                          "that is the hidden state (B, T, C)",
                          hint="map it to the vocabulary with model.lm_head (after ln_f)")
    got_logits = logits.detach().float()
    if not float_close(got_logits, expected):
        with torch.no_grad():
            hint = first_float_match(got_logits, _logits_variants(model, idx, expected)) or (
                "in this order: token embedding plus position embedding, every block, ln_f, "
                "lm_head; if that is what you do, make sure check.block_forward passes first")
        expect_close(name, desc, expected, got_logits, rtol=FLOAT_RTOL, atol=FLOAT_ATOL, hint=hint)

    # ---- the loss
    if labels is None:
        if loss is not None:
            raise CheckFailed(name, f"on input {desc} — the loss is {show(loss)}, expected None",
                              hint="without labels there is nothing to score: return (logits, None)")
        return
    if loss is None:
        raise CheckFailed(name, f"on input {desc} — the loss is None although labels were given",
                          hint="when labels is not None, compute the shifted cross-entropy")
    if loss.dim() != 0:
        per_position = ("a loss per position: take the mean over the positions that are not "
                        "-100 (F.cross_entropy's default reduction does it)")
        shape_hint = (per_position if loss.numel() > 1 else
                      f"if this is {per_position}; otherwise reshape it: loss.reshape(())")
        raise CheckFailed(name, f"on input {desc} — expected the loss as a 0-dim tensor, got shape "
                          f"{tuple(loss.shape)}", hint=shape_hint)
    if not loss.requires_grad:
        raise CheckFailed(name, f"on input {desc} — the loss does not depend on the weights "
                          "through autograd (requires_grad is False)",
                          hint="compute it from the logits with torch operations; no torch.no_grad(), "
                               ".detach(), .item() or numpy on the way")
    got_loss = loss.detach().float()
    expected_loss = _loss_reference(expected, labels)
    if float_close(got_loss, expected_loss):
        return
    hint = first_float_match(got_loss, _loss_variants(expected, labels)) or (
        "mean cross-entropy of logits[:, :-1] (flattened to (B*(T-1), V)) against "
        "labels[:, 1:] (flattened), ignoring -100")
    expect_close(name, desc, float(expected_loss), float(got_loss), rtol=FLOAT_RTOL, atol=FLOAT_ATOL, hint=hint)


@exercise("gpt_forward", hints=(
    "Three parts: the input (token embedding plus position embedding), the stack of blocks "
    "followed by ln_f and lm_head, which gives (B, T, V) logits, and, only when labels is not "
    "None, the loss. The logits at position t are scored against the label at t + 1.",
    "Positions are torch.arange(T) on idx's device. For the loss, leave out the last position "
    "of the logits and the first of the labels, flatten both (F.cross_entropy wants (N, V) "
    "logits and (N,) targets), pass ignore_index=-100, and keep the result a tensor.",
))
def gpt_forward(fn: Callable[..., Any]) -> int:
    """`fn(model, idx, labels=None) -> (logits, loss)` against `course.model.GPT.forward`."""
    import torch

    g = torch.Generator().manual_seed(11)
    # (B, T, positions whose label is -100; None = no labels at all)
    cases = [
        (2, 5, None),  # logits only: the loss must be None
        (1, 1, None),  # a single token
        (1, 2, []),  # the shortest block with a loss: one prediction
        (2, 6, []),
        (2, 8, [(0, 5), (0, 6), (0, 7), (1, 7)]),  # padded tails, as tail="pad" makes
        (1, 5, [(0, 0)]),  # -100 at position 0: that label is never a target anyway
        (3, 7, [(0, 3), (1, 1), (2, 6), (2, 2)]),
        (2, 4, [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2)]),  # only one position takes loss
        (2, 16, [(1, 12), (1, 13), (1, 14), (1, 15)]),  # the full block_size
    ]
    with torch.random.fork_rng(devices=[]), one_thread():  # modules draw from the global RNG
        for B, T, ignore in cases:
            _forward_case(fn, B, T, ignore, g)
    return len(cases)
