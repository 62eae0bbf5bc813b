"""The training loop: windows or poem streams → Adam/SGD steps → validation each epoch → early
stopping.

Everything needed to continue lives in ``<out>/last.pt`` (weights, optimizer, epoch, the
position inside the epoch, RNG state, history); the best model by validation perplexity is
``<out>/best.pt``. Both are written atomically.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from poetry_lm.evaluation.perplexity import perplexity
from poetry_lm.model.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from poetry_lm.model.lm import ModelConfig, PoetryLM
from poetry_lm.paths import DEFAULT_CORPUS
from poetry_lm.settings import SettingError, setting
from poetry_lm.text.batching import make_streams, make_windows, stream_chunks, window_batches
from poetry_lm.text.corpus import clean_title, load_corpus, orient
from poetry_lm.text.duplicates import PUNCTUATION
from poetry_lm.text.vocab import CharTable, build_vocabulary, vocabulary_to_list
from poetry_lm.train import distributed

BATCHINGS = ("windows", "streams")
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine")
DEVICES = ("cpu", "cuda")


# the learning rate each optimizer gets unless one is given: Adam's is the shipped recipe's, SGD's
# the best of a small measured sweep (README, "Training runs to compare"); 2e-3 starves plain SGD
DEFAULT_LR = {"adam": 2e-3, "sgd": 10.0}


@dataclass
class TrainConfig:
    """A training run's settings; the defaults are the shipped model's recipe
    (``models/README.md``), so ``Trainer(TrainConfig())`` trains it again.

    Raises ``SettingError`` (a ``ValueError``) for a setting out of range or at odds with another,
    the model's settings (``model``, checked by ``ModelConfig``) included.
    """

    out_dir: str = setting(
        "runs/default", "Run folder: last.pt, best.pt, metrics.json, training.png."
    )
    corpus: str = setting(str(DEFAULT_CORPUS), "The corpus: JSON lines of poems, xz-compressed.")
    seq_len: int = setting(
        65, "Tokens per window or stream chunk (the input is the first 64, the target the last 64)."
    )
    seq_step: int = setting(32, "Stride between the windows of a long poem.")
    batching: str = setting(
        "streams",
        "windows: each poem front-padded, or cut into overlapping windows; streams: whole poems "
        "end to end, one stream per batch column, read a chunk at a time with the state carried.",
    )
    batch_size: int = setting(32, "Sequences per optimizer step (over all processes).")
    optimizer: str = setting("adam", "Adam, or SGD with momentum 0.9.")
    lr: float | None = setting(
        None, "Peak learning rate [default: 0.002 with adam, 10 with sgd (a measured sweep)]."
    )
    lr_schedule: str = setting(
        "cosine", "constant, or cosine decay to 5% over all epochs (both after the warm-up)."
    )
    warmup_steps: int = setting(200, "Steps of linear learning-rate warm-up.")
    clip: float = setting(1.0, "Maximum global gradient norm.")
    max_epochs: int = setting(9, "Most epochs to train.")
    patience: int = setting(
        2, "Stop after this many epochs without a better validation perplexity."
    )
    max_minutes: float | None = setting(
        None, "Training-time budget for the whole run, resumed sessions included."
    )
    save_every_minutes: float = setting(5.0, "Minutes between saves of last.pt within an epoch.")
    min_freq: int = setting(2, "Characters rarer than this in train become <unk>.")
    limit_poems: int | None = setting(
        None, "Use only the first N poems of each split (quick trials)."
    )
    seed: int = setting(0, "Random seed of the initial weights, the batches and dropout.")
    device: str = setting("cpu", "Where to train.")
    bf16: bool = setting(False, "bfloat16 autocast on CUDA.")
    # ModelConfig fields other than vocab_size; those left out take ModelConfig's defaults
    model: dict = field(default_factory=dict)
    # drawn afresh each epoch; the others are read without one, so one model writes either way
    title_share: float = setting(
        0.0, "Share of train poems read after their title (context, never scored)."
    )

    def __post_init__(self):
        choices = (
            ("batching", self.batching, BATCHINGS),
            ("optimizer", self.optimizer, OPTIMIZERS),
            ("lr_schedule", self.lr_schedule, SCHEDULES),
            ("device", self.device, DEVICES),
        )
        for name, value, allowed in choices:
            if value not in allowed:
                raise SettingError(f"{{{name}}} must be one of {', '.join(allowed)}, not {value!r}")
        if self.lr is None:
            self.lr = DEFAULT_LR[self.optimizer]
        if not 0 <= self.title_share <= 1:
            raise SettingError(f"{{title_share}} must be in [0, 1], not {self.title_share}")
        if self.seq_step > self.seq_len:
            raise SettingError("{seq_step} cannot exceed {seq_len}")
        if self.bf16 and self.device != "cuda":
            raise SettingError(
                "{bf16} needs {device} cuda (bfloat16 autocast is a GPU option here)"
            )
        # the model's settings are checked now, before the corpus gives the vocabulary's size
        ModelConfig(vocab_size=1, **self.model)


class SequenceLoss(nn.Module):
    """The model's summed sequence NLL as ``forward``, the call that DistributedDataParallel
    hooks into."""

    def __init__(self, model: PoetryLM, pad: int):
        super().__init__()
        self.model, self.pad = model, pad

    def forward(self, tokens: torch.Tensor, state=None):
        return self.model.sequence_nll(tokens, self.pad, state)


def adaptive_cutoffs(counts: list[int], shares=(0.80, 0.95)) -> list[int]:
    """Cluster boundaries of a frequency-sorted vocabulary: the head covers the most frequent
    tokens up to ``shares[0]`` of all train tokens, the next cluster up to ``shares[1]``."""
    cumulative = np.cumsum(counts) / sum(counts)
    cutoffs = sorted({int(np.searchsorted(cumulative, s)) + 1 for s in shares})
    return [c for c in cutoffs if 0 < c < len(counts)]


# train_loss is recorded per block of this many steps, at most ~100 points an epoch
STEP_POINTS_PER_EPOCH = 100


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9)


def learning_rate(cfg: TrainConfig, step: int, total_steps: int) -> float:
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    if cfg.lr_schedule == "constant":
        return cfg.lr * warm
    progress = min(1.0, step / max(total_steps, 1))
    return cfg.lr * warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


class Trainer:
    """One training run. ``__init__`` prepares it in named steps, ``fit`` runs it.

    Raises ``CheckpointError`` when ``<out>/last.pt`` exists and ``resume`` is false (or is
    missing or unreadable when it is true), ``CorpusError`` for an unreadable corpus and
    ``ValueError`` for settings that do not fit together.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        resume: bool = False,
        log: Callable[[str], None] = print,
        limits: dict | None = None,
    ):
        self.ctx = distributed.init(cfg.device)
        self.log = log if self.ctx.is_main else (lambda msg: None)
        out = Path(cfg.out_dir)
        self.last_path, self.best_path = out / "last.pt", out / "best.pt"
        ckpt = read_checkpoint(self.last_path) if resume else None
        self.cfg = self.settings(cfg, ckpt, limits)
        self.texts, self.titles = self.load_texts()
        self.vocab, model_cfg = self.vocabulary(ckpt)
        self.table = CharTable(self.vocab)
        self.model, self.loss, self.optimizer = self.build_model(model_cfg)
        self.progress, self.history = self.restore(ckpt)
        self.encoded, self.windows = self.prepare_batches()
        self.steps_per_epoch = self.epoch_batches(0)[1]
        # the last (or current) epoch's training throughput, for the history
        self.tokens_per_s = 0.0

    # -- the steps of __init__ -----------------------------------------------------
    def settings(self, cfg: TrainConfig, ckpt: dict | None, limits: dict | None) -> TrainConfig:
        """The run's settings: ``cfg``, or when resuming the run's own, with only ``limits``
        (e.g. ``max_epochs``, ``max_minutes``) changed. The device is the one the context got."""
        if ckpt is not None:
            cfg = TrainConfig(**{**ckpt["train"], "out_dir": cfg.out_dir, **(limits or {})})
        elif self.last_path.exists():
            raise CheckpointError(
                f"{self.last_path} exists: pass --resume to continue it or choose another --out"
            )
        # a resumed run trains where this session's context is (bf16 only on the GPU)
        device = self.ctx.device.type
        return replace(cfg, device=device, bf16=cfg.bf16 and device == "cuda")

    def load_texts(self) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        """The corpus's poem texts and cleaned titles by split (the first ``limit_poems`` of
        each, if set)."""
        splits = load_corpus(self.cfg.corpus)
        if self.cfg.limit_poems:
            splits = {k: v[: self.cfg.limit_poems] for k, v in splits.items()}
        texts = {k: [p.text for p in v] for k, v in splits.items()}
        return texts, {k: [clean_title(p.title) for p in v] for k, v in splits.items()}

    def vocabulary(self, ckpt: dict | None) -> tuple[list[str], ModelConfig]:
        """The vocabulary and the model's configuration: the checkpoint's when resuming, else
        built from the train split (with adaptive-softmax cutoffs from its frequencies)."""
        if ckpt is not None:
            return ckpt["vocab"], ModelConfig(**ckpt["config"])
        fnlp_vocab = build_vocabulary(self.texts["train"], self.cfg.min_freq)
        vocab = vocabulary_to_list(fnlp_vocab)
        model_cfg = ModelConfig(vocab_size=len(vocab), **self.cfg.model)
        if model_cfg.softmax == "adaptive" and not model_cfg.cutoffs:
            counts = [fnlp_vocab.word_count.get(tok, 0) for tok in vocab]
            model_cfg.cutoffs = adaptive_cutoffs(counts)
        if model_cfg.couplet_input:  # the tracker's token kinds, kept in the config
            table = CharTable(vocab)
            model_cfg.verse_marks = [table.index[m] for m in PUNCTUATION if m in table.index]
            model_cfg.verse_resets = [table.pad, table.bos, table.eos, table.sep]
        return vocab, model_cfg

    def build_model(self, model_cfg: ModelConfig):
        """The model on the context's device, its loss module (wrapped for data parallelism)
        and the optimizer. Seeded first, so every rank starts from the same weights."""
        torch.manual_seed(self.cfg.seed)
        model = PoetryLM(model_cfg).to(self.ctx.device)
        # the adaptive softmax leaves the clusters no target reached this step without gradients
        loss = self.ctx.wrap(
            SequenceLoss(model, self.table.pad), find_unused=model_cfg.softmax == "adaptive"
        )
        return model, loss, make_optimizer(self.cfg, model.parameters())

    def restore(self, ckpt: dict | None) -> tuple[dict, list[dict]]:
        """Progress counters and history, fresh or from the checkpoint (whose weights, optimizer
        state and RNG state are loaded here too)."""
        progress = {
            "epoch": 0,
            "step_in_epoch": 0,
            "global_step": 0,
            "elapsed_s": 0.0,
            "best_val_ppl": math.inf,
            "bad_epochs": 0,
            "loss_by_step": [],  # [global step, mean train loss of the block ending there]
        }
        history: list[dict] = []
        if ckpt is not None:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            progress.update(ckpt["progress"])
            history = ckpt["history"]
            torch.set_rng_state(ckpt["rng"])
        if self.ctx.world > 1:
            # different dropout masks on each rank
            seed = self.cfg.seed * 1009 + self.ctx.rank * 7919 + progress["global_step"]
            torch.manual_seed(seed)
        return progress, history

    def prepare_batches(self, epoch: int = 0) -> tuple[list[list[int]], np.ndarray | None]:
        """The encoded train poems and, for ``batching="windows"``, their windows. With a
        ``title_share``, which poems carry their title is drawn for ``epoch``; a backward
        model reads every poem right to left (its title, context, still first)."""
        cfg = self.cfg
        texts = [orient(t, self.model.config.direction) for t in self.texts["train"]]
        titled = np.random.default_rng([cfg.seed, epoch, 1]).random(len(texts)) < cfg.title_share
        encoded = [
            self.table.encode_poem(text, title if keep else "")
            for text, title, keep in zip(texts, self.titles["train"], titled)
        ]
        if cfg.batching == "streams":
            return encoded, None
        return encoded, make_windows(encoded, cfg.seq_len, cfg.seq_step, self.table.pad)

    def epoch_batches(self, epoch: int, start: int = 0):
        """This epoch's shuffled (T, B) batches from step ``start`` on, and its number of steps."""
        cfg = self.cfg
        if cfg.title_share:  # this epoch's draw of titled poems
            self.encoded, self.windows = self.prepare_batches(epoch)
        rng = np.random.default_rng([cfg.seed, epoch])
        if cfg.batching == "streams":
            streams = make_streams(self.encoded, cfg.batch_size, self.table.pad, rng)
            return stream_chunks(streams, cfg.seq_len, start), math.ceil(
                (len(streams) - 1) / (cfg.seq_len - 1)
            )
        order = rng.permutation(len(self.windows))
        return window_batches(self.windows, cfg.batch_size, order, start), math.ceil(
            len(self.windows) / cfg.batch_size
        )

    # -- checkpoints ---------------------------------------------------------------
    def save(self, path: Path, **extra) -> None:
        if not self.ctx.is_main:
            return
        save_checkpoint(
            path,
            self.model,
            self.vocab,
            train=asdict(self.cfg),
            progress=dict(self.progress),
            history=list(self.history),
            **extra,
        )

    def save_last(self) -> None:
        self.save(self.last_path, optimizer=self.optimizer.state_dict(), rng=torch.get_rng_state())

    # -- loop ----------------------------------------------------------------------
    def fit(self) -> dict:
        cfg, p = self.cfg, self.progress
        n_params = sum(t.numel() for t in self.model.parameters())
        threads, world = torch.get_num_threads(), self.ctx.world
        self.log(
            f"vocabulary {len(self.vocab)}, {len(self.encoded)} poems as {cfg.batching} "
            f"of {cfg.seq_len}, {self.steps_per_epoch} steps/epoch, {n_params / 1e6:.2f}M "
            f"parameters, {threads} thread(s) × {world} process(es) on {self.ctx.device}"
        )
        total = cfg.max_epochs * self.steps_per_epoch
        if cfg.warmup_steps > total / 4:
            self.log(
                f"the warm-up ({cfg.warmup_steps} steps) is over a quarter of the run's {total} "
                "steps: the learning rate is reached late or never (see --warmup-steps)"
            )
        try:
            while p["epoch"] < cfg.max_epochs and p["bad_epochs"] < cfg.patience:
                train_loss, out_of_time = self.train_epoch()
                if out_of_time:
                    budget = cfg.max_minutes
                    self.log(f"time budget of {budget} min spent; validating what there is")
                    self.end_epoch(train_loss, partial=True)
                    break
                self.end_epoch(train_loss)
        except KeyboardInterrupt:
            self.save_last()
            self.log(f"interrupted: saved {self.last_path}; continue with --resume")
            raise
        finally:
            distributed.finish(self.ctx)
        return self.finish() if self.ctx.is_main else {}

    def train_epoch(self) -> tuple[float, bool]:
        """One epoch (or the rest of one) of optimizer steps. Returns the mean train loss in
        nats/token, and whether it ended early because the time budget was spent."""
        cfg, p = self.cfg, self.progress
        from tqdm import tqdm

        self.model.train()
        batches, self.steps_per_epoch = self.epoch_batches(p["epoch"], p["step_in_epoch"])
        total_steps = cfg.max_epochs * self.steps_per_epoch
        # a log file (stderr not a terminal) gets a progress line a minute
        bar = tqdm(
            batches,
            total=self.steps_per_epoch,
            initial=p["step_in_epoch"],
            desc=f"epoch {p['epoch'] + 1}",
            unit="step",
            dynamic_ncols=True,
            disable=not self.ctx.is_main,
            mininterval=0.5 if sys.stderr.isatty() else 60,
        )
        loss_sum, loss_tokens = 0.0, 0
        started, last_save = time.monotonic(), time.monotonic()
        elapsed0, tokens_seen = p["elapsed_s"], 0
        # streams carry the state from chunk to chunk (restarting from zero after a resume)
        state = None
        block, block_nll, block_n = max(1, self.steps_per_epoch // STEP_POINTS_PER_EPOCH), 0.0, 0
        out_of_time = False
        for batch in bar:
            for group in self.optimizer.param_groups:
                group["lr"] = learning_rate(cfg, p["global_step"], total_steps)
            with torch.autocast(self.ctx.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                nll, n, state = self.loss(self.ctx.shard(batch), state)
            # truncated BPTT: the next chunk starts from this state but backpropagates no further
            state = (
                [tuple(s.detach() for s in layer) for layer in state]
                if cfg.batching == "streams"
                else None
            )
            now = time.monotonic()
            over_budget = (
                cfg.max_minutes is not None and elapsed0 + now - started > cfg.max_minutes * 60
            )
            # one collective: global token count and summed NLL, and whether any rank is out of time
            total_nll, total_n, stop = self.ctx.all_sum(
                [float(nll.detach()), n, float(over_budget)]
            )
            self.optimizer.zero_grad(set_to_none=True)
            # DDP averages gradients over ranks; scaling by world/total makes that the mean over
            # all the global batch's tokens
            (nll * (self.ctx.world / total_n)).backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip)
            self.optimizer.step()
            loss_sum += total_nll
            loss_tokens += total_n
            block_nll, block_n = block_nll + total_nll, block_n + total_n
            if (p["global_step"] + 1) % block == 0:
                p["loss_by_step"].append([p["global_step"] + 1, round(block_nll / block_n, 4)])
                block_nll, block_n = 0.0, 0
            tokens_seen += total_n
            p["step_in_epoch"] += 1
            p["global_step"] += 1
            p["elapsed_s"] = elapsed0 + now - started
            bar.set_postfix(
                loss=f"{loss_sum / loss_tokens:.3f}",
                tok_s=f"{tokens_seen / (now - started):.0f}",
                refresh=False,
            )
            if now - last_save > cfg.save_every_minutes * 60:
                self.save_last()
                last_save = now
            if stop:
                out_of_time = True
                break
        bar.close()
        self.tokens_per_s = tokens_seen / max(time.monotonic() - started, 1e-9)
        return loss_sum / max(loss_tokens, 1), out_of_time

    def end_epoch(self, train_loss: float, partial: bool = False) -> None:
        """Validate, record the epoch (or the part of one) in the history, save and log."""
        p = self.progress
        report = perplexity(self.model, self.table, self.texts["valid"])  # without titles
        p["epoch"] += 0 if partial else 1
        record = {
            "epoch": p["epoch"] + (p["step_in_epoch"] / self.steps_per_epoch if partial else 0),
            "step": p["global_step"],
            "elapsed_s": round(p["elapsed_s"], 1),
            "train_loss": round(train_loss, 4),
            "val_ppl": round(report.perplexity, 3),
            "tokens_per_s": round(self.tokens_per_s, 1),
            "lr": self.optimizer.param_groups[0]["lr"],
        }
        self.history.append(record)
        if not partial:
            p["step_in_epoch"] = 0
        improved = report.perplexity < p["best_val_ppl"]
        if improved:
            p["best_val_ppl"] = report.perplexity
            p["bad_epochs"] = 0
            self.save(self.best_path)
        else:
            p["bad_epochs"] += 1
            if p["bad_epochs"] >= self.cfg.patience:
                self.log(
                    f"validation perplexity has not improved for {p['bad_epochs']} epochs: "
                    "stopping early"
                )
        self.log(
            f"epoch {record['epoch']:.2f}: train loss {train_loss:.4f}, "
            f"valid ppl {report.perplexity:.2f}{' (best)' if improved else ''}, "
            f"{record['elapsed_s'] / 60:.1f} min"
        )
        self.save_last()
        self.write_metrics()

    def finish(self) -> dict:
        """The run's result. The test split is left alone: it is for the one model that ships,
        scored once with ``python -m poetry_lm evaluate <out>/best.pt``."""
        best = read_checkpoint(self.best_path)
        result = {
            "best_val_ppl": best["progress"]["best_val_ppl"],
            "train_minutes": self.progress["elapsed_s"] / 60,
        }
        self.log(
            f"best checkpoint {self.best_path}: valid ppl {result['best_val_ppl']:.2f} "
            f"after {result['train_minutes']:.1f} min"
        )
        self.write_metrics(result)
        return result

    def write_metrics(self, result: dict | None = None) -> None:
        if not self.ctx.is_main:
            return
        out = Path(self.cfg.out_dir)
        steps = [{"step": s, "train_loss": loss} for s, loss in self.progress["loss_by_step"]]
        metrics = {
            "train": asdict(self.cfg),
            "history": self.history,
            "steps": steps,
            "result": result,
        }
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1, ensure_ascii=False))
        plot_history(self.history, out / "training.png", steps)


def plot_history(history: list[dict], path: Path, steps: list[dict] = ()) -> None:
    """Train loss per block of steps (line) and per epoch (dots), and validation perplexity per
    epoch, side by side, both against the optimizer step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    at = [h["step"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5), sharex=True)
    if steps:
        left.plot([s["step"] for s in steps], [s["train_loss"] for s in steps], lw=0.8)
    left.plot(at, [h["train_loss"] for h in history], "o", label="epoch mean")
    left.set(xlabel="optimizer step", ylabel="train loss (nats/token)", title="training loss")
    right.plot(at, [h["val_ppl"] for h in history], marker="o", color="tab:orange")
    right.set(xlabel="optimizer step", ylabel="perplexity", title="validation perplexity")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
