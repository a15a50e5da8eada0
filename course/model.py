"""The GPT: a decoder-only Transformer language model, in one file.

    idx (B, T) ──wte + wpe──▶ x (B, T, C) ──[Block × n_layer]──▶ ln_f ──lm_head──▶ logits (B, T, V)

    Block:  x = x + attn(ln_1(x))     causal self-attention, H heads of size D = C / H
            x = x + mlp(ln_2(x))      Linear C→4C, GELU, Linear 4C→C

The layout is GPT-2's (pre-LayerNorm, learned absolute positions, tied input and output
embeddings) and the module names are GPT-2's too (`transformer.h.0.attn.c_attn`, ...), so
`course.export` maps our weights onto `transformer.GPT2LMHeadModel` one name at a time.

Shapes in comments: B batch, T time (query positions), S key positions (T, or the cache
length plus T when decoding with a KV cache), C = n_embd, H = n_head, D = C // H,
V = vocab_size.

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

__all__ = ["GPTConfig", "GPT", "KVCache", "ATTN_IMPLS", "LAYER_NORM_EPS"]

ATTN_IMPLS = ("sdpa", "manual")
LAYER_NORM_EPS = 1e-5  # GPT-2's layer_norm_epsilon and PyTorch's LayerNorm default
IGNORE_INDEX = -100  # label value that takes no loss (Hugging Face / F.cross_entropy convention)


# --------------------------------------------------------------------------- config
@dataclass
class GPTConfig:
    """The sizes of a GPT. Everything else (optimiser, schedule) lives in `TrainConfig`.

    `block_size` is the longest context the model can see (the number of learned
    position embeddings). `attn_impl` picks the attention code: `"sdpa"` (PyTorch's fused
    `scaled_dot_product_attention`, fast) or `"manual"` (the few lines of the lesson);
    they compute the same function, and `GPT.set_attn_impl` switches a built model.
    """

    vocab_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_embd: int
    dropout: float = 0.0
    bias: bool = True
    attn_impl: str = "sdpa"

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
        if not isinstance(self.bias, bool):
            raise ConfigError(f"GPTConfig.bias must be True or False, got {self.bias!r}")
        if self.attn_impl not in ATTN_IMPLS:
            raise ConfigError(f"GPTConfig.attn_impl must be one of {ATTN_IMPLS}, got {self.attn_impl!r}")

    @property
    def head_dim(self) -> int:
        """D, the channels per attention head."""
        return self.n_embd // self.n_head

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (saved in a run's config.json)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GPTConfig:
        """Inverse of `to_dict`; unknown or missing keys are a ConfigError naming them."""
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
    (B, H, max_len, D); `length` positions of them are filled. `GPT.forward(...,
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
        shape = (batch_size, n_head, max_len, head_dim)  # (B, H, max_len, D)
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
        """Store new (B, H, T, D) keys/values after the cached ones; return all (B, H, length+T, D).

        `length` is not advanced here: every layer writes at the same positions, and
        `GPT.forward` advances it once after the last layer.
        """
        start, end = self.length, self.length + k.size(2)
        self.k[layer][:, :, start:end] = k
        self.v[layer][:, :, start:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]


# --------------------------------------------------------------------------- modules
class CausalSelfAttention(nn.Module):
    """Multi-head self-attention with a fused q, k, v projection (`c_attn`) and `c_proj`."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        self.attn_impl = config.attn_impl
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)

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
        is set.
        """
        B, T, C = x.shape
        H, D = self.n_head, C // self.n_head
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)  # 3 × (B, T, C)
        q = q.view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        v = v.view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        if kv_cache is not None:
            k, v = kv_cache.update(layer, k, v)  # (B, H, S, D), S = cached + T
            k, v = k.to(q.dtype), v.to(q.dtype)

        probs = None
        if self.attn_impl == "manual" or return_probs:
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
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=mask is None and T > 1,
                dropout_p=self.dropout if self.training else 0.0,
            )  # (B, H, T, D)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): heads side by side again
        y = self.resid_dropout(self.c_proj(y))  # (B, T, C)
        return y, probs


class MLP(nn.Module):
    """Position-wise feed-forward net: C → 4C → C with GELU (tanh form, as GPT-2's `gelu_new`)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))  # (B, T, C)


class Block(nn.Module):
    """Pre-LayerNorm Transformer block: attention then MLP, each added to the residual stream."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=LAYER_NORM_EPS, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=LAYER_NORM_EPS, bias=config.bias)
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
    """A GPT-2-style causal language model.

    `forward(idx, labels)` returns `(logits, loss)`; the loss is the mean next-token
    cross-entropy, exactly what `GPT2LMHeadModel(input_ids, labels=labels)` computes.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise ConfigError(f"GPT needs a GPTConfig, got {type(config).__name__}; "
                              "build one with GPTConfig(...) or GPTConfig.from_dict(d)")
        self.config = replace(config)  # our own copy: set_attn_impl must not change the caller's
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),  # token embedding (V, C)
            wpe=nn.Embedding(config.block_size, config.n_embd),  # position embedding (block_size, C)
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, eps=LAYER_NORM_EPS, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # Weight tying: the output layer reuses the token embedding matrix (V, C), as in
        # GPT-2. One Parameter, two names: it is stored, counted and updated once, and the
        # gradient it receives is the sum of both uses.
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
        embeddings are left out. The token embedding stays in: tied to `lm_head`, it does a
        full matmul at the output. (Kaplan et al.'s scaling laws leave out both embeddings,
        N ≈ 12·n_layer·n_embd².)
        """
        n = sum(p.numel() for p in self.parameters())  # parameters() yields a tied tensor once
        if non_embedding:
            n -= self.transformer.wpe.weight.numel()
        return n

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs per token at context `seq_len` (default block_size).

        6·N + 12·n_layer·n_embd·seq_len, with N = `num_params()` (Kaplan et al., as in
        nanoGPT's MFU estimate). A matmul with a weight matrix costs 2 FLOPs per weight per
        token forward (multiply + add) and twice that backward (gradient w.r.t. the input
        and w.r.t. the weight): 6·N. Attention itself adds two matmuls without weights,
        q·kᵀ and att·v, each 2·seq_len·n_embd FLOPs per token per layer forward, so
        3 × 2 × 2 · n_layer · n_embd · seq_len = 12·n_layer·n_embd·seq_len.
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

        Device and dtype default to those of the model's weights.
        """
        c = self.config
        max_len = c.block_size if max_len is None else max_len
        for name, value in (("batch_size", batch_size), ("max_len", max_len)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if max_len > c.block_size:
            raise ConfigError(f"max_len ({max_len}) exceeds the model's block_size ({c.block_size}): "
                              "there are no position embeddings beyond it; pass max_len <= block_size")
        w = self.transformer.wte.weight
        return KVCache(c.n_layer, batch_size, c.n_head, max_len, c.head_dim,
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
        pos = torch.arange(past, past + T, dtype=torch.long, device=idx.device)  # (T,)
        tok_emb = self.transformer.wte(idx)  # (B, T, C)
        pos_emb = self.transformer.wpe(pos)  # (T, C), broadcast over the batch
        return self.transformer.drop(tok_emb + pos_emb)  # (B, T, C)

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
