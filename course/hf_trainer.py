"""The production equivalent of `course.train.train`: Hugging Face's `Trainer` on our blocks.

A typical Hugging Face pretraining script is four objects:

    dataset   = datasets.Dataset of packed blocks (one row = one block of token ids)
    collator  = DataCollatorForLanguageModeling(tokenizer, mlm=False)   # labels = input_ids
    model     = GPT2LMHeadModel(GPT2Config(...))                        # from a config: no download
    trainer   = Trainer(model, TrainingArguments(...), data_collator=collator, ...)

`train_with_hf_trainer` builds exactly those from our `PackedBlocks`, `GPTConfig` and
`TrainConfig`, so the same data, model shape and optimisation settings can be trained by
both loops and compared. The mapping, setting by setting:

| `TrainConfig` / `GPTConfig`        | `TrainingArguments` / `GPT2Config`                            |
|------------------------------------|---------------------------------------------------------------|
| AdamW, `betas`, `weight_decay`, `fused_adamw` | `optim="adamw_torch"` (`"adamw_torch_fused"` where `use_fused_adamw`: on CUDA by default), `adam_beta1/2`, `weight_decay` (HF also skips biases and LayerNorms) |
| `lr`, `warmup_steps`, `min_lr_ratio` | `learning_rate`, `warmup_steps`, `lr_scheduler_type="cosine_with_min_lr"`, `min_lr_rate` |
| `grad_clip`                        | `max_grad_norm` (0 = off)                                     |
| `batch_size`, `grad_accum`         | `per_device_train_batch_size = batch_size / grad_accum`, `gradient_accumulation_steps` |
| `max_steps`, `seed`                | `max_steps`, `seed` (also seeds the model's initialisation)   |
| `eval_interval`, `eval_batches`    | `eval_strategy="steps"`, `eval_steps`, the first `eval_batches × batch_size` val blocks |
| `dtype` (bf16 autocast on CUDA)    | `bf16=True`                                                   |
| `device`                           | `use_cpu=True` when the device is not CUDA                    |
| `n_layer`, `n_head`, `n_embd`, ... | `n_layer`, `n_head`, `n_embd`, `n_positions`, `gelu_new`, tied embeddings |
| `arch="llama"`, `n_kv_head`, ...   | `LlamaForCausalLM(LlamaConfig(...))` (`course.export.hf_llama_config`) |

A `GPTConfig` with GPT-2's block trains a `GPT2LMHeadModel`; one with Llama's block
(`arch="llama"`) a `LlamaForCausalLM`, the model `course export` writes for it.

Two differences remain, documented rather than hidden:

* **Warmup convention.** Hugging Face's warmup is `lr·s/warmup_steps`: step 0 runs at
  learning rate 0. Ours is `lr·(s + 1)/warmup_steps` (`course.train.lr_at`). After warmup
  the two cosines are identical.
* **Initialisation and data order.** A fresh `GPT2LMHeadModel` draws other random weights
  than our `GPT` (same distribution), and the Trainer shuffles with its own sampler. Short
  runs therefore agree to seed noise, not bit for bit. Started from the same weights
  (`init_from=`), the two loops give the same losses step for step whenever the warmup
  conventions agree (e.g. `warmup_steps=0`) and the data order does.

Two traps the module avoids:

* `DataCollatorForLanguageModeling` needs a tokenizer with a pad token even when no
  padding is needed, and the usual fix, `pad_token = eos_token`, makes the collator label
  every EOS `-100`, so the model is never taught to end a document. We add a dedicated pad
  token instead, which never occurs in packed blocks.
* From transformers 4.46 on, the Trainer divides the summed token losses of a batch by a
  token count it makes itself (`num_items_in_batch`) whenever the model's `forward` takes
  loss keyword arguments, as GPT-2's does in 4.57 and 5.x. Transformers 4.57 counts all
  B·T labels; 5.x counts the B·(T-1) shifted ones only if `model.loss_type` names a causal
  LM, and `GPT2LMHeadModel.loss_type` is None (it is derived from the class name, which
  matches no known loss). Either way the shifted loss scores B·(T-1) tokens, so every loss
  the Trainer reports, training and evaluation, and the gradient come out scaled by (T-1)/T.
  We switch that count off (`Trainer.model_accepts_loss_kwargs = False`): the model then
  returns the mean over the tokens it scores and the Trainer divides it by the
  accumulation steps, which is what our loop does (with unpadded blocks every micro-batch
  scores the same number of tokens, so this is also the mean over the whole batch). We
  also set `loss_type = "ForCausalLM"`, the loss GPT-2 computes anyway, which silences the
  warning about an unrecognised loss type.
* Transformers 4.45 logs the learning rate of the *next* step (it reads it after the
  scheduler has stepped); 4.57 and 5.x log the one the step used. The records take it
  from the optimizer at the optimizer step, the same in every version.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from course.errors import ConfigError
from course.model import GPTConfig
from course.train import TrainConfig, TrainResult, autocast_dtype, resolve_device, use_fused_adamw

__all__ = [
    "PAD_TOKEN",
    "HFTrainResult",
    "hf_gpt2_config",
    "hf_model_for",
    "blocks_to_dataset",
    "lm_collator",
    "hf_training_arguments",
    "train_with_hf_trainer",
]

PAD_TOKEN = "<|pad|>"  # a pad token of its own: never the EOS (see the module docstring)


def hf_gpt2_config(config: GPTConfig) -> Any:
    """The `transformers.GPT2Config` of the same architecture as `GPT(config)`.

    Same shapes, tanh GELU (`gelu_new`), LayerNorm epsilon, dropout and tied embeddings,
    so `GPT2LMHeadModel(hf_gpt2_config(c))` has exactly as many parameters as `GPT(c)`
    and `course.export` maps weights between them one to one. Needs `bias=True`
    (GPT-2 always has biases).
    """
    from course import export

    hf_config = export.hf_gpt2_config(config)  # a ConfigError saying why for what GPT-2 cannot express
    hf_config.use_cache = False  # training only: no KV cache
    return hf_config


def hf_model_for(config: GPTConfig) -> Any:
    """A fresh, randomly initialised Hugging Face model of `GPT(config)`'s architecture:
    `GPT2LMHeadModel` for GPT-2's block, `LlamaForCausalLM` for Llama's.

    Hugging Face's Llama has dropout on the attention weights only (none on the residual
    stream or the embeddings), so a llama with `dropout > 0` would train another model
    than ours: that is a ConfigError.
    """
    from transformers import GPT2LMHeadModel, LlamaForCausalLM

    from course.export import hf_family, hf_llama_config

    if not isinstance(config, GPTConfig):
        raise ConfigError(f"hf_model_for needs a GPTConfig, got {type(config).__name__}")
    if hf_family(config) == "gpt2":
        return GPT2LMHeadModel(hf_gpt2_config(config))
    if config.dropout:
        raise ConfigError(f"dropout={config.dropout}: Hugging Face's Llama drops attention weights only, "
                          "not the residual stream as ours does; train a llama with the Trainer at "
                          "dropout=0.0")
    hf_config = hf_llama_config(config)
    hf_config.use_cache = False  # training only: no KV cache
    return LlamaForCausalLM(hf_config)


def _check_unpadded(blocks: Any, what: str) -> None:
    if hasattr(blocks, "column_names"):  # a datasets.Dataset of blocks
        labels = torch.as_tensor(blocks.with_format("numpy", columns=["labels"])[:]["labels"])
    else:
        labels = blocks.labels
    if bool((labels == -100).any()):
        raise ConfigError(
            f"{what} contain labels of -100 (padding from tail='pad'); DataCollatorForLanguageModeling "
            "rebuilds the labels from input_ids and would score that padding. Pack with tail='drop' "
            "for the Trainer")


def blocks_to_dataset(blocks: Any) -> Any:
    """Packed blocks as a `datasets.Dataset` with the single column `input_ids`.

    `blocks` is a `PackedBlocks` (its `.to_dataset()` is used) or already a
    `datasets.Dataset` of blocks (e.g. from `course.packing.pack_with_datasets`). Labels
    and document ids are dropped on purpose: the collator makes the labels.
    """
    import datasets

    if isinstance(blocks, datasets.Dataset):
        if "input_ids" not in blocks.column_names:
            raise ConfigError(f"the dataset has no input_ids column (columns: {blocks.column_names})")
        if "labels" in blocks.column_names:
            _check_unpadded(blocks, "the dataset's rows")
        ds = blocks
    elif hasattr(blocks, "to_dataset"):
        _check_unpadded(blocks, "the blocks")
        ds = blocks.to_dataset()
    else:
        raise ConfigError(f"expected PackedBlocks or a datasets.Dataset of blocks, got {type(blocks).__name__}")
    return ds.select_columns(["input_ids"])


def lm_collator(tokenizer: Any) -> Any:
    """`DataCollatorForLanguageModeling(mlm=False)` for a course tokenizer (or an HF one).

    With `mlm=False` the collator stacks the rows and sets `labels = input_ids` (then -100
    where the input is the pad token); the model shifts them, as ours does. A tokenizer
    without a pad token gets the dedicated `PAD_TOKEN` (the tokenizer passed in is not
    modified).
    """
    from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerBase

    if isinstance(tokenizer, PreTrainedTokenizerBase):
        hf = tokenizer
    elif hasattr(tokenizer, "to_hf"):
        hf = tokenizer.to_hf()  # a fresh object each call
    else:
        raise ConfigError(f"lm_collator needs a course tokenizer or a transformers tokenizer, got "
                          f"{type(tokenizer).__name__}")
    if hf.pad_token is None:
        if hf is tokenizer:
            hf = copy.deepcopy(hf)
        hf.add_special_tokens({"pad_token": PAD_TOKEN})
    elif hf.pad_token_id == hf.eos_token_id:
        raise ConfigError("the tokenizer's pad token is its EOS token: the collator would set every EOS "
                          "label to -100 and the model would never learn to end a document; give it "
                          f"a pad token of its own, e.g. tokenizer.add_special_tokens({{'pad_token': '{PAD_TOKEN}'}})")
    return DataCollatorForLanguageModeling(tokenizer=hf, mlm=False)


def hf_training_arguments(train_config: TrainConfig, out_dir: str | Path, *,
                          progress: bool = False) -> Any:
    """`TrainingArguments` that optimise like `course.train.train(…, train_config)`."""
    from transformers import TrainingArguments

    cfg = train_config
    if cfg.doc_mask:
        raise ConfigError("doc_mask=True has no GPT2LMHeadModel equivalent; train with doc_mask=False")
    if cfg.max_seconds is not None:
        raise ConfigError("the Trainer's schedule counts steps, not seconds: set max_seconds=None and "
                          "give max_steps")
    if cfg.batch_size % cfg.grad_accum != 0:
        raise ConfigError(f"batch_size {cfg.batch_size} must be divisible by grad_accum {cfg.grad_accum} "
                          "so that every micro-batch has the same size")
    device = resolve_device(cfg.device)
    cuda = device.type == "cuda"
    bf16 = autocast_dtype(cfg, device) == torch.bfloat16
    if bf16 and not cuda:
        raise ConfigError("bf16 autocast with the Trainer needs a CUDA GPU here; use dtype='auto' or 'float32'")
    return TrainingArguments(
        output_dir=str(out_dir),
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size // cfg.grad_accum,
        gradient_accumulation_steps=cfg.grad_accum,
        per_device_eval_batch_size=cfg.batch_size,
        learning_rate=cfg.lr,
        lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": cfg.min_lr_ratio},
        warmup_steps=cfg.warmup_steps,
        optim="adamw_torch_fused" if use_fused_adamw(cfg, device) else "adamw_torch",
        adam_beta1=cfg.betas[0],
        adam_beta2=cfg.betas[1],
        adam_epsilon=1e-8,  # torch.optim.AdamW's default, which make_optimizer uses
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.grad_clip or 0.0,  # 0 turns clipping off
        bf16=bf16,
        use_cpu=not cuda,
        torch_compile=bool(cfg.compile if cfg.compile is not None else cuda),
        seed=cfg.seed,
        eval_strategy="steps",
        eval_steps=cfg.eval_interval,
        logging_strategy="steps",
        logging_steps=cfg.log_interval or (10 if cuda else 1),
        save_strategy="no",  # checkpoints: see course.train / course.checkpoint
        report_to="none",  # no wandb / tensorboard / trackio integrations
        disable_tqdm=not progress,
        dataloader_drop_last=True,  # every step a full batch, as our loop
        dataloader_num_workers=0,
    )


@dataclass
class HFTrainResult(TrainResult):
    """`TrainResult` (history records in our format) plus the trained `GPT2LMHeadModel`."""

    model: Any = None
    log_history: list[dict[str, Any]] | None = None  # the Trainer's own records, as it wrote them


def _record_maker(cfg: TrainConfig, block_tokens: int,
                  emit: Callable[[dict[str, Any]], None]) -> Any:
    """A TrainerCallback turning the Trainer's logs into `course.train` records.

    Trainer logs `loss`, `grad_norm`, `learning_rate` after a step and `eval_loss` after an
    evaluation of the same step; like our loop, one record per step carries both.
    """
    from transformers import TrainerCallback

    class ToRecords(TrainerCallback):
        def __init__(self) -> None:
            self.pending: dict[str, Any] | None = None
            self.step_lr = math.nan  # the learning rate of the latest optimizer step

        def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):  # noqa: ANN001
            # before the scheduler steps: the rate this step used (the Trainer's own log
            # reads it after the scheduler in transformers 4.45, i.e. the next step's rate)
            if optimizer is not None:
                self.step_lr = float(optimizer.param_groups[0]["lr"])

        def _is_eval_step(self, step: int) -> bool:
            return step % cfg.eval_interval == 0 or step >= cfg.max_steps

        def flush(self) -> None:
            if self.pending is not None:
                emit(self.pending)
                self.pending = None

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
            logs = logs or {}
            step = int(state.global_step)
            if "loss" in logs:
                self.flush()
                record = {"step": step, "train_loss": float(logs["loss"]),
                          "lr": self.step_lr,
                          "tokens": step * cfg.batch_size * block_tokens}
                if logs.get("grad_norm") is not None:
                    record["grad_norm"] = float(logs["grad_norm"])
                self.pending = record
                if not self._is_eval_step(step):
                    self.flush()
            elif "eval_loss" in logs:
                if self.pending is None or self.pending["step"] != step:
                    self.flush()
                    self.pending = {"step": step, "tokens": step * cfg.batch_size * block_tokens}
                self.pending["val_loss"] = float(logs["eval_loss"])
                self.flush()

        def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001
            self.flush()

    return ToRecords()


def train_with_hf_trainer(
    train_blocks: Any,
    val_blocks: Any | None,
    gpt_config: GPTConfig,
    train_config: TrainConfig,
    out_dir: str | Path,
    *,
    tokenizer: Any,
    callback: Callable[[dict[str, Any]], None] | None = None,
    progress: bool = False,
    init_from: Any | None = None,
) -> HFTrainResult:
    """Train a fresh `GPT2LMHeadModel` (or `LlamaForCausalLM`) with `transformers.Trainer`.

    `train_blocks` / `val_blocks`: `PackedBlocks` packed with `tail="drop"` (or datasets
    of blocks). `tokenizer`: the course tokenizer the blocks were made with (the collator
    needs a `PreTrainedTokenizerFast`; `.to_hf()` gives one). As in `course.train.train`,
    validation uses the first `eval_batches × batch_size` val blocks, and `callback`
    receives one record per logged step in our format ({"step", "train_loss", "lr",
    "grad_norm", "tokens"} and "val_loss" at evaluations), so `LiveLossPlot` works here
    too. `out_dir` is the Trainer's `output_dir` (nothing is saved into it by default).

    The model is a fresh `hf_model_for(gpt_config)` (GPT-2 or Llama), initialised from
    `train_config.seed`, as in a real script. With `init_from` (a `course.model.GPT` of
    the same config) it starts from that model's weights instead (`course.export`), which
    takes the luck of the initialisation out of a comparison between the two loops.
    """
    import transformers
    from transformers import PrinterCallback, Trainer

    cfg = train_config
    args = hf_training_arguments(cfg, out_dir, progress=progress)
    train_ds = blocks_to_dataset(train_blocks)
    block_tokens = len(train_ds[0]["input_ids"])
    if block_tokens > gpt_config.block_size:
        raise ConfigError(f"blocks are {block_tokens} tokens long but block_size is {gpt_config.block_size}")
    if len(train_ds) < cfg.batch_size:
        raise ConfigError(f"batch_size {cfg.batch_size} is larger than the {len(train_ds)} training blocks")
    eval_ds = None
    if val_blocks is not None:
        eval_ds = blocks_to_dataset(val_blocks)
        eval_ds = eval_ds.select(range(min(len(eval_ds), cfg.eval_batches * cfg.batch_size)))

    transformers.set_seed(cfg.seed)  # the model's random initialisation depends on it
    if init_from is None:
        model = hf_model_for(gpt_config)
    else:
        from course.export import to_hf

        theirs = getattr(init_from, "config", None)
        if theirs is None or replace(theirs, attn_impl="sdpa") != replace(gpt_config, attn_impl="sdpa"):
            raise ConfigError(f"init_from has config {theirs}, but gpt_config is {gpt_config}; "
                              "they must describe the same architecture")
        hf_model_for(gpt_config)  # the same checks as a fresh model (e.g. a llama's dropout)
        model = to_hf(init_from)
        if getattr(model.config, "use_cache", None):
            model.config.use_cache = False
    # transformers derives `loss_type` from the class name; "GPT2LMHeadModel" matches no entry
    # (None, or no attribute before 4.46). Name the loss GPT-2 computes anyway.
    model.loss_type = "ForCausalLM"

    result = HFTrainResult()

    def emit(record: dict[str, Any]) -> None:
        result.history.append(record)
        if callback is not None:
            callback(record)

    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        data_collator=lm_collator(tokenizer),
        callbacks=[_record_maker(cfg, block_tokens, emit)],
    )
    # No `num_items_in_batch`: transformers 4.57 counts all B·T labels of a batch (5.x too,
    # unless loss_type is set), but the shifted loss scores B·(T-1), so the loss and the
    # gradient would be scaled by (T-1)/T. Without the count the model returns its mean loss
    # and the Trainer divides it by the accumulation steps: our loop's loss, in every version.
    # (An attribute of the Trainer since 4.46; transformers 4.45 never counts.)
    trainer.model_accepts_loss_kwargs = False
    if not progress:  # the printer of raw log dicts: our records and callback replace it
        trainer.remove_callback(PrinterCallback)
    t0 = time.perf_counter()
    trainer.train()
    result.train_seconds = time.perf_counter() - t0  # includes evaluation, unlike ours
    result.steps = int(trainer.state.global_step)
    result.tokens = result.steps * cfg.batch_size * block_tokens
    losses = [r["train_loss"] for r in result.history if "train_loss" in r]
    result.final_train_loss = losses[-1] if losses else math.nan
    vals = [r["val_loss"] for r in result.history if "val_loss" in r]
    result.final_val_loss = vals[-1] if vals else None
    result.model = trainer.model.eval()
    result.log_history = list(trainer.state.log_history)
    return result
