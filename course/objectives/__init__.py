"""Pretraining objectives other than next-token prediction, on the same `GPT`.

Every objective here is the same Transformer trained with three things changed:

| objective | data transform | attention mask | positions with a loss |
|---|---|---|---|
| causal LM (the course's default) | none | causal | every token (after the shift) |
| masked LM (BERT) | 15 % of tokens: 80 % `<mask>`, 10 % random, 10 % kept | bidirectional | the 15 % chosen, no shift |
| span corruption (T5) | spans → one sentinel each; target = sentinel + span | bidirectional over the input, causal over the target | the target |
| prefix LM | none | bidirectional over a prefix, causal after | the suffix |
| fill-in-the-middle | `<PRE> p <SUF> s <MID> m` (reordered document) | causal | every token |
| multi-token prediction | none | causal | every token, once per head (t+1, t+2, ...) |
| contrastive (InfoNCE) | pairs of views | any | one similarity per pair |

and `continued_pretraining` starts from a trained model and goes on with another corpus,
measuring adaptation to the new domain and forgetting of the old one.

Submodules: `mlm`, `span`, `prefix`, `fim`, `multi_token`, `contrastive`, `continued`.
Special tokens these objectives need (`MASK_TOKEN`, `FIM_TOKENS`, `sentinel_tokens(n)`)
are ordinary special tokens of the course tokenizers: pass them at train time, e.g.
``CharTokenizer().train(texts, special_tokens=(EOS_TOKEN, MASK_TOKEN, *FIM_TOKENS))``.
"""

from __future__ import annotations

from course.objectives.continued import ContinuedResult, continued_pretraining, mixed_blocks
from course.objectives.contrastive import hidden_states, info_nce, mean_pool
from course.objectives.fim import (
    FIM_MID,
    FIM_PRE,
    FIM_SUF,
    FIM_TOKENS,
    apply_fim,
    fim_arrange,
    fim_inverse,
    fim_transform,
)
from course.objectives.mlm import MASK_TOKEN, MaskedLM, fill_masks, mlm_loss, mlm_mask
from course.objectives.multi_token import MultiTokenGPT
from course.objectives.prefix import PrefixLMBatch, prefix_lm_batch
from course.objectives.span import (
    random_spans_mask,
    sentinel_tokens,
    span_corrupt,
    span_reconstruct,
)

__all__ = [
    "FIM_MID",
    "FIM_PRE",
    "FIM_SUF",
    "FIM_TOKENS",
    "MASK_TOKEN",
    "ContinuedResult",
    "MaskedLM",
    "MultiTokenGPT",
    "PrefixLMBatch",
    "apply_fim",
    "continued_pretraining",
    "fill_masks",
    "fim_arrange",
    "fim_inverse",
    "fim_transform",
    "hidden_states",
    "info_nce",
    "mean_pool",
    "mixed_blocks",
    "mlm_loss",
    "mlm_mask",
    "prefix_lm_batch",
    "random_spans_mask",
    "sentinel_tokens",
    "span_corrupt",
    "span_reconstruct",
]
