"""The GPT: a decoder-only Transformer language model, in one file, in two architectures.

    idx (B, T) ──wte (+ wpe)──▶ x (B, T, C) ──[Block × n_layer]──▶ norm_f ──lm_head──▶ logits (B, T, V)

    Block:  x = x + attn(norm_1(x))   causal self-attention, H query heads of size D = C / H
            x = x + mlp(norm_2(x))    C → hidden → C

`arch="gpt2"` (the default) is GPT-2's block: LayerNorm, learned absolute positions
(`wpe`), a GELU MLP (C → 4C → C), biases everywhere, tied input and output embeddings.
`arch="llama"` is the block of Llama, Mistral, Qwen, OLMo: RMSNorm, rotary position
embeddings (RoPE, applied to q and k inside attention, no `wpe`), a SwiGLU MLP, no
biases, and optionally grouped-query attention (`n_kv_head` < `n_head` key/value heads,
each shared by n_head / n_kv_head query heads). The pieces are independent fields of
`GPTConfig` (`norm`, `pos`, `mlp`, `bias`, `n_kv_head`, `tie_embeddings`), so an ablation
can change one at a time; `arch` only supplies the defaults of the ones not given.

Module names are GPT-2's whatever the architecture (`transformer.h.0.attn.c_attn`, ...;
`ln_1`, `ln_2`, `ln_f` hold the RMSNorms of a llama). `course.export` maps them onto
`transformers.GPT2LMHeadModel` or `LlamaForCausalLM` one name at a time (splitting the
fused projections of a llama into q/k/v and gate/up).

Shapes in comments: B batch, T time (query positions), S key positions (T, or the cache
length plus T when decoding with a KV cache), C = n_embd, H = n_head, G = n_kv_head,
D = C // H, V = vocab_size.

Masks follow `course.masks`: boolean, True = may attend. Labels follow Hugging Face:
same shape as `idx`, -100 = no loss, and the model shifts them itself.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from course.errors import ConfigError
from course.masks import causal_mask, document_mask

__all__ = ["GPTConfig", "GPT", "KVCache", "ATTN_IMPLS", "LAYER_NORM_EPS", "ARCHS", "NORMS",
           "POSITIONS", "MLPS", "RMSNorm", "apply_rope", "rope_tables", "swiglu_hidden"]

ATTN_IMPLS = ("sdpa", "manual")
# GPT-2's layer_norm_epsilon and PyTorch's LayerNorm default; also the RMSNorm epsilon of
# our llama (Llama 2's rms_norm_eps)
LAYER_NORM_EPS = 1e-5
NORMS = ("layernorm", "rmsnorm")
POSITIONS = ("learned", "rope")  # learned absolute embeddings (wpe) or rotary (RoPE)
MLPS = ("gelu", "swiglu")
# What `arch` stands for: the defaults of the fields left unset (None).
ARCHS: dict[str, dict[str, Any]] = {
    "gpt2": dict(norm="layernorm", pos="learned", mlp="gelu", bias=True, tie_embeddings=True),
    "llama": dict(norm="rmsnorm", pos="rope", mlp="swiglu", bias=False, tie_embeddings=True),
}
# SDPA takes fewer key/value heads than query heads itself from PyTorch 2.5 on.
_SDPA_GQA = tuple(int(v) for v in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 5)
IGNORE_INDEX = -100  # label value that takes no loss (Hugging Face / F.cross_entropy convention)


# --------------------------------------------------------------------------- config
def swiglu_hidden(n_embd: int) -> int:
    """Default hidden width of a SwiGLU MLP: 2/3 of GPT-2's 4C, rounded up to a multiple of 32.

    SwiGLU has three matrices (gate, up, down) instead of two, so 2/3 · 4C keeps the
    parameter count (and FLOPs) of the GELU MLP (Shazeer 2020; Llama does the same).
    """
    return 32 * math.ceil(8 * n_embd / 3 / 32)


@dataclass
class GPTConfig:
    """The sizes and architecture of a GPT. Everything else (optimiser, schedule) lives in
    `TrainConfig`.

    `block_size` is the longest context the model can see (the number of learned
    position embeddings, or of precomputed rotary angles). `attn_impl` picks the
    attention code: `"sdpa"` (PyTorch's fused `scaled_dot_product_attention`, fast) or
    `"manual"` (the few lines of the lesson); they compute the same function, and
    `GPT.set_attn_impl` switches a built model.

    Architecture: `arch` ("gpt2" or "llama", see `ARCHS`) gives the defaults of `norm`
    ("layernorm" | "rmsnorm"), `pos` ("learned" | "rope"), `mlp` ("gelu" | "swiglu"),
    `bias` and `tie_embeddings`; any of them passed explicitly wins, so
    `GPTConfig(..., arch="gpt2", norm="rmsnorm")` is GPT-2 with one change. `n_kv_head`
    (default `n_head`) key/value heads are shared by groups of query heads (grouped-query
    attention; 1 = multi-query). `mlp_hidden` defaults to 4C for GELU and
    `swiglu_hidden(C)` for SwiGLU. `rope_theta` is RoPE's base wavelength.
    After construction every field holds its resolved value, so `to_dict` is explicit;
    for the same reason `dataclasses.replace(c, mlp="swiglu")` keeps the old `mlp_hidden`:
    build a new config to change the architecture.
    """

    vocab_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_embd: int
    dropout: float = 0.0
    bias: bool | None = None  # None: the arch's (GPT-2 True, llama False)
    attn_impl: str = "sdpa"
    arch: str = "gpt2"
    norm: str | None = None
    pos: str | None = None
    mlp: str | None = None
    n_kv_head: int | None = None
    mlp_hidden: int | None = None
    tie_embeddings: bool | None = None
    rope_theta: float = 10000.0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"GPTConfig.{name} must be an integer, got {value!r}; "
                                  "pass a whole number >= 1")
            if value < 1:
                raise ConfigError(f"GPTConfig.{name} must be >= 1, got {value}; pass a positive size")
        if self.n_embd % self.n_head != 0:
            raise ConfigError(
                f"GPTConfig.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}) so "
                f"that every head gets n_embd / n_head channels; e.g. use n_embd="
                f"{self.n_head * max(1, round(self.n_embd / self.n_head))} or another n_head")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not (
            0.0 <= self.dropout < 1.0
        ):
            raise ConfigError(f"GPTConfig.dropout must be a probability in [0, 1), got {self.dropout!r}; "
                              "0.0 turns dropout off")
        self.dropout = float(self.dropout)
        if self.attn_impl not in ATTN_IMPLS:
            raise ConfigError(f"GPTConfig.attn_impl must be one of {ATTN_IMPLS}, got {self.attn_impl!r}")
        if self.arch not in ARCHS:
            raise ConfigError(f"GPTConfig.arch must be one of {tuple(ARCHS)}, got {self.arch!r}; "
                              "the single pieces can be set with norm=, pos=, mlp=, bias=, n_kv_head=")
        for name, default in ARCHS[self.arch].items():  # unset pieces come from the arch
            if getattr(self, name) is None:
                setattr(self, name, default)
        for name in ("bias", "tie_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"GPTConfig.{name} must be True or False, got {getattr(self, name)!r}")
        for name, allowed in (("norm", NORMS), ("pos", POSITIONS), ("mlp", MLPS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"GPTConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        if isinstance(self.n_kv_head, bool) or not isinstance(self.n_kv_head, int) or self.n_kv_head < 1:
            raise ConfigError(f"GPTConfig.n_kv_head must be an integer >= 1, got {self.n_kv_head!r}")
        if self.n_head % self.n_kv_head != 0:
            ok = [g for g in range(1, self.n_head + 1) if self.n_head % g == 0]
            raise ConfigError(
                f"GPTConfig.n_kv_head ({self.n_kv_head}) must divide n_head ({self.n_head}): each "
                f"key/value head serves an equal group of n_head / n_kv_head query heads; choose "
                f"n_kv_head from {ok}")
        if self.mlp_hidden is None:
            self.mlp_hidden = 4 * self.n_embd if self.mlp == "gelu" else swiglu_hidden(self.n_embd)
        if isinstance(self.mlp_hidden, bool) or not isinstance(self.mlp_hidden, int) or self.mlp_hidden < 1:
            raise ConfigError(f"GPTConfig.mlp_hidden must be an integer >= 1, got {self.mlp_hidden!r}")
        if isinstance(self.rope_theta, bool) or not isinstance(self.rope_theta, (int, float)) or not (
            self.rope_theta > 1.0 and math.isfinite(self.rope_theta)
        ):
            raise ConfigError(f"GPTConfig.rope_theta must be a number > 1, got {self.rope_theta!r}; "
                              "10000.0 is RoPE's usual base (Llama 3 uses 500000.0)")
        self.rope_theta = float(self.rope_theta)
        if self.pos == "rope" and self.head_dim % 2 != 0:
            raise ConfigError(
                f"pos='rope' rotates pairs of channels, so head_dim = n_embd / n_head must be even, "
                f"got {self.n_embd} / {self.n_head} = {self.head_dim}; change n_embd or n_head")

    @property
    def head_dim(self) -> int:
        """D, the channels per attention head."""
        return self.n_embd // self.n_head

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (saved in a run's config.json), every field resolved."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GPTConfig:
        """Inverse of `to_dict`; unknown or missing keys are a ConfigError naming them.

        A dict from before the architecture options (no `arch`, `norm`, ... keys) gives
        the GPT-2 model it described.
        """
        if not isinstance(d, dict):
            raise ConfigError(f"a GPT config must be a dict, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown GPTConfig keys {unknown}; the known keys are {sorted(known)}")
        required = ("vocab_size", "block_size", "n_layer", "n_head", "n_embd")
        missing = [k for k in required if k not in d]
        if missing:
            raise ConfigError(f"GPTConfig is missing {missing}; a config needs all of {list(required)}")
        return cls(**d)


# --------------------------------------------------------------------------- KV cache
class KVCache:
    """Keys and values of the tokens seen so far, one preallocated buffer per layer.

    Generating token by token, the keys and values of earlier positions never change
    (causal attention: a position's hidden states depend only on its past), so each new
    token only needs its own q, k, v; the rest is read from here. Buffers have shape
    (B, G, max_len, D), G = n_kv_head key/value heads (grouped-query attention stores
    n_head / n_kv_head times less than multi-head); `length` positions are filled. `GPT.forward(...,
    kv_cache=cache)` numbers its positions from `length`, writes its keys and values
    at `length ..`, and advances `length`.
    """

    def __init__(
        self,
        n_layer: int,
        batch_size: int,
        n_head: int,
        max_len: int,
        head_dim: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        shape = (batch_size, n_head, max_len, head_dim)  # (B, G, max_len, D)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.length = 0

    @property
    def batch_size(self) -> int:
        return self.k[0].size(0)

    @property
    def max_len(self) -> int:
        return self.k[0].size(2)

    def reset(self) -> None:
        """Forget every cached position (the buffers are reused)."""
        self.length = 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store new (B, G, T, D) keys/values after the cached ones; return all (B, G, length+T, D).

        `length` is not advanced here: every layer writes at the same positions, and
        `GPT.forward` advances it once after the last layer.
        """
        start, end = self.length, self.length + k.size(2)
        self.k[layer][:, :, start:end] = k
        self.v[layer][:, :, start:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]


# --------------------------------------------------------------------------- pieces
class RMSNorm(nn.Module):
    """Root-mean-square normalisation (Zhang & Sennrich 2019), Llama's LayerNorm.

    x / sqrt(mean(x²) + eps) · weight over the last dimension: LayerNorm without
    subtracting the mean and without a bias. Computed in float32 whatever the input
    dtype, as Hugging Face's `LlamaRMSNorm` does.
    """

    def __init__(self, dim: int, eps: float = LAYER_NORM_EPS) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        if hasattr(F, "rms_norm"):  # PyTorch >= 2.4: one fused op
            h = F.rms_norm(h, (h.size(-1),), eps=self.eps)
        else:
            h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def _norm(config: GPTConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return RMSNorm(config.n_embd)
    return nn.LayerNorm(config.n_embd, eps=LAYER_NORM_EPS, bias=config.bias)


def rope_tables(head_dim: int, n_pos: int, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (n_pos, D) of RoPE's angles, float32.

    Channel pair i (channels i and i + D/2, the "rotate half" layout of Llama and
    Hugging Face) turns by angle pos · theta^(-2i/D): fast in the first pairs, slow
    in the last. Both halves repeat the same D/2 angles.
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))  # (D/2,)
    angles = torch.outer(torch.arange(n_pos, dtype=torch.float32), inv_freq)  # (n_pos, D/2)
    angles = torch.cat([angles, angles], dim=-1)  # (n_pos, D)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate every channel pair (i, i + D/2) of x (..., T, D) by its angle; cos, sin (T, D).

    The rotation is by an angle proportional to the position, so a query at m and a key
    at n score q·R(m)ᵀ R(n)·k = q·R(n - m)·k: only their distance matters.
    """
    x1, x2 = x.chunk(2, dim=-1)  # 2 × (..., T, D/2)
    rotated = torch.cat([-x2, x1], dim=-1)  # (..., T, D): the pair (a, b) becomes (-b, a)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


class Rotary(nn.Module):
    """RoPE's cos/sin tables for positions 0 .. block_size-1, applied to q or k.

    The tables are buffers that are not saved (`persistent=False`): they are a function of
    the config, so checkpoints and exports hold only learned weights.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        cos, sin = rope_tables(config.head_dim, config.block_size, config.rope_theta)
        self.register_buffer("cos", cos, persistent=False)  # (block_size, D)
        self.register_buffer("sin", sin, persistent=False)  # (block_size, D)

    def forward(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """x (B, H, T, D) at positions start .. start+T-1 -> rotated x (B, H, T, D)."""
        T = x.size(-2)
        return apply_rope(x, self.cos[start : start + T], self.sin[start : start + T])


# --------------------------------------------------------------------------- modules
class CausalSelfAttention(nn.Module):
    """Multi-head self-attention with a fused q, k, v projection (`c_attn`) and `c_proj`.

    With `n_kv_head` G < H (grouped-query attention) `c_attn` makes H query heads but only
    G key and value heads; query head h reads key/value head h // (H / G). With
    `pos="rope"` q and k are rotated by their positions before the scores (and keys
    enter the KV cache rotated).
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.n_kv_head = config.n_kv_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        self.attn_impl = config.attn_impl
        kv_dim = config.n_kv_head * config.head_dim
        self.c_attn = nn.Linear(config.n_embd, config.n_embd + 2 * kv_dim, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.rotary = Rotary(config) if config.pos == "rope" else None

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        kv_cache: KVCache | None = None,
        layer: int = 0,
        return_probs: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, T, C) -> (y (B, T, C), attention probabilities (B, H, T, S) or None).

        `mask` is None for plain causal attention (T == S) or for a single decoding query
        (T == 1, which sees every key), else a boolean (T, S) or (B, 1, T, S) mask.
        Probabilities are only returned (and the manual path forced) when `return_probs`
        is set. The positions of x start at the cache's length (0 without a cache).
        """
        B, T, C = x.shape
        H, G, D = self.n_head, self.n_kv_head, C // self.n_head
        q, k, v = self.c_attn(x).split([C, G * D, G * D], dim=2)  # (B, T, C), 2 × (B, T, G·D)
        q = q.view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, G, D).transpose(1, 2)  # (B, G, T, D)
        v = v.view(B, T, G, D).transpose(1, 2)  # (B, G, T, D)
        if self.rotary is not None:
            start = kv_cache.length if kv_cache is not None else 0
            q, k = self.rotary(q, start), self.rotary(k, start)
        if kv_cache is not None:
            k, v = kv_cache.update(layer, k, v)  # (B, G, S, D), S = cached + T
            k, v = k.to(q.dtype), v.to(q.dtype)

        probs = None
        gqa = G != H
        if self.attn_impl == "manual" or return_probs:
            if gqa:  # every key/value head serves H / G consecutive query heads
                k, v = k.repeat_interleave(H // G, dim=1), v.repeat_interleave(H // G, dim=1)  # (B, H, S, D)
            if mask is None and T == k.size(2):
                mask = causal_mask(T, device=x.device)  # (T, T)
            # The lesson's attention: scores, mask, softmax over the keys, weighted sum.
            att = (q @ k.transpose(-2, -1)) / math.sqrt(D)  # (B, H, T, S)
            if mask is not None:
                att = att.masked_fill(~mask, float("-inf"))  # forbidden keys get weight exp(-inf) = 0
            att = F.softmax(att, dim=-1)  # each query's weights over the keys sum to 1
            probs = att
            att = self.attn_dropout(att)
            y = att @ v  # (B, H, T, D)
        else:
            # The fused kernel. `is_causal=True` is only right when queries and keys are
            # the same positions: with a cache (S > T) PyTorch would align the triangle
            # to the top-left corner, so cached decoding passes an explicit mask instead
            # (or none at all for a single query, which may see every key).
            extra = {}
            if gqa and _SDPA_GQA:
                extra["enable_gqa"] = True  # the kernel shares the G heads itself
            elif gqa:
                k, v = k.repeat_interleave(H // G, dim=1), v.repeat_interleave(H // G, dim=1)  # (B, H, S, D)
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=mask is None and T > 1,
                dropout_p=self.dropout if self.training else 0.0, **extra,
            )  # (B, H, T, D)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): heads side by side again
        y = self.resid_dropout(self.c_proj(y))  # (B, T, C)
        return y, probs


class MLP(nn.Module):
    """Position-wise feed-forward net.

    `mlp="gelu"`: C → 4C → C with GELU (tanh form, as GPT-2's `gelu_new`).
    `mlp="swiglu"`: `c_fc` makes a gate and a value half, each `mlp_hidden` wide;
    silu(gate) · value → C (Shazeer 2020, Llama's MLP). The gate lets each hidden unit
    switch its value on and off multiplicatively, which a single GELU cannot.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.kind = config.mlp
        hidden = config.mlp_hidden
        n_fc = 2 * hidden if self.kind == "swiglu" else hidden  # swiglu: [gate; up] fused
        self.c_fc = nn.Linear(config.n_embd, n_fc, bias=config.bias)
        if self.kind == "gelu":
            self.gelu = nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "swiglu":
            gate, up = self.c_fc(x).chunk(2, dim=-1)  # 2 × (B, T, hidden)
            return self.dropout(self.c_proj(F.silu(gate) * up))  # (B, T, C)
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))  # (B, T, C)


class Block(nn.Module):
    """Pre-norm Transformer block: attention then MLP, each added to the residual stream.

    `ln_1` / `ln_2` are LayerNorms (gpt2) or RMSNorms (llama).
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = _norm(config)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = _norm(config)
        self.mlp = MLP(config)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        kv_cache: KVCache | None = None,
        layer: int = 0,
        return_probs: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        a, probs = self.attn(self.ln_1(x), mask, kv_cache, layer, return_probs)
        x = x + a  # (B, T, C)
        x = x + self.mlp(self.ln_2(x))  # (B, T, C)
        return x, probs


# --------------------------------------------------------------------------- the GPT
class GPT(nn.Module):
    """A causal language model: GPT-2's block, Llama's, or anything in between (`GPTConfig`).

    `forward(idx, labels)` returns `(logits, loss)`; the loss is the mean next-token
    cross-entropy, exactly what `GPT2LMHeadModel(input_ids, labels=labels)` (or
    `LlamaForCausalLM`) computes.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise ConfigError(f"GPT needs a GPTConfig, got {type(config).__name__}; "
                              "build one with GPTConfig(...) or GPTConfig.from_dict(d)")
        self.config = replace(config)  # our own copy: set_attn_impl must not change the caller's
        parts = dict(wte=nn.Embedding(config.vocab_size, config.n_embd))  # token embedding (V, C)
        if config.pos == "learned":  # RoPE has no position table: it rotates q and k instead
            parts["wpe"] = nn.Embedding(config.block_size, config.n_embd)  # (block_size, C)
        self.transformer = nn.ModuleDict(dict(
            **parts,
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=_norm(config),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            # Weight tying: the output layer reuses the token embedding matrix (V, C), as in
            # GPT-2. One Parameter, two names: it is stored, counted and updated once, and
            # the gradient it receives is the sum of both uses.
            self.lm_head.weight = self.transformer.wte.weight

        # GPT-2 initialisation: N(0, 0.02) for every matrix, zero biases ...
        self.apply(self._init_weights)
        # ... and the projections that write into the residual stream scaled down by
        # 1/sqrt(2 * n_layer): 2 * n_layer of them are summed, so the stream's variance
        # stays O(1) however deep the model is.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    # ------------------------------------------------------------------ bookkeeping
    def set_attn_impl(self, impl: str) -> None:
        """Switch every layer to `"sdpa"` or `"manual"` attention (same function, other code)."""
        if impl not in ATTN_IMPLS:
            raise ConfigError(f"attn_impl must be one of {ATTN_IMPLS}, got {impl!r}")
        self.config.attn_impl = impl
        for block in self.transformer.h:
            block.attn.attn_impl = impl

    def num_params(self, non_embedding: bool = True) -> int:
        """Number of parameters; tied weights are counted once.

        With `non_embedding` (nanoGPT's convention, used by `flops_per_token`) the position
        embeddings are left out. The token embedding stays in when it is tied to `lm_head`:
        it then does a full matmul at the output. Untied, it is a table lookup (no FLOPs)
        and left out, while `lm_head` stays. (Kaplan et al.'s scaling laws leave out both
        embeddings, N ≈ 12·n_layer·n_embd².)
        """
        n = sum(p.numel() for p in self.parameters())  # parameters() yields a tied tensor once
        if non_embedding:
            if "wpe" in self.transformer:
                n -= self.transformer.wpe.weight.numel()
            if not self.config.tie_embeddings:
                n -= self.transformer.wte.weight.numel()
        return n

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs per token at context `seq_len` (default block_size).

        6·N + 12·n_layer·n_embd·seq_len, with N = `num_params()` (Kaplan et al., as in
        nanoGPT's MFU estimate). A matmul with a weight matrix costs 2 FLOPs per weight per
        token forward (multiply + add) and twice that backward (gradient w.r.t. the input
        and w.r.t. the weight): 6·N. Attention itself adds two matmuls without weights,
        q·kᵀ and att·v, each 2·seq_len·n_embd FLOPs per token per layer forward, so
        3 × 2 × 2 · n_layer · n_embd · seq_len = 12·n_layer·n_embd·seq_len (the same with
        grouped-query attention: every query head still scores every key).
        """
        seq_len = self.config.block_size if seq_len is None else seq_len
        if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
            raise ConfigError(f"seq_len must be a positive integer, got {seq_len!r}")
        c = self.config
        return 6 * self.num_params() + 12 * c.n_layer * c.n_embd * seq_len

    def new_kv_cache(
        self,
        batch_size: int,
        max_len: int | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> KVCache:
        """An empty cache for `batch_size` sequences of up to `max_len` (default block_size) tokens.

        It holds n_kv_head heads per layer. Device and dtype default to those of the
        model's weights.
        """
        c = self.config
        max_len = c.block_size if max_len is None else max_len
        for name, value in (("batch_size", batch_size), ("max_len", max_len)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if max_len > c.block_size:
            raise ConfigError(f"max_len ({max_len}) exceeds the model's block_size ({c.block_size}): "
                              "there are no positions beyond it; pass max_len <= block_size")
        w = self.transformer.wte.weight
        return KVCache(c.n_layer, batch_size, c.n_kv_head, max_len, c.head_dim,
                       device=w.device if device is None else device,
                       dtype=w.dtype if dtype is None else dtype)

    # ------------------------------------------------------------------ input checks
    def _check_idx(self, idx: torch.Tensor, past: int) -> None:
        c = self.config
        if not torch.is_tensor(idx):
            raise ConfigError(f"idx must be a tensor of token ids with shape (B, T), got "
                              f"{type(idx).__name__}; wrap it with torch.tensor([ids])")
        if idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == torch.bool:
            raise ConfigError(f"idx must hold integer token ids, got dtype {idx.dtype}; "
                              "convert with idx.long()")
        if idx.dim() != 2:
            raise ConfigError(f"idx must have shape (B, T), got shape {tuple(idx.shape)}; "
                              "for a single sequence add a batch dimension: idx[None]")
        B, T = idx.shape
        if B == 0 or T == 0:
            raise ConfigError(f"idx has an empty dimension (shape {tuple(idx.shape)}); "
                              "pass at least one sequence of at least one token")
        if past + T > c.block_size:
            where = f"the {past} cached positions plus {T} new ones" if past else f"T={T}"
            raise ConfigError(f"sequence too long: {where} exceed block_size={c.block_size}; "
                              f"crop the input to its last {c.block_size} tokens "
                              f"(idx[:, -{c.block_size}:]) or use a model with a larger block_size")
        if torch.compiler.is_compiling():
            # Reading values back would break the graph and stall the GPU at every step;
            # `train` checks the whole dataset once instead (`check_inputs`).
            return
        lo, hi = torch.stack(torch.aminmax(idx)).tolist()  # one read-back, not two
        if lo < 0 or hi >= c.vocab_size:
            bad = lo if lo < 0 else hi
            raise ConfigError(f"idx contains token id {bad}, outside the vocabulary [0, {c.vocab_size}); "
                              "were the ids made by a tokenizer with a larger vocabulary?")

    def check_inputs(self, idx: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        """Raise a ConfigError naming the problem if `idx` (B, T) or `labels` could not be
        fed to `forward`. `forward` runs the same checks, except the ones that read token
        values back from the device when it is being compiled; `train` calls this once on
        the whole dataset so that the compiled step need not."""
        self._check_idx(idx, 0)
        if labels is not None:
            self._check_labels(labels, idx)

    def _check_labels(self, labels: torch.Tensor, idx: torch.Tensor) -> None:
        if not torch.is_tensor(labels) or labels.dtype.is_floating_point or labels.dtype == torch.bool:
            got = labels.dtype if torch.is_tensor(labels) else type(labels).__name__
            raise ConfigError(f"labels must be an integer tensor like idx, got {got}")
        if labels.shape != idx.shape:
            raise ConfigError(
                f"labels must have the same shape as idx {tuple(idx.shape)}, got {tuple(labels.shape)}; "
                "pass the UNshifted token ids (the model shifts them), with -100 where no loss is taken")
        if torch.compiler.is_compiling():
            return  # as in _check_idx: no read-back inside a compiled graph
        V = self.config.vocab_size
        bad = (labels >= V) | ((labels < 0) & (labels != IGNORE_INDEX))
        if bool(bad.any()):
            value = int(labels[bad][0])
            raise ConfigError(f"labels contain {value}: labels must be token ids in [0, {V}) "
                              f"or {IGNORE_INDEX} (ignored)")

    def _build_mask(
        self,
        idx: torch.Tensor,
        past: int,
        attn_mask: torch.Tensor | None,
        doc_ids: torch.Tensor | None,
    ) -> torch.Tensor | None:
        """The mask every layer uses: None (plain causal), (T, S) or (B, 1, T, S) boolean."""
        B, T = idx.shape
        S = past + T
        if attn_mask is not None and doc_ids is not None:
            raise ConfigError("pass either attn_mask or doc_ids, not both; to combine them, "
                              "AND course.masks.document_mask(doc_ids) with your mask yourself")
        if attn_mask is not None:
            if not torch.is_tensor(attn_mask) or attn_mask.dtype != torch.bool:
                got = attn_mask.dtype if torch.is_tensor(attn_mask) else type(attn_mask).__name__
                raise ConfigError(f"attn_mask must be a boolean tensor (True = may attend), got {got}; "
                                  "build one with course.masks")
            if attn_mask.shape not in ((T, S), (B, T, S)):
                raise ConfigError(f"attn_mask must have shape ({T}, {S}) or ({B}, {T}, {S}) for this "
                                  f"input, got {tuple(attn_mask.shape)}")
            if not bool(attn_mask.any(dim=-1).all()):
                raise ConfigError("attn_mask has a row with no True entry: that query could attend "
                                  "to nothing and its softmax would be NaN; let every query see at "
                                  "least itself")
            mask = attn_mask.to(idx.device)
        elif doc_ids is not None:
            if past:
                raise ConfigError("doc_ids cannot be combined with kv_cache (the cache does not keep "
                                  "the document ids of past positions); pass attn_mask instead")
            if not torch.is_tensor(doc_ids) or doc_ids.shape != idx.shape:
                got = tuple(doc_ids.shape) if torch.is_tensor(doc_ids) else type(doc_ids).__name__
                raise ConfigError(f"doc_ids must have the shape of idx {tuple(idx.shape)}, got {got}")
            mask = document_mask(doc_ids.to(idx.device))  # (B, T, T)
        elif past == 0:
            return None  # plain causal: SDPA can take its is_causal fast path
        elif T == 1:
            return None  # one new query after the cache: it may see every key, nothing to mask
        else:
            # Query i is position past + i: it sees every cached key and new keys up to itself.
            mask = torch.ones(T, S, dtype=torch.bool, device=idx.device).tril(diagonal=past)  # (T, S)
        if mask.dim() == 3:
            mask = mask[:, None]  # (B, 1, T, S): one mask shared by all heads
        return mask

    def _embed(self, idx: torch.Tensor, past: int) -> torch.Tensor:
        T = idx.size(1)
        x = self.transformer.wte(idx)  # (B, T, C)
        if "wpe" in self.transformer:  # learned absolute positions; RoPE acts inside attention
            pos = torch.arange(past, past + T, dtype=torch.long, device=idx.device)  # (T,)
            x = x + self.transformer.wpe(pos)  # (T, C), broadcast over the batch
        return self.transformer.drop(x)  # (B, T, C)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        idx: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        attn_mask: torch.Tensor | None = None,
        doc_ids: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, V) for every position, and the loss when `labels` (B, T) are given.

        Attention is causal unless `attn_mask` (bool (T, T) or (B, T, T), True = may
        attend) replaces the mask, e.g. for bidirectional or prefix-LM objectives, or
        `doc_ids` (B, T) restricts it to each packed document (`masks.document_mask`).
        With `kv_cache` the positions of `idx` follow the `kv_cache.length` cached ones,
        their keys/values are appended to the cache, and queries see all cached keys.
        (With RoPE, packed documents need no position reset: a score depends only on the
        distance between query and key, and `doc_ids` hides the other documents.)

        The loss is the mean cross-entropy of logits[:, :-1] against labels[:, 1:] (the
        logit at t predicts token t+1) over labels that are not -100.
        """
        past = 0
        if kv_cache is not None:
            if not isinstance(kv_cache, KVCache):
                raise ConfigError(f"kv_cache must be a KVCache (model.new_kv_cache(B)), got "
                                  f"{type(kv_cache).__name__}")
            past = kv_cache.length
        self._check_idx(idx, past)
        if kv_cache is not None:
            B, T = idx.shape
            if kv_cache.batch_size != B:
                raise ConfigError(f"kv_cache was made for batch size {kv_cache.batch_size}, "
                                  f"but idx has {B} rows; make one with model.new_kv_cache({B})")
            if past + T > kv_cache.max_len:
                raise ConfigError(f"kv_cache is full: {past} cached + {T} new positions exceed its "
                                  f"max_len {kv_cache.max_len}; reset it or make a larger one")
        if labels is not None:
            self._check_labels(labels, idx)
        mask = self._build_mask(idx, past, attn_mask, doc_ids)

        x = self._embed(idx, past)  # (B, T, C)
        for layer, block in enumerate(self.transformer.h):
            x, _ = block(x, mask, kv_cache, layer)  # (B, T, C)
        x = self.transformer.ln_f(x)  # (B, T, C)
        logits = self.lm_head(x)  # (B, T, V)
        if kv_cache is not None:
            kv_cache.length += idx.size(1)

        loss = None
        if labels is not None:
            V = logits.size(-1)
            # Shift: the logit at position t is scored against the token at t + 1; the last
            # logit has no target in this block. Cross-entropy in float32 even under autocast.
            loss = F.cross_entropy(
                logits[:, :-1].reshape(-1, V).float(),  # (B*(T-1), V)
                labels[:, 1:].reshape(-1),  # (B*(T-1),)
                ignore_index=IGNORE_INDEX,
            )
        return logits, loss

    @torch.no_grad()
    def attention_maps(
        self,
        idx: torch.Tensor,
        *,
        attn_mask: torch.Tensor | None = None,
        doc_ids: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """Attention probabilities of every layer, a list of n_layer tensors (B, H, T, T).

        Computed with the manual path in eval mode (no dropout), whatever `attn_impl`
        says, since the fused kernel never materialises the probabilities. Entry
        [b, h, i, j] is how much query i of head h reads key j; masked keys get exactly 0.
        """
        self._check_idx(idx, 0)
        mask = self._build_mask(idx, 0, attn_mask, doc_ids)
        was_training = self.training
        self.eval()
        try:
            maps = []
            x = self._embed(idx, 0)  # (B, T, C)
            for block in self.transformer.h:
                x, probs = block(x, mask, return_probs=True)
                maps.append(probs)  # (B, H, T, T)
            return maps
        finally:
            self.train(was_training)
