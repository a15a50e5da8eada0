"""Scaling laws at laptop scale: counting compute, IsoFLOP sweeps, fits, a prediction.

How big a model, trained on how many tokens, for a fixed amount of compute? The
Chinchilla paper (Hoffmann et al., 2022) answers it empirically, and this module does the
same at a scale that runs on a CPU:

* **Compute.** Training a model with N weights (that multiply activations) on D tokens
  costs about ``6·N·D`` FLOPs: 2 per weight per token forward (a multiply and an add) and
  4 backward (the gradients with respect to the input and to the weight), plus the two
  weight-free attention matmuls, ``12·n_layer·n_embd·T`` per token at context T
  (`train_flops`, equal to `GPT.flops_per_token` times D). `measure_train_flops` counts
  the same with `torch.utils.flop_counter.FlopCounterMode` on a real step.
* **IsoFLOP sweep.** For each budget C, several model sizes are each trained on
  ``D = C / flops_per_token`` tokens, with a cosine schedule that ends exactly there, and
  scored on one fixed validation set (`run_sweep`, the `course scaling sweep` command).
  The sweep shipped with the package is `SHIPPED_SWEEP` (`load_sweep()`).
* **Fits.** A parabola in log N per budget gives that budget's optimal size
  (`isoflop_optimum`); the optima across budgets follow a power law
  ``N_opt = k·C^a`` (`fit_power_law`). The parametric form
  ``L(N, D) = E + A/N^α + B/D^β`` is fitted to every run at once (`fit_parametric`, a
  Huber loss on log L minimised by L-BFGS from a grid of starts, as in the paper's
  approach 3); on the synthetic corpus its E can be compared with the exact entropy rate.
* **Prediction.** `compute_optimal` turns a fit into the best (N, D) for a budget, and
  `predict_and_check` trains that model for a budget larger than any in the sweep and
  reports the predicted and the measured loss side by side.

Every run is seeded (weights, data order) and runs on one CPU thread, so the sweep is a
deterministic function of its settings on a given machine; on another CPU, float
round-off changes the losses slightly (the lesson states the tolerance).
"""

from __future__ import annotations

import contextlib
import math
import platform
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from course.errors import ConfigError
from course.model import GPT, GPTConfig
from course.shipped import RESOURCES, load_document

__all__ = [
    "CORPORA",
    "DEFAULT_BUDGETS",
    "SHIPPED_PREDICTION",
    "SHIPPED_SWEEP",
    "SIZES",
    "ModelSize",
    "ParametricFit",
    "SweepData",
    "SweepSettings",
    "compute_optimal",
    "fit_parametric",
    "fit_power_law",
    "isoflop_optima",
    "isoflop_optimum",
    "kaplan_params",
    "load_prediction",
    "load_sweep",
    "measure_train_flops",
    "model_params",
    "plan_run",
    "predict_and_check",
    "prepare_data",
    "run_point",
    "run_sweep",
    "synthetic_entropy_rate",
    "train_flops",
]

SHIPPED_SWEEP = RESOURCES / "scaling_sweep.json"
SHIPPED_PREDICTION = RESOURCES / "scaling_prediction.json"
FORMAT = 1

#: The corpora a sweep can use: the synthetic Markov chain (its loss floor is known) and
#: the embedded Shakespeare (`load_corpus("default")`).
CORPORA = ("synthetic", "default")
#: Compute budgets of the shipped sweep, in training FLOPs (1.5 decades).
DEFAULT_BUDGETS = (1e10, 3e10, 1e11, 3e11)
#: The synthetic corpus's source: an order-2 chain over 8 characters (lesson 07's), whose
#: 64 states a small GPT learns within the sweep's budgets.
SYNTHETIC_ALPHABET = "abcdefg "


# ------------------------------------------------------------------------------ compute


def model_params(config: GPTConfig) -> int:
    """N as the course counts it: `GPT(config).num_params()`, computed from the sizes alone.

    Every weight and bias of the blocks and of the final LayerNorm, plus the token
    embedding (tied to the output layer, so it does a full matmul there and is counted
    once); the position embeddings are left out (a lookup, no matmul).
    Per block: c_attn C·3C, c_proj C·C, c_fc C·4C, mlp c_proj 4C·C = 12C² weights, plus
    biases 3C + C + 4C + C and two LayerNorms 2·2C (13C); without biases 12C² + 2C.
    """
    C, L, V = config.n_embd, config.n_layer, config.vocab_size
    per_block = 12 * C * C + (13 * C if config.bias else 2 * C)
    ln_f = 2 * C if config.bias else C
    return V * C + L * per_block + ln_f


def kaplan_params(config: GPTConfig) -> int:
    """Kaplan et al.'s N: the non-embedding parameters, ``12·n_layer·n_embd²`` up to biases.

    Neither embedding counts (the output layer, tied to the token embedding, counts with
    it). At GPT-3 scale the difference with `model_params` is a rounding error; with a
    vocabulary of 70 characters and widths of 16-128 it is not (see the lesson).
    """
    C, L = config.n_embd, config.n_layer
    per_block = 12 * C * C + (13 * C if config.bias else 2 * C)
    return L * per_block + (2 * C if config.bias else C)


def attention_flops_per_token(config: GPTConfig, seq_len: int | None = None) -> int:
    """The weight-free attention matmuls, forward + backward: ``12·n_layer·n_embd·T`` per token.

    q·kᵀ and att·v each cost 2·T·C FLOPs per token per layer forward (full T×T scores, as
    the manual attention computes them; a causal kernel could skip the upper half), and
    twice that backward: 3 × 2 × 2·T·C = 12·T·C per layer.
    """
    T = config.block_size if seq_len is None else seq_len
    return 12 * config.n_layer * config.n_embd * T


def train_flops(config: GPTConfig, tokens: int) -> int:
    """Training FLOPs for `tokens` tokens at context `config.block_size`: ``(6·N + 12·L·C·T)·D``.

    Equal to ``GPT(config).flops_per_token() * tokens`` (tested); an int, exactly.
    """
    if isinstance(tokens, bool) or not isinstance(tokens, (int, np.integer)) or tokens < 0:
        raise ConfigError(f"tokens must be a whole number >= 0, got {tokens!r}")
    return (6 * model_params(config) + attention_flops_per_token(config)) * int(tokens)


def measure_train_flops(model: GPT, batch_size: int = 4, seq_len: int | None = None,
                        seed: int = 0) -> dict[str, Any]:
    """Count the FLOPs of one forward + backward pass with `FlopCounterMode`.

    Runs `model` on a random (batch_size, seq_len) batch with itself as labels and
    backpropagates; returns ``{"total": int, "tokens": int, "per_op": {op: int}}``.
    FlopCounterMode counts matrix multiplications only (mm, addmm, bmm and the attention
    kernels it knows), 2 FLOPs per multiply-add; elementwise work (biases, LayerNorm, GELU,
    softmax, the loss) is not counted. The model's gradients are cleared afterwards.
    """
    from torch.utils.flop_counter import FlopCounterMode

    T = model.config.block_size if seq_len is None else seq_len
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    idx = torch.randint(0, model.config.vocab_size, (batch_size, T), generator=g).to(device)
    was_training = model.training
    model.train()
    counter = FlopCounterMode(display=False)
    with counter:
        _, loss = model(idx, idx)
        loss.backward()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    per_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return {"total": int(counter.get_total_flops()), "tokens": batch_size * T, "per_op": per_op}


# ------------------------------------------------------------------------------ sweep


@dataclass(frozen=True)
class ModelSize:
    """One rung of the size ladder: depth, width and heads (head size 16 or less)."""

    n_layer: int
    n_embd: int
    n_head: int

    @property
    def name(self) -> str:
        return f"L{self.n_layer}-C{self.n_embd}"

    def config(self, vocab_size: int, block_size: int) -> GPTConfig:
        return GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=self.n_layer,
                         n_head=self.n_head, n_embd=self.n_embd)


#: The size ladder: about 1 k to 0.8 M parameters, roughly ×2 apart, depth growing with
#: width as in the published ladders. The sweep trains the sizes whose tokens per
#: parameter fall inside its window at each budget.
SIZES = (
    ModelSize(1, 8, 1), ModelSize(1, 12, 2), ModelSize(1, 16, 2), ModelSize(1, 24, 2),
    ModelSize(2, 32, 2), ModelSize(2, 48, 3), ModelSize(2, 64, 4), ModelSize(3, 80, 5),
    ModelSize(3, 96, 6), ModelSize(4, 128, 8),
)


@dataclass
class SweepSettings:
    """Everything that decides a sweep's numbers (recorded in its JSON)."""

    corpus: str = "synthetic"
    budgets: tuple[float, ...] = DEFAULT_BUDGETS
    sizes: tuple[ModelSize, ...] = SIZES
    block_size: int = 64
    batch_size: int = 16
    seed: int = 0
    val_blocks: int = 128  # the fixed validation set: the first 128 blocks (8192 tokens)
    # Only runs with tokens-per-parameter in this window are trained: far outside it a run
    # is either a handful of steps or very long, and far from the optimum anyway.
    min_tokens_per_param: float = 2.0
    max_tokens_per_param: float = 3000.0
    min_steps: int = 20
    # synthetic corpus: order-2 chain over SYNTHETIC_ALPHABET, 4 M characters
    synthetic_docs: int = 2000
    synthetic_doc_chars: int = 2000
    synthetic_alphabet: str = SYNTHETIC_ALPHABET

    def __post_init__(self) -> None:
        if self.corpus not in CORPORA:
            raise ConfigError(f"corpus must be one of {CORPORA}, got {self.corpus!r}")
        budgets = tuple(float(b) for b in self.budgets)
        if not budgets or any(not (math.isfinite(b) and b > 0) for b in budgets):
            raise ConfigError(f"budgets must be positive FLOP counts such as 1e10, got {self.budgets!r}")
        self.budgets = tuple(sorted(set(budgets)))
        self.sizes = tuple(s if isinstance(s, ModelSize) else ModelSize(**s) for s in self.sizes)
        for name in ("block_size", "batch_size", "val_blocks", "min_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"SweepSettings.{name} must be a positive integer, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["budgets"] = list(self.budgets)
        d["sizes"] = [asdict(s) for s in self.sizes]
        return d


def lr_for(n_embd: int) -> float:
    """Peak learning rate for a width: 6e-3 at 64 channels, ∝ 1/sqrt(width), within [2e-3, 1e-2].

    Narrow models tolerate (and need, in few steps) larger rates; one rule for every run
    keeps the sweep free of per-run tuning.
    """
    return float(min(1e-2, max(2e-3, 6e-3 * math.sqrt(64 / n_embd))))


@dataclass
class SweepData:
    """A corpus tokenized and packed once for every run of a sweep."""

    corpus: str
    description: str
    vocab_size: int
    train: Any  # PackedBlocks (N, T)
    val: Any  # PackedBlocks (val_blocks, T): the fixed validation set
    entropy_rate: float | None  # nats per character, known for the synthetic corpus

    def info(self) -> dict[str, Any]:
        return {"corpus": self.corpus, "description": self.description,
                "vocab_size": self.vocab_size, "train_tokens": int(self.train.input_ids.numel()),
                "val_tokens": int(self.val.input_ids.numel()), "entropy_rate": self.entropy_rate}


def synthetic_entropy_rate(settings: SweepSettings) -> float:
    """The exact entropy rate (nats per character) of the synthetic corpus these settings
    draw, without drawing it: the floor no model can beat on average."""
    from course.synthetic import MarkovSource

    return MarkovSource(alphabet=settings.synthetic_alphabet, order=2, seed=settings.seed).entropy_rate


def prepare_data(settings: SweepSettings) -> SweepData:
    """Load, tokenize (characters) and pack the corpus; the validation set is fixed."""
    from course.data import load_corpus
    from course.packing import pack_documents
    from course.synthetic import synthetic_corpus
    from course.tokenizer import CharTokenizer

    if settings.corpus == "synthetic":
        corpus = synthetic_corpus(settings.synthetic_docs, settings.synthetic_doc_chars,
                                  seed=settings.seed, alphabet=settings.synthetic_alphabet)
    else:
        corpus = load_corpus(settings.corpus, seed=settings.seed)
    tok = CharTokenizer().train(corpus.train + corpus.val)
    T = settings.block_size
    train = pack_documents(tok.encode_batch(corpus.train), T, tok.eos_id)
    val = pack_documents(tok.encode_batch(corpus.val), T, tok.eos_id)
    if len(val) < settings.val_blocks:
        raise ConfigError(f"the validation split has {len(val)} blocks of {T} tokens, fewer than "
                          f"val_blocks={settings.val_blocks}; lower val_blocks or block_size")
    from course.packing import PackedBlocks

    n = settings.val_blocks
    val = PackedBlocks(val.input_ids[:n].clone(), val.labels[:n].clone(), val.doc_ids[:n].clone(),
                       block_size=T)
    return SweepData(corpus.name, corpus.source, tok.vocab_size, train, val, corpus.entropy_rate)


@dataclass(frozen=True)
class RunPlan:
    """One run of a sweep: a size at a budget, with its step count and exact FLOPs."""

    budget: float
    size: ModelSize
    steps: int
    tokens: int
    flops: int
    params: int
    lr: float

    @property
    def tokens_per_param(self) -> float:
        return self.tokens / self.params


def plan_run(budget: float, size: ModelSize, vocab_size: int, settings: SweepSettings) -> RunPlan:
    """Steps (rounded to the nearest whole step) so that the run costs about `budget` FLOPs."""
    cfg = size.config(vocab_size, settings.block_size)
    per_step = settings.batch_size * settings.block_size
    steps = max(1, round(budget / train_flops(cfg, per_step)))
    tokens = steps * per_step
    return RunPlan(budget, size, steps, tokens, train_flops(cfg, tokens), model_params(cfg),
                   lr_for(size.n_embd))


def planned_runs(settings: SweepSettings, vocab_size: int) -> list[RunPlan]:
    """Every (budget, size) inside the tokens-per-parameter window, cheapest budget first."""
    plans = []
    for budget in settings.budgets:
        for size in settings.sizes:
            p = plan_run(budget, size, vocab_size, settings)
            if (settings.min_tokens_per_param <= p.tokens_per_param <= settings.max_tokens_per_param
                    and p.steps >= settings.min_steps):
                plans.append(p)
    return plans


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_point(data: SweepData, plan: RunPlan, settings: SweepSettings) -> dict[str, Any]:
    """Train one model of the sweep with `course.train.train` and return its record.

    Seeded weights and data order, warmup over 10 % of the steps then a cosine that ends
    at the last step (a schedule cut short would understate what the budget buys), one
    CPU thread. The validation loss is the mean NLL over the fixed validation blocks.
    """
    from course.train import TrainConfig, train

    cfg = plan.size.config(data.vocab_size, settings.block_size)
    tcfg = TrainConfig(max_steps=plan.steps, batch_size=settings.batch_size, lr=plan.lr,
                       warmup_steps=max(1, plan.steps // 10), eval_interval=plan.steps,
                       eval_batches=math.ceil(len(data.val) / settings.batch_size),
                       device="cpu", compile=False, seed=settings.seed)
    t0 = time.perf_counter()
    with _threads(1):
        torch.manual_seed(settings.seed)
        model = GPT(cfg)
        result = train(model, data.train, data.val, tcfg, progress=False)
    wall = time.perf_counter() - t0
    return {
        "corpus": data.corpus, "budget": plan.budget, "name": plan.size.name,
        "n_layer": cfg.n_layer, "n_embd": cfg.n_embd, "n_head": cfg.n_head,
        "block_size": cfg.block_size, "vocab_size": cfg.vocab_size,
        "batch_size": settings.batch_size, "lr": plan.lr, "steps": plan.steps,
        "params": plan.params, "params_non_embedding": kaplan_params(cfg),
        "params_total": sum(p.numel() for p in model.parameters()),
        "tokens": plan.tokens, "flops": plan.flops, "tokens_per_param": plan.tokens_per_param,
        "val_loss": float(result.final_val_loss), "train_loss": float(result.final_train_loss),
        "wall_s": round(wall, 2), "seed": settings.seed,
    }


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        course_version = version("course")
    except PackageNotFoundError:
        course_version = "unknown"
    return {"course": course_version, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "machine": platform.machine()}


def run_sweep(settings_list: Sequence[SweepSettings], *, command: str = "",
              progress: bool = True, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every planned point of every settings (one per corpus); return the JSON document."""
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    doc: dict[str, Any] = {"format": FORMAT, "command": command, "versions": _versions(),
                           "corpora": {}, "runs": []}
    for settings in settings_list:
        data = prepare_data(settings)
        plans = planned_runs(settings, data.vocab_size)
        doc["corpora"][settings.corpus] = {**data.info(), "settings": settings.to_dict()}
        for plan in tqdm(plans, desc=f"sweep {settings.corpus}", disable=not progress):
            record = run_point(data, plan, settings)
            doc["runs"].append(record)
            if log is not None:
                log(f"{settings.corpus} C={plan.budget:.0e} {plan.size.name} N={plan.params:,} "
                    f"D={plan.tokens:,} loss={record['val_loss']:.4f} ({record['wall_s']:.1f} s)")
    doc["wall_s"] = round(time.perf_counter() - t0, 1)
    return doc


def settings_from_doc(doc: Mapping[str, Any], corpus: str) -> SweepSettings:
    """The settings a sweep document recorded for `corpus` (to re-run its points)."""
    if corpus not in doc.get("corpora", {}):
        raise ConfigError(f"the sweep has no runs on corpus {corpus!r}; it has "
                          f"{sorted(doc.get('corpora', {}))}")
    s = dict(doc["corpora"][corpus]["settings"])
    s["budgets"] = tuple(s["budgets"])
    s["sizes"] = tuple(ModelSize(**x) for x in s["sizes"])
    return SweepSettings(**s)


def load_sweep(path: str | Path | None = None) -> dict[str, Any]:
    """A sweep document (default: the one shipped with the package)."""
    return load_document(SHIPPED_SWEEP if path is None else path, what="sweep", key="runs",
                         command="course scaling sweep", fmt=FORMAT)


def load_prediction(path: str | Path | None = None) -> dict[str, Any]:
    """A `course scaling predict-check` document (default: the one shipped with the package)."""
    return load_document(SHIPPED_PREDICTION if path is None else path, what="prediction", key="checks",
                         command="course scaling predict-check", fmt=FORMAT)


def runs_of(doc: Mapping[str, Any], corpus: str) -> list[dict[str, Any]]:
    runs = [r for r in doc["runs"] if r["corpus"] == corpus]
    if not runs:
        raise ConfigError(f"the sweep has no runs on corpus {corpus!r}")
    return runs


# ------------------------------------------------------------------------------ fits


def fit_power_law(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """(k, a) with y ≈ k·x^a: a straight line through (ln x, ln y) by least squares."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(xs) < 2 or len(xs) != len(ys) or not ((xs > 0).all() and (ys > 0).all()):
        raise ConfigError("fit_power_law needs at least 2 pairs of positive numbers of equal length")
    lx, ly = np.log(xs), np.log(ys)
    a, ln_k = np.polyfit(lx, ly, 1)
    return float(math.exp(ln_k)), float(a)


def isoflop_optimum(n_params: Sequence[float], losses: Sequence[float]) -> tuple[float, float]:
    """(N_opt, L_opt): the vertex of the parabola L = a·(ln N)² + b·ln N + c fitted to the points.

    Raises ConfigError with fewer than 3 points or a parabola that opens downwards (no
    minimum: the budget's sizes do not bracket its optimum).
    """
    x, y = np.log(np.asarray(n_params, dtype=float)), np.asarray(losses, dtype=float)
    if len(x) < 3 or len(x) != len(y):
        raise ConfigError(f"an IsoFLOP parabola needs at least 3 (N, loss) points, got {len(x)}")
    a, b, c = np.polyfit(x, y, 2)
    if not a > 0:
        raise ConfigError("the IsoFLOP parabola opens downwards: these sizes do not bracket the "
                          "optimum; add smaller and larger models for this budget")
    x0 = -b / (2 * a)
    return float(math.exp(x0)), float(c - b * b / (4 * a))


def isoflop_optima(runs: Sequence[Mapping[str, Any]], min_points: int = 3) -> list[dict[str, Any]]:
    """Per budget: the parabola's optimum (N, D, loss), when the points bracket a minimum.

    D at the optimum is read off the budget, D = C / (6·N_opt), as in the parametric law's
    C = 6·N·D. Budgets whose parabola opens downwards or has its vertex outside the trained
    sizes are skipped: the minimum is not bracketed, the vertex would be an extrapolation.
    """
    out = []
    for budget in sorted({r["budget"] for r in runs}):
        pts = sorted((r for r in runs if r["budget"] == budget), key=lambda r: r["params"])
        if len(pts) < min_points:
            continue
        n = [p["params"] for p in pts]
        try:
            n_opt, l_opt = isoflop_optimum(n, [p["val_loss"] for p in pts])
        except ConfigError:
            continue
        if not n[0] <= n_opt <= n[-1]:
            continue
        flops = float(np.mean([p["flops"] for p in pts]))
        out.append({"budget": budget, "flops": flops, "n_opt": n_opt, "loss_opt": l_opt,
                    "d_opt": flops / (6 * n_opt), "points": len(pts)})
    return out


@dataclass
class ParametricFit:
    """L(N, D) = E + A / N^alpha + B / D^beta, with N in parameters and D in tokens."""

    E: float
    A: float
    alpha: float
    B: float
    beta: float
    huber_delta: float = 1e-3
    objective: float = float("nan")
    n_points: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def loss(self, n: Any, d: Any) -> Any:
        n, d = np.asarray(n, dtype=float), np.asarray(d, dtype=float)
        return self.E + self.A / n**self.alpha + self.B / d**self.beta

    def as_dict(self) -> dict[str, float]:
        return {"E": self.E, "A": self.A, "alpha": self.alpha, "B": self.B, "beta": self.beta}


def _huber(r: torch.Tensor, delta: float) -> torch.Tensor:
    a = r.abs()
    return torch.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def _grid_starts(lnN: np.ndarray, lnD: np.ndarray, L: np.ndarray, alphas: np.ndarray,
                 betas: np.ndarray, keep: int, e_fixed: float | None = None
                 ) -> list[tuple[float, float, float, float, float]]:
    """For every (α, β) of the grid, E, A, B by linear least squares (E = `e_fixed` when
    given); the `keep` best fits with E, A, B all positive, as (ln E, ln A, ln B, α, β)."""
    xa = np.exp(-alphas[:, None] * lnN[None, :])  # (na, n): N^-α
    xb = np.exp(-betas[:, None] * lnD[None, :])  # (nb, n): D^-β
    na, nb, n = len(alphas), len(betas), len(L)
    k = 2 if e_fixed is not None else 3
    target = L - e_fixed if e_fixed is not None else L
    X = np.empty((na, nb, n, k))
    if e_fixed is None:
        X[..., 0] = 1.0
    X[..., k - 2] = xa[:, None, :]
    X[..., k - 1] = xb[None, :, :]
    scale = np.linalg.norm(X, axis=2, keepdims=True)  # (na, nb, 1, k): columns of unit norm
    Xs = X / scale
    coef_s = np.linalg.solve(Xs.transpose(0, 1, 3, 2) @ Xs + 1e-12 * np.eye(k),
                             Xs.transpose(0, 1, 3, 2) @ target[:, None])[..., 0]  # (na, nb, k)
    coef = coef_s / scale[:, :, 0, :]
    sse = (((X @ coef[..., None])[..., 0] - target) ** 2).sum(axis=-1)  # (na, nb)
    sse[~(coef > 0).all(axis=-1)] = np.inf
    order = np.argsort(sse, axis=None)[:keep]
    starts = []
    for flat in order:
        i, j = np.unravel_index(flat, sse.shape)
        if not np.isfinite(sse[i, j]):
            break
        E = e_fixed if e_fixed is not None else coef[i, j, 0]
        A, B = coef[i, j, k - 2], coef[i, j, k - 1]
        starts.append((math.log(E), math.log(A), math.log(B), float(alphas[i]), float(betas[j])))
    return starts


def fit_parametric(n: Sequence[float], d: Sequence[float], loss: Sequence[float], *,
                   huber_delta: float = 1e-3, e_fixed: float | None = None) -> ParametricFit:
    """Fit L(N, D) = E + A/N^α + B/D^β to runs, in the spirit of Chinchilla's approach 3.

    Two stages. A grid over (α, β) in [0.05, 1.5]², with E, A, B by linear least squares
    at each grid point (the model is linear in them), finds good starting points cheaply.
    From the best few, L-BFGS (float64) refines all five parameters, written as
    (ln E, ln A, ln B, α, β) so E, A, B stay positive, minimising a Huber loss of
    ln L̂ − ln L (robust to a stray run). The best refined fit wins. `e_fixed` holds E at
    a known value (the entropy rate of a synthetic source) and fits the other four.
    """
    Nn, Dn, Ln = (np.asarray(v, dtype=float) for v in (n, d, loss))
    if not (len(Nn) == len(Dn) == len(Ln)) or len(Nn) < 5:
        raise ConfigError(f"the parametric fit has 5 parameters and needs at least 5 runs, "
                          f"got {len(Nn)}")
    if not ((Nn > 0).all() and (Dn > 0).all() and (Ln > 0).all()):
        raise ConfigError("N, D and the losses must all be positive")
    if e_fixed is not None and not 0 < e_fixed < Ln.min():
        raise ConfigError(f"e_fixed must be positive and below every loss ({Ln.min():.4g}), got "
                          f"{e_fixed!r}")
    grid = np.linspace(0.05, 1.5, 59)
    starts = _grid_starts(np.log(Nn), np.log(Dn), Ln, grid, grid, keep=3, e_fixed=e_fixed)
    if not starts:
        raise ConfigError("no (α, β) of the grid gives positive E, A and B: the losses do not "
                          "fall with N and D as L = E + A/N^α + B/D^β would")
    lnN, lnD, lnL = (torch.as_tensor(np.log(v), dtype=torch.float64) for v in (Nn, Dn, Ln))
    free = slice(1, 5) if e_fixed is not None else slice(0, 5)

    def objective(q: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        p = torch.cat([start[:1], q]) if e_fixed is not None else q
        e, a, b, alpha, beta = p
        pred = torch.logsumexp(torch.stack([e.expand_as(lnN), a - alpha * lnN,
                                            b - beta * lnD]), dim=0)
        return _huber(pred - lnL, huber_delta).sum()

    best: tuple[float, torch.Tensor] | None = None
    for start in starts:
        s0 = torch.tensor(start, dtype=torch.float64)
        q = s0[free].clone().requires_grad_(True)
        opt = torch.optim.LBFGS([q], lr=1.0, max_iter=150, tolerance_grad=1e-12,
                                tolerance_change=1e-15, line_search_fn="strong_wolfe")

        def closure(q: torch.Tensor = q, opt: Any = opt, s0: torch.Tensor = s0) -> torch.Tensor:
            opt.zero_grad()
            value = objective(q, s0)
            value.backward()
            return value

        with contextlib.suppress(RuntimeError):
            # One step is max_iter evaluations. Where it stops in the flat valleys of these
            # fits (B and β trade off when D spans a decade or two) depends on float
            # rounding, which differs between CPUs (AVX-512 or not): so restart it until the
            # objective stops falling, and every machine reaches the same minimum.
            last = math.inf
            for _ in range(50):
                value = opt.step(closure).detach().item()  # the objective where this step began
                if not value < last:
                    break
                last = value
        with torch.no_grad():
            for cand in (q.detach().clone(), s0[free].clone()):
                value = float(objective(cand, s0))
                full = torch.cat([s0[:1], cand]) if e_fixed is not None else cand
                if math.isfinite(value) and (best is None or value < best[0]):
                    best = (value, full)
    assert best is not None  # the unrefined starts are finite
    value, p = best
    e, a, b, alpha, beta = (float(v) for v in p)
    return ParametricFit(math.exp(e), math.exp(a), alpha, math.exp(b), beta,
                         huber_delta=huber_delta, objective=value, n_points=len(Nn))


def compute_optimal(flops: float, fit: Mapping[str, float]) -> tuple[float, float]:
    """(N_opt, D_opt) minimising L(N, D) = E + A/N^α + B/D^β subject to 6·N·D = flops.

    Setting the derivative of L(N, C/(6N)) to zero gives α·A/N^α = β·B/D^β, whose solution
    is N_opt = G·(C/6)^(β/(α+β)), D_opt = (C/6)/N_opt with G = (α·A / (β·B))^(1/(α+β)).
    """
    A, alpha, B, beta = fit["A"], fit["alpha"], fit["B"], fit["beta"]
    if not flops > 0:
        raise ConfigError(f"flops must be positive, got {flops!r}")
    G = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
    n_opt = G * (flops / 6) ** (beta / (alpha + beta))
    return float(n_opt), float(flops / 6 / n_opt)


# ------------------------------------------------------------------------------ prediction


def nearest_size(n_target: float, vocab_size: int, block_size: int,
                 sizes: Sequence[ModelSize] = SIZES) -> ModelSize:
    """The ladder's size whose N is closest to `n_target` in log space."""
    return min(sizes, key=lambda s: abs(math.log(model_params(s.config(vocab_size, block_size))
                                                 / n_target)))


def predict_and_check(doc: Mapping[str, Any], corpus: str, factor: float = 5.0, *,
                      train_it: bool = True, log: Callable[[str], None] | None = None
                      ) -> dict[str, Any]:
    """Fit the sweep, predict the best size and the loss at `factor` × its largest budget,
    then (if `train_it`) train that size at that budget and record the measured loss.

    Two predictions of N_opt: the power law through the IsoFLOP optima, and the parametric
    fit's `compute_optimal`. The trained model is the ladder size nearest the IsoFLOP
    prediction; its loss is predicted by the parametric fit at its actual (N, D).
    """
    runs = runs_of(doc, corpus)
    settings = settings_from_doc(doc, corpus)
    optima = isoflop_optima(runs)
    if len(optima) < 2:
        raise ConfigError(f"the sweep on {corpus!r} has {len(optima)} budgets with a bracketed "
                          "optimum; the power law needs at least 2")
    k, a = fit_power_law([o["flops"] for o in optima], [o["n_opt"] for o in optima])
    fit = fit_parametric([r["params"] for r in runs], [r["tokens"] for r in runs],
                         [r["val_loss"] for r in runs])
    budget = factor * max(r["budget"] for r in runs)
    vocab = doc["corpora"][corpus]["vocab_size"]
    n_isoflop = k * budget**a
    n_param, d_param = compute_optimal(budget, fit.as_dict())
    size = nearest_size(n_isoflop, vocab, settings.block_size, SIZES)
    plan = plan_run(budget, size, vocab, settings)
    out: dict[str, Any] = {
        "format": FORMAT, "corpus": corpus, "factor": factor, "budget": budget,
        "largest_sweep_budget": max(r["budget"] for r in runs),
        "power_law": {"k": k, "a": a, "optima": optima},
        "parametric": fit.as_dict(),
        "entropy_rate": doc["corpora"][corpus].get("entropy_rate"),
        "n_opt_isoflop": n_isoflop, "n_opt_parametric": n_param, "d_opt_parametric": d_param,
        "chosen": {"name": size.name, "n_layer": size.n_layer, "n_embd": size.n_embd,
                   "n_head": size.n_head, "params": plan.params, "tokens": plan.tokens,
                   "steps": plan.steps, "flops": plan.flops},
        "predicted_loss": float(fit.loss(plan.params, plan.tokens)),
        "predicted_loss_at_optimum": float(fit.loss(n_param, d_param)),
        "versions": _versions(),
    }
    floor = out["entropy_rate"]
    if floor is not None and floor < min(r["val_loss"] for r in runs):
        # With the floor known exactly (synthetic corpus), fit the other four numbers only.
        fixed = fit_parametric([r["params"] for r in runs], [r["tokens"] for r in runs],
                               [r["val_loss"] for r in runs], e_fixed=floor)
        out["parametric_known_floor"] = fixed.as_dict()
        out["predicted_loss_known_floor"] = float(fixed.loss(plan.params, plan.tokens))
    if log is not None:
        log(f"{corpus}: budget {budget:.3g} FLOPs; N_opt {n_isoflop:,.0f} (IsoFLOP power law), "
            f"{n_param:,.0f} (parametric); training {size.name} (N={plan.params:,}, "
            f"D={plan.tokens:,}); predicted loss {out['predicted_loss']:.4f}")
    if train_it:
        data = prepare_data(settings)
        record = run_point(data, plan, settings)
        out["measured"] = record
        out["measured_loss"] = record["val_loss"]
        if log is not None:
            log(f"{corpus}: measured loss {record['val_loss']:.4f} in {record['wall_s']:.0f} s")
    return out
