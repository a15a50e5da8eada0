"""Our GPT <-> Hugging Face `GPT2LMHeadModel` or `LlamaForCausalLM`, weight for weight.

`to_hf(model)` picks the class the model's architecture is: GPT-2's block
(`arch="gpt2"`) becomes a `GPT2LMHeadModel`, Llama's (`arch="llama"`: RMSNorm, RoPE,
SwiGLU, any `n_kv_head`, tied or not) a `LlamaForCausalLM`. A mix of the two (an
ablation such as GPT-2 with RMSNorm) has no Hugging Face class and is a ConfigError.

GPT-2. Our modules carry GPT-2's names (`transformer.h.0.attn.c_attn`, ...), so the mapping is
the identity on names. The one real difference: GPT-2 was written with a `Conv1D` layer
that stores its matrix as (in, out) and computes `x @ W + b`, whereas `nn.Linear` stores
(out, in) and computes `x @ W.T + b`. The four projection matrices of every block
(`attn.c_attn`, `attn.c_proj`, `mlp.c_fc`, `mlp.c_proj`) are therefore transposed on the
way across; everything else is copied as is.

Llama. Our fused projections are split: `attn.c_attn` (C + 2·G·D rows) into `q_proj`,
`k_proj`, `v_proj`, and `mlp.c_fc` ([gate; up], 2·hidden rows) into `gate_proj` and
`up_proj`; `c_proj` is `o_proj` / `down_proj`, `ln_1` / `ln_2` / `ln_f` are
`input_layernorm` / `post_attention_layernorm` / `model.norm`. Our RoPE rotates channel
pairs (i, i + D/2), the "rotate half" layout of Hugging Face's Llama, so q and k need no
permutation. Hugging Face's Llama has dropout on the attention weights only, so a model
trained with dropout computes the same function in eval mode, not in training.

After export the logits agree with ours to float32 rounding, `hf_model(ids,
labels=ids).loss` equals our loss, and `save_pretrained` writes a directory that
`AutoModelForCausalLM` loads offline (transformers 4.45 to 5.x: see `save_hf`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from course.errors import ConfigError
from course.model import ARCHS, GPT, LAYER_NORM_EPS, GPTConfig

__all__ = ["to_hf", "from_hf", "to_hf_gpt2", "from_hf_gpt2", "to_hf_llama", "from_hf_llama",
           "hf_gpt2_config", "hf_llama_config", "hf_family", "save_hf", "CONV1D_SUFFIXES"]

# Parameters stored transposed by GPT-2's Conv1D.
CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")

# Activation names in transformers that are the tanh approximation of GELU (ours).
_TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh")


def _is_conv1d(name: str) -> bool:
    return name.endswith(CONV1D_SUFFIXES)


def hf_gpt2_config(config: GPTConfig) -> GPT2Config:
    """The `transformers.GPT2Config` of GPT-2's block with `config`'s sizes: tanh GELU
    (`gelu_new`), our LayerNorm epsilon, dropout, tied embeddings and initialisation, so
    `GPT2LMHeadModel` of it has exactly `GPT(config)`'s parameters, one to one. A config
    that GPT-2 cannot express (no biases, Llama's block, ...) is a ConfigError naming why."""
    if not isinstance(config, GPTConfig):
        raise ConfigError(f"expected a GPTConfig, got {type(config).__name__}")
    others = _differences(config, "gpt2")
    if others:
        raise ConfigError("GPT2LMHeadModel cannot express " + "; ".join(others) + (
            ". This is Llama's block: export it with to_hf, as a Llama (hf_model_for makes the "
            "matching LlamaForCausalLM to train)" if not _differences(config, "llama") else ""))
    return GPT2Config(
        vocab_size=config.vocab_size,
        n_positions=config.block_size,
        n_ctx=config.block_size,  # older name of n_positions, kept for old readers
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        n_inner=4 * config.n_embd,
        activation_function="gelu_new",  # tanh-approximated GELU, = nn.GELU(approximate="tanh")
        layer_norm_epsilon=LAYER_NORM_EPS,
        resid_pdrop=config.dropout,
        embd_pdrop=config.dropout,
        attn_pdrop=config.dropout,
        scale_attn_weights=True,  # scores / sqrt(D), as ours
        initializer_range=0.02,  # N(0, 0.02), c_proj scaled by 1/sqrt(2·n_layer): as ours
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=None,  # GPT-2's 50256 would lie outside a small vocabulary
    )


def to_hf_gpt2(model: GPT) -> GPT2LMHeadModel:
    """A `GPT2LMHeadModel` computing the same function as `model` (on CPU, float32, eval mode).

    Needs `bias=True`: GPT-2 always has biases in its projections and LayerNorms.
    Dropout probabilities are carried over. `bos_token_id` / `eos_token_id` are left
    unset (GPT-2's default 50256 is usually outside our vocabulary); set them from the
    tokenizer before saving if you want `generate` to stop at EOS.
    """
    if not isinstance(model, GPT):
        raise ConfigError(f"to_hf_gpt2 expects a course.model.GPT, got {type(model).__name__}")
    hf_config = hf_gpt2_config(model.config)
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


# --------------------------------------------------------------------------- which class
def _differences(c: GPTConfig, family: str) -> list[str]:
    """The settings of `c` that the Hugging Face class of `family` cannot express."""
    want = dict(ARCHS[family])
    if family == "llama":
        want.pop("bias")  # Llama has attention_bias / mlp_bias
        want.pop("tie_embeddings")  # and tie_word_embeddings
    diffs = [f"{k}={getattr(c, k)!r} (needs {v!r}" + (
        ": GPT-2 has biases in every Linear and LayerNorm, build it with bias=True" if k == "bias" else "")
        + ")" for k, v in want.items() if getattr(c, k) != v]
    if family == "gpt2":
        if c.n_kv_head != c.n_head:
            diffs.append(f"n_kv_head={c.n_kv_head} (GPT-2 has one key/value head per query head, "
                         f"n_kv_head = n_head = {c.n_head})")
        if c.mlp_hidden != 4 * c.n_embd:
            diffs.append(f"mlp_hidden={c.mlp_hidden} (needs 4 * n_embd = {4 * c.n_embd})")
    return diffs


def hf_family(config: GPTConfig) -> str:
    """"gpt2" or "llama": the Hugging Face class that computes `GPT(config)`; a ConfigError
    naming the settings when neither does (e.g. an ablation that mixes the two blocks)."""
    if not isinstance(config, GPTConfig):
        raise ConfigError(f"expected a GPTConfig, got {type(config).__name__}")
    gpt2, llama = _differences(config, "gpt2"), _differences(config, "llama")
    if not gpt2:
        return "gpt2"
    if not llama:
        return "llama"
    raise ConfigError(
        "this model mixes GPT-2's and Llama's blocks, which no Hugging Face class computes: as a "
        f"GPT-2 it has {'; '.join(gpt2)}; as a Llama it has {'; '.join(llama)}. Export a model "
        "built with arch='gpt2' or arch='llama' (n_kv_head, bias and tie_embeddings may vary for a llama)")


def to_hf(model: GPT) -> Any:
    """`GPT2LMHeadModel` or `LlamaForCausalLM` computing the same function as `model` (eval, CPU)."""
    if not isinstance(model, GPT):
        raise ConfigError(f"to_hf expects a course.model.GPT, got {type(model).__name__}")
    return to_hf_gpt2(model) if hf_family(model.config) == "gpt2" else to_hf_llama(model)


def from_hf(hf_model: Any) -> GPT:
    """Our `GPT` from a `GPT2LMHeadModel` or a `LlamaForCausalLM` (the inverse of `to_hf`)."""
    from transformers import LlamaForCausalLM

    if isinstance(hf_model, LlamaForCausalLM):
        return from_hf_llama(hf_model)
    if isinstance(hf_model, GPT2LMHeadModel):
        return from_hf_gpt2(hf_model)
    raise ConfigError(f"from_hf expects a GPT2LMHeadModel or a LlamaForCausalLM, got {type(hf_model).__name__}")


# --------------------------------------------------------------------------- Llama
def hf_llama_config(config: GPTConfig) -> Any:
    """The `transformers.LlamaConfig` of the same architecture as `GPT(config)` (a llama).

    Only keys that transformers 4.45 (our floor) and 5.x both read are used; 5.x turns
    `rope_theta` into its `rope_parameters`.
    """
    from transformers import LlamaConfig

    if hf_family(config) != "llama":
        raise ConfigError("hf_llama_config needs a model with Llama's block (arch='llama'); this one is "
                          "GPT-2's: use the GPT-2 export")
    return LlamaConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.n_embd,
        intermediate_size=config.mlp_hidden,
        num_hidden_layers=config.n_layer,
        num_attention_heads=config.n_head,
        num_key_value_heads=config.n_kv_head,
        hidden_act="silu",
        max_position_embeddings=config.block_size,
        rms_norm_eps=LAYER_NORM_EPS,
        rope_theta=config.rope_theta,
        tie_word_embeddings=config.tie_embeddings,
        attention_bias=config.bias,
        mlp_bias=config.bias,
        attention_dropout=config.dropout,
        initializer_range=0.02,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )


def _rope_theta(h: Any) -> tuple[float, str | None]:
    """(rope_theta, rope type or None for plain RoPE) of a LlamaConfig of transformers 4 or 5."""
    params = getattr(h, "rope_parameters", None)  # transformers >= 5
    if isinstance(params, dict) and "rope_theta" in params:
        kind = params.get("rope_type", "default")
        return float(params["rope_theta"]), None if kind == "default" else kind
    scaling = getattr(h, "rope_scaling", None)  # transformers 4.x
    kind = None
    if isinstance(scaling, dict):
        kind = scaling.get("rope_type", scaling.get("type", "default"))
        kind = None if kind == "default" else kind
    return float(h.rope_theta), kind


def _llama_names(c: GPTConfig) -> list[tuple[str, str, slice | None]]:
    """(our name, Hugging Face name, rows of ours that it is) for every Llama tensor."""
    C, GD, hid = c.n_embd, c.n_kv_head * c.head_dim, c.mlp_hidden
    names: list[tuple[str, str, slice | None]] = [("transformer.wte.weight", "model.embed_tokens.weight", None)]
    kinds = ("weight", "bias") if c.bias else ("weight",)
    for i in range(c.n_layer):
        ours, theirs = f"transformer.h.{i}.", f"model.layers.{i}."
        names += [(ours + "ln_1.weight", theirs + "input_layernorm.weight", None),
                  (ours + "ln_2.weight", theirs + "post_attention_layernorm.weight", None)]
        for kind in kinds:
            names += [
                (ours + f"attn.c_attn.{kind}", theirs + f"self_attn.q_proj.{kind}", slice(0, C)),
                (ours + f"attn.c_attn.{kind}", theirs + f"self_attn.k_proj.{kind}", slice(C, C + GD)),
                (ours + f"attn.c_attn.{kind}", theirs + f"self_attn.v_proj.{kind}", slice(C + GD, C + 2 * GD)),
                (ours + f"attn.c_proj.{kind}", theirs + f"self_attn.o_proj.{kind}", None),
                (ours + f"mlp.c_fc.{kind}", theirs + f"mlp.gate_proj.{kind}", slice(0, hid)),
                (ours + f"mlp.c_fc.{kind}", theirs + f"mlp.up_proj.{kind}", slice(hid, 2 * hid)),
                (ours + f"mlp.c_proj.{kind}", theirs + f"mlp.down_proj.{kind}", None),
            ]
    names += [("transformer.ln_f.weight", "model.norm.weight", None), ("lm_head.weight", "lm_head.weight", None)]
    return names


def to_hf_llama(model: GPT) -> Any:
    """A `LlamaForCausalLM` computing the same function as `model` (CPU, float32, eval mode)."""
    from transformers import LlamaForCausalLM

    if not isinstance(model, GPT):
        raise ConfigError(f"to_hf_llama expects a course.model.GPT, got {type(model).__name__}")
    c = model.config
    hf = LlamaForCausalLM(hf_llama_config(c))
    ours = {k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()}
    theirs = hf.state_dict()
    converted = {}
    for our_name, hf_name, rows in _llama_names(c):
        w = ours[our_name] if rows is None else ours[our_name][rows]
        if hf_name not in theirs or w.shape != theirs[hf_name].shape:  # a bug, not a user error
            raise RuntimeError(f"to_hf_llama: {hf_name} missing or of another shape than our {our_name}; "
                               "is the installed transformers version compatible?")
        converted[hf_name] = w.contiguous()
    missing = sorted(set(theirs) - set(converted))
    if missing:
        raise RuntimeError(f"to_hf_llama: LlamaForCausalLM has tensors we did not fill: {missing}")
    hf.load_state_dict(converted, strict=True)
    if c.tie_embeddings:
        hf.tie_weights()  # lm_head.weight is model.embed_tokens.weight, as in our model
    return hf.eval()


def from_hf_llama(hf_model: Any) -> GPT:
    """Our `GPT` (arch="llama") with the weights of a `LlamaForCausalLM` (float32, CPU, eval).

    Accepted: plain RoPE (no scaling), SiLU gating, head_dim = hidden_size / heads, RMSNorm
    epsilon 1e-5, and biases either everywhere or nowhere; anything else is a ConfigError
    naming the setting.
    """
    from transformers import LlamaForCausalLM

    if not isinstance(hf_model, LlamaForCausalLM):
        raise ConfigError(f"from_hf_llama expects a transformers LlamaForCausalLM, got {type(hf_model).__name__}")
    h = hf_model.config
    theta, rope_kind = _rope_theta(h)
    problems = []
    if h.hidden_act != "silu":
        problems.append(f"hidden_act={h.hidden_act!r} (ours is 'silu')")
    if rope_kind is not None:
        problems.append(f"RoPE scaling {rope_kind!r} (ours is plain RoPE)")
    head_dim = getattr(h, "head_dim", None) or h.hidden_size // h.num_attention_heads
    if head_dim * h.num_attention_heads != h.hidden_size:
        problems.append(f"head_dim={head_dim} with {h.num_attention_heads} heads != hidden_size={h.hidden_size}")
    if abs(h.rms_norm_eps - LAYER_NORM_EPS) > 1e-12:
        problems.append(f"rms_norm_eps={h.rms_norm_eps} (ours is {LAYER_NORM_EPS})")
    if bool(getattr(h, "attention_bias", False)) != bool(getattr(h, "mlp_bias", False)):
        problems.append("biases in attention but not in the MLP or the reverse (ours has one bias switch)")
    if getattr(h, "pretraining_tp", 1) not in (None, 1):
        problems.append(f"pretraining_tp={h.pretraining_tp}")
    if problems:
        raise ConfigError("from_hf_llama: this Llama cannot be expressed by course.model.GPT: "
                          + "; ".join(problems))
    tied = bool(getattr(h, "tie_word_embeddings", False))
    config = GPTConfig(
        vocab_size=h.vocab_size, block_size=h.max_position_embeddings, n_layer=h.num_hidden_layers,
        n_head=h.num_attention_heads, n_embd=h.hidden_size, dropout=float(h.attention_dropout),
        arch="llama", n_kv_head=h.num_key_value_heads, mlp_hidden=h.intermediate_size,
        bias=bool(getattr(h, "attention_bias", False)), tie_embeddings=tied, rope_theta=theta,
    )
    model = GPT(config)
    theirs = {k: v.detach().to("cpu", torch.float32) for k, v in hf_model.state_dict().items()}
    if tied and "lm_head.weight" not in theirs:
        theirs["lm_head.weight"] = theirs["model.embed_tokens.weight"]
    ours = model.state_dict()
    parts: dict[str, list[torch.Tensor]] = {}
    for our_name, hf_name, _rows in _llama_names(config):
        if hf_name not in theirs:
            raise ConfigError(f"from_hf_llama: the Llama model has no tensor {hf_name!r}")
        parts.setdefault(our_name, []).append(theirs[hf_name])
    state = {}
    for name, target in ours.items():
        w = torch.cat(parts[name], dim=0)
        if w.shape != target.shape:
            raise ConfigError(f"from_hf_llama: tensor {name} would have shape {tuple(w.shape)}, expected "
                              f"{tuple(target.shape)} from the Llama config")
        state[name] = w.contiguous()
    if tied and not torch.equal(state["lm_head.weight"], state["transformer.wte.weight"]):
        raise ConfigError("from_hf_llama: tie_word_embeddings is set but lm_head differs from the embedding")
    model.load_state_dict(state, strict=True)
    return model.eval()


def save_hf(hf_model: Any, dest: str | Path) -> Path:
    """`save_pretrained(dest)`, plus what lets older transformers read a Llama saved by newer.

    transformers 5 stores RoPE's base as `rope_parameters: {rope_theta: ...}`, a key 4.x
    does not know: 4.45 would silently fall back to rope_theta 10000. The top-level
    `rope_theta` that 4.x reads is written too (5.x reads it as well and agrees).
    """
    dest = Path(dest)
    hf_model.save_pretrained(dest)
    if getattr(hf_model.config, "model_type", None) == "llama":
        path = dest / "config.json"
        cfg = json.loads(path.read_text(encoding="utf-8"))
        theta, _ = _rope_theta(hf_model.config)
        cfg.setdefault("rope_theta", theta)
        cfg.setdefault("rope_scaling", None)
        path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return dest


def check_export_destination(run_dir: str | Path, to: str | Path, *, force: bool = False) -> Path:
    """Refuse an export that could destroy something; return `to` as a Path.

    Always refused: `to` is the run directory itself, or any directory holding a
    checkpoint (a run: its config.json and model.safetensors would be replaced). Refused
    unless `force`: an existing non-empty directory. A path under a file is the OS's "Not a
    directory" error, as a plain mkdir would give.
    """
    import errno
    import os

    from course.checkpoint import CHECKPOINT_NAME

    src, dest = Path(run_dir), Path(to)
    for up in (dest, *dest.parents):  # the nearest existing ancestor must be a folder
        if up.exists():
            if not up.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(dest))
            break
    if not dest.exists():
        return dest
    if src.exists() and dest.samefile(src):
        raise ConfigError(f"--to {dest} is the run directory itself: exporting into it would replace the "
                          "run's config.json and model.safetensors; choose another --to")
    if (dest / CHECKPOINT_NAME).exists():
        raise ConfigError(f"--to {dest} holds a run ({CHECKPOINT_NAME}); an export never writes into a run "
                          "directory, --force or not; choose another --to")
    names = sorted(p.name for p in dest.iterdir())
    if names and not force:
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise ConfigError(f"--to {dest} is not empty ({shown}); exporting would replace files in it. Choose a "
                          "new or empty directory, or pass --force to export into it anyway")
    return dest
