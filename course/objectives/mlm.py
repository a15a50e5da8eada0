"""Masked language modelling (BERT): hide some tokens, predict them from both sides.

For a sequence `x`, choose a random set `M` of positions (15 % on average, never a special
token). Corrupt the input at those positions: 80 % become `<mask>`, 10 % a random token,
10 % stay unchanged. The model sees the corrupted sequence `x̃` with *bidirectional*
attention and is trained on the chosen positions only:

    L_MLM = -(1/|M|) Σ_{t ∈ M} log p(x_t | x̃)

Two differences with the causal LM are easy to miss:

* **No shift.** The logit at position `t` predicts the token *at* `t` (it is hidden from
  the input), not the token at `t + 1`. So `mlm_loss` compares `logits[:, t]` with
  `labels[:, t]`; the causal `GPT.forward` loss would be off by one.
* **Why 10 % random and 10 % kept.** At fine-tuning time there is no `<mask>` in the
  input. If the model only ever had to predict at `<mask>` positions, its representations
  of real tokens would not need to carry a prediction; keeping or replacing some chosen
  tokens forces it to reconsider every token it sees.

The selection follows Hugging Face's `DataCollatorForLanguageModeling(mlm=True)`: every
position is chosen independently with probability `prob` (so a sequence holds 15 % of
chosen positions on average, not exactly), then one uniform draw per chosen position
decides mask / random / keep. One deliberate difference: the random replacement is drawn
from the non-special tokens only (Hugging Face draws from the whole vocabulary), so noise
never injects `<mask>` or end-of-text.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from course.errors import ConfigError
from course.masks import bidirectional_mask
from course.objectives._common import IGNORE_INDEX, check_probability, distinct_ids

__all__ = ["MASK_TOKEN", "MaskedLM", "fill_masks", "mlm_loss", "mlm_mask"]

MASK_TOKEN = "<mask>"


def _check_ids_tensor(input_ids: object, name: str = "input_ids") -> torch.Tensor:
    if not torch.is_tensor(input_ids):
        raise ConfigError(f"{name} must be a tensor of token ids, got {type(input_ids).__name__}; "
                          "wrap it with torch.tensor(ids)")
    if input_ids.dtype.is_floating_point or input_ids.dtype.is_complex or input_ids.dtype == torch.bool:
        raise ConfigError(f"{name} must hold integer token ids, got dtype {input_ids.dtype}; "
                          "convert with .long()")
    return input_ids


def mlm_mask(
    input_ids: torch.Tensor,
    mask_id: int,
    vocab_size: int,
    *,
    prob: float = 0.15,
    generator: torch.Generator,
    special_ids: Sequence[int] = (),
    mask_frac: float = 0.8,
    random_frac: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking: `input_ids` (any shape) → `(inputs, labels)` of the same shape.

    Each position is chosen with probability `prob`, except special tokens (`special_ids`,
    and `mask_id` itself). A chosen position becomes `mask_id` with probability
    `mask_frac`, a random non-special token with probability `random_frac`, and keeps its
    token otherwise. `labels` hold the original token at chosen positions and -100
    everywhere else, so exactly the chosen positions carry a loss. Every random number
    comes from `generator` (same seed, same masks); `input_ids` is not modified.
    """
    ids = _check_ids_tensor(input_ids)
    if not isinstance(generator, torch.Generator):
        raise ConfigError(f"generator must be a torch.Generator, got {type(generator).__name__}; "
                          "pass generator=torch.Generator().manual_seed(0)")
    for name, value in (("mask_id", mask_id), ("vocab_size", vocab_size)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an int, got {value!r}")
    if not 0 <= mask_id < vocab_size:
        raise ConfigError(f"mask_id {mask_id} is outside the vocabulary [0, {vocab_size}); "
                          "add the mask token to the tokenizer's special tokens")
    prob = check_probability("prob", prob)
    mask_frac = check_probability("mask_frac", mask_frac)
    random_frac = check_probability("random_frac", random_frac)
    if mask_frac + random_frac > 1.0 + 1e-9:
        raise ConfigError(f"mask_frac + random_frac must be <= 1, got {mask_frac} + {random_frac}; "
                          "the rest of the chosen tokens is kept unchanged")
    specials = set(distinct_ids(special_ids, "special_ids")) | {mask_id}
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise ConfigError(f"input_ids hold ids outside [0, {vocab_size}); is vocab_size right?")
    ordinary = torch.tensor([i for i in range(vocab_size) if i not in specials], dtype=torch.long)
    if len(ordinary) == 0:
        raise ConfigError("every id of the vocabulary is special: there is no token to predict")

    gdev = generator.device
    shape = ids.shape
    # Three draws per position, always all three, so the masks of one position do not
    # depend on the decisions made at others (and the stream is easy to reason about).
    choose = torch.rand(shape, generator=generator, device=gdev).to(ids.device)
    how = torch.rand(shape, generator=generator, device=gdev).to(ids.device)
    pick = torch.randint(len(ordinary), shape, generator=generator, device=gdev)
    random_ids = ordinary.to(gdev)[pick].to(device=ids.device, dtype=ids.dtype)

    special = torch.isin(ids, torch.tensor(sorted(specials), device=ids.device))
    selected = (choose < prob) & ~special
    to_mask = selected & (how < mask_frac)
    to_random = selected & (how >= mask_frac) & (how < mask_frac + random_frac)

    labels = ids.masked_fill(~selected, IGNORE_INDEX)
    inputs = ids.masked_fill(to_mask, mask_id)
    inputs = torch.where(to_random, random_ids, inputs)
    return inputs, labels


def mlm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of `logits` (B, T, V) against `labels` (B, T), *without* a shift.

    Position `t` is scored against `labels[:, t]`: in a masked LM the token to predict is
    hidden at its own position. Positions labelled -100 take no loss.
    """
    if not torch.is_tensor(logits) or logits.dim() < 2:
        raise ConfigError("logits must be a tensor of shape (..., V)")
    if not torch.is_tensor(labels) or labels.shape != logits.shape[:-1]:
        got = tuple(labels.shape) if torch.is_tensor(labels) else type(labels).__name__
        raise ConfigError(f"labels must have shape {tuple(logits.shape[:-1])} (logits without "
                          f"the vocabulary axis), got {got}")
    V = logits.size(-1)
    return F.cross_entropy(logits.reshape(-1, V).float(), labels.reshape(-1), ignore_index=IGNORE_INDEX)


class MaskedLM(nn.Module):
    """A `GPT` trained as a masked language model, ready for `course.train.train`.

    `forward(idx, labels)` masks `idx` itself, with a fresh draw from its own generator at
    every call (what a data collator does per batch), runs the GPT with bidirectional
    attention and returns `(logits, mlm_loss)`. Positions whose incoming label is -100
    (padding) are never chosen. Without `labels` it returns the logits of `idx` as given
    (put `mask_id` where you want predictions) and no loss.

    The GPT itself is unchanged: `maskedlm.gpt` holds the weights. Note that
    `course.evaluate.evaluate_nll` measures next-token loss, which is not what a masked
    LM learns: train it with `val_blocks=None` and evaluate with `mlm_loss`.
    """

    def __init__(
        self,
        gpt: nn.Module,
        mask_id: int,
        *,
        prob: float = 0.15,
        special_ids: Sequence[int] = (),
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.gpt = gpt
        self.config = gpt.config  # train() reads block_size from here
        self.mask_id = mask_id
        self.prob = prob
        self.special_ids = tuple(special_ids)
        self.generator = torch.Generator().manual_seed(seed)
        # Validate the settings once, on a dummy input.
        mlm_mask(torch.zeros(1, dtype=torch.long), mask_id, gpt.config.vocab_size, prob=prob,
                 generator=torch.Generator().manual_seed(0), special_ids=self.special_ids)

    def forward(
        self, idx: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        T = idx.size(-1)
        attn = bidirectional_mask(T, device=idx.device)  # (T, T)
        if labels is None:
            logits, _ = self.gpt(idx, attn_mask=attn)
            return logits, None
        inputs, mlm_labels = mlm_mask(idx, self.mask_id, self.config.vocab_size, prob=self.prob,
                                      generator=self.generator, special_ids=self.special_ids)
        mlm_labels = mlm_labels.masked_fill(labels == IGNORE_INDEX, IGNORE_INDEX)
        logits, _ = self.gpt(inputs, attn_mask=attn)  # (B, T, V)
        return logits, mlm_loss(logits, mlm_labels)


@torch.no_grad()
def fill_masks(model: nn.Module, input_ids: torch.Tensor, mask_id: int) -> torch.Tensor:
    """Replace every `mask_id` of `input_ids` (B, T) by the model's most likely token.

    `model` is a `GPT` (run with bidirectional attention) or a `MaskedLM`. All masks are
    filled in one pass, each independently of the others' predictions (BERT-style).
    """
    ids = _check_ids_tensor(input_ids)
    if ids.dim() != 2:
        raise ConfigError(f"input_ids must have shape (B, T), got {tuple(ids.shape)}; use ids[None]")
    gpt = model.gpt if isinstance(model, MaskedLM) else model
    was_training = gpt.training
    gpt.eval()
    try:
        device = next(gpt.parameters()).device
        x = ids.to(device)
        logits, _ = gpt(x, attn_mask=bidirectional_mask(x.size(1), device=device))
    finally:
        gpt.train(was_training)
    best = logits.argmax(dim=-1)  # (B, T)
    return torch.where(x == mask_id, best, x).to(ids.device)
