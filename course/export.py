"""Our GPT <-> Hugging Face `GPT2LMHeadModel`, weight for weight.

Our modules carry GPT-2's names (`transformer.h.0.attn.c_attn`, ...), so the mapping is
the identity on names. The one real difference: GPT-2 was written with a `Conv1D` layer
that stores its matrix as (in, out) and computes `x @ W + b`, whereas `nn.Linear` stores
(out, in) and computes `x @ W.T + b`. The four projection matrices of every block
(`attn.c_attn`, `attn.c_proj`, `mlp.c_fc`, `mlp.c_proj`) are therefore transposed on the
way across; everything else is copied as is.

After export the logits agree with ours to float32 rounding, `hf_model(ids,
labels=ids).loss` equals our loss, and `save_pretrained` writes a directory that
`GPT2LMHeadModel.from_pretrained` (or `AutoModelForCausalLM`) loads offline.
"""

from __future__ import annotations

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from course.errors import ConfigError
from course.model import GPT, LAYER_NORM_EPS, GPTConfig

__all__ = ["to_hf_gpt2", "from_hf_gpt2", "CONV1D_SUFFIXES"]

# Parameters stored transposed by GPT-2's Conv1D.
CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")

# Activation names in transformers that are the tanh approximation of GELU (ours).
_TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh")


def _is_conv1d(name: str) -> bool:
    return name.endswith(CONV1D_SUFFIXES)


def to_hf_gpt2(model: GPT) -> GPT2LMHeadModel:
    """A `GPT2LMHeadModel` computing the same function as `model` (on CPU, float32, eval mode).

    Needs `bias=True`: GPT-2 always has biases in its projections and LayerNorms.
    Dropout probabilities are carried over. `bos_token_id` / `eos_token_id` are left
    unset (GPT-2's default 50256 is usually outside our vocabulary); set them from the
    tokenizer before saving if you want `generate` to stop at EOS.
    """
    if not isinstance(model, GPT):
        raise ConfigError(f"to_hf_gpt2 expects a course.model.GPT, got {type(model).__name__}")
    c = model.config
    if not c.bias:
        raise ConfigError("to_hf_gpt2: this model was built with bias=False, but GPT-2 has biases in "
                          "every Linear and LayerNorm; train with GPTConfig(bias=True) to export to GPT-2")
    hf_config = GPT2Config(
        vocab_size=c.vocab_size,
        n_positions=c.block_size,
        n_ctx=c.block_size,  # older name of n_positions, kept for old readers
        n_embd=c.n_embd,
        n_layer=c.n_layer,
        n_head=c.n_head,
        n_inner=4 * c.n_embd,
        activation_function="gelu_new",  # tanh-approximated GELU, = nn.GELU(approximate="tanh")
        layer_norm_epsilon=LAYER_NORM_EPS,
        resid_pdrop=c.dropout,
        embd_pdrop=c.dropout,
        attn_pdrop=c.dropout,
        scale_attn_weights=True,  # scores / sqrt(D), as ours
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=None,
    )
    hf = GPT2LMHeadModel(hf_config)
    ours = {k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()}
    theirs = hf.state_dict()
    converted = {}
    for name, target in theirs.items():
        if name not in ours:
            raise ConfigError(f"to_hf_gpt2: GPT-2 expects a tensor {name!r} that our model lacks; "
                              "is the installed transformers version compatible?")
        w = ours[name].t() if _is_conv1d(name) else ours[name]
        if w.shape != target.shape:  # a bug, not a user error: the layouts must agree
            raise RuntimeError(f"shape mismatch for {name}: ours {tuple(w.shape)}, GPT-2 {tuple(target.shape)}")
        converted[name] = w.contiguous()
    hf.load_state_dict(converted, strict=True)
    hf.tie_weights()  # lm_head.weight is transformer.wte.weight, as in our model
    if getattr(hf, "loss_type", "ForCausalLM") is None:
        # transformers infers the loss from the class name, which "GPT2LMHeadModel" does not
        # match; it then warns and uses the causal-LM loss anyway. Say so explicitly.
        hf.loss_type = "ForCausalLM"
    return hf.eval()


def from_hf_gpt2(hf_model: GPT2LMHeadModel) -> GPT:
    """Our `GPT` with the weights of a `GPT2LMHeadModel` (float32, on CPU, eval mode).

    Only GPT-2 variants our architecture can express are accepted: tied embeddings, a
    tanh GELU, MLP width 4·n_embd, plain 1/sqrt(D) attention scaling and LayerNorm
    epsilon 1e-5; anything else is a ConfigError naming the setting.
    """
    if not isinstance(hf_model, GPT2LMHeadModel):
        raise ConfigError(f"from_hf_gpt2 expects a transformers GPT2LMHeadModel, got "
                          f"{type(hf_model).__name__}")
    h = hf_model.config
    problems = []
    if h.activation_function not in _TANH_GELUS:
        problems.append(f"activation_function={h.activation_function!r} (ours is 'gelu_new')")
    if h.n_inner not in (None, 4 * h.n_embd):
        problems.append(f"n_inner={h.n_inner} (ours is 4 * n_embd = {4 * h.n_embd})")
    if abs(h.layer_norm_epsilon - LAYER_NORM_EPS) > 1e-12:
        problems.append(f"layer_norm_epsilon={h.layer_norm_epsilon} (ours is {LAYER_NORM_EPS})")
    if not h.scale_attn_weights or h.scale_attn_by_inverse_layer_idx:
        problems.append("non-standard attention scaling (ours is scores / sqrt(head_dim))")
    if not getattr(h, "tie_word_embeddings", True) or not torch.equal(
        hf_model.lm_head.weight, hf_model.transformer.wte.weight
    ):
        problems.append("untied lm_head and token embedding (ours are tied)")
    if len({h.resid_pdrop, h.embd_pdrop, h.attn_pdrop}) != 1:
        problems.append(f"different dropouts (resid {h.resid_pdrop}, embd {h.embd_pdrop}, attn "
                        f"{h.attn_pdrop}); ours has one")
    if problems:
        raise ConfigError("from_hf_gpt2: this GPT-2 cannot be expressed by course.model.GPT: "
                          + "; ".join(problems))
    config = GPTConfig(
        vocab_size=h.vocab_size, block_size=h.n_positions, n_layer=h.n_layer, n_head=h.n_head,
        n_embd=h.n_embd, dropout=float(h.resid_pdrop), bias=True,
    )
    model = GPT(config)
    theirs = {k: v.detach().to("cpu", torch.float32) for k, v in hf_model.state_dict().items()}
    state = {}
    for name, target in model.state_dict().items():
        if name not in theirs:
            raise ConfigError(f"from_hf_gpt2: the GPT-2 model has no tensor {name!r}")
        w = theirs[name].t() if _is_conv1d(name) else theirs[name]
        if w.shape != target.shape:
            raise ConfigError(f"from_hf_gpt2: tensor {name} has shape {tuple(w.shape)}, expected "
                              f"{tuple(target.shape)} from the GPT-2 config")
        state[name] = w.contiguous()
    model.load_state_dict(state, strict=True)
    # load_state_dict copies into the existing Parameters, so lm_head and wte stay one tensor.
    return model.eval()
