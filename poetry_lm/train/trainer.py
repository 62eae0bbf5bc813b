"""The training loop: windows or poem streams → Adam/SGD steps → validation each epoch → early
stopping.

Everything needed to continue lives in ``<out>/last.pt`` (weights, optimizer, epoch, the
position inside the epoch, RNG state, history); the best model by validation perplexity is
``<out>/best.pt``. Both are written atomically, ``last.pt`` first: a run killed at any moment
can be resumed, and resuming gives the same weights as a run never stopped (dropout off; see
docs/reliability.md). One process at a time may train into a run folder (a lock says so).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from poetry_lm.evaluation.perplexity import perplexity
from poetry_lm.model.checkpoint import (
    CheckpointError,
    read_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
)
from poetry_lm.model.lm import ModelConfig, PoetryLM
from poetry_lm.paths import CORPUS_FILE, DEFAULT_CORPUS, SONG_CORPUS
from poetry_lm.settings import SettingError, setting
from poetry_lm.text.batching import make_streams, make_windows, stream_chunks, window_batches
from poetry_lm.text.corpus import CorpusError, clean_title, load_corpus, orient
from poetry_lm.text.duplicates import PUNCTUATION
from poetry_lm.text.vocab import CharTable, build_vocabulary, vocabulary_to_list
from poetry_lm.train import distributed

BATCHINGS = ("windows", "streams")
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine")
DEVICES = ("cpu", "cuda")


# the learning rate each optimizer gets unless one is given: Adam's is the shipped recipe's, SGD's
# the best of a small measured sweep (docs/learning.md); 2e-3 starves plain SGD
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
    pretrain_corpus: str | None = setting(
        None,
        "More poems to read in the first --pretrain-epochs epochs: the train split of this corpus "
        "file, or 'song' for corpus/song.jsonl.xz. The vocabulary, valid and test stay the "
        "corpus's; its unknown characters are <unk>.",
    )
    pretrain_epochs: int = setting(
        0, "Epochs that read the train split of --pretrain-corpus beside the corpus's own."
    )
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
    max_epochs: int = setting(7, "Most epochs to train.")
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
        0.5, "Share of train poems read after their title (context, never scored)."
    )
    ema_decay: float = setting(
        0.0,
        "Keep an exponential moving average of the weights, w_avg <- d*w_avg + (1-d)*w after "
        "each step (0: none); validation and best.pt then use the average.",
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
        if not 0 <= self.ema_decay < 1:
            raise SettingError(f"{{ema_decay}} must be in [0, 1), not {self.ema_decay}")
        if self.pretrain_epochs > self.max_epochs:
            raise SettingError("{pretrain_epochs} cannot exceed {max_epochs}")
        if bool(self.pretrain_corpus) != bool(self.pretrain_epochs):
            raise SettingError("{pretrain_corpus} and {pretrain_epochs} go together")
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


LR_FLOOR = 0.05  # the cosine schedule ends at this fraction of --lr


def warmup_factor(cfg: TrainConfig, step: int) -> float:
    """The linear warm-up's share of --lr at ``step``: (step + 1) / warmup_steps, at most 1."""
    return min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0


def learning_rate(cfg: TrainConfig, step: int, total_steps: int, anchor=(0, 1.0)) -> float:
    """The rate at ``step``: warm-up, then constant or a cosine from ``anchor`` = (step s0,
    fraction f0 of --lr there) down to LR_FLOOR at ``total_steps``. The anchor is (0, 1) unless a
    resumed run changed its length: the cosine then continues from where the rate was."""
    warm = warmup_factor(cfg, step)
    if cfg.lr_schedule == "constant":
        return cfg.lr * warm
    s0, f0 = anchor
    progress = min(1.0, max(0, step - s0) / max(total_steps - s0, 1))
    return cfg.lr * warm * (LR_FLOOR + (f0 - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * progress)))


class Interrupted(KeyboardInterrupt):
    """Training stopped by a signal (Ctrl-C, SIGTERM, SIGHUP) after saving ``last.pt``."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class ResumeConflict(ValueError):
    """A setting given with --resume that the run cannot take (its model, its data, its seed)."""


class Diverged(ValueError):
    """The loss (or the validation perplexity) is no longer a finite number."""


# Settings a resumed run may take from the command line; every other must equal the run's own.
RESUME_MAY_CHANGE = {
    "max_epochs",
    "max_minutes",
    "patience",
    "corpus",
    "device",
    "bf16",
    "save_every_minutes",
    "ema_decay",  # an average started (or restarted) mid-run begins at the weights of then
}
# What a run saved before a setting existed did, where that differs from today's default
SAVED_BEFORE_IT_EXISTED = {"title_share": 0.0, "ema_decay": 0.0}
OPTION_NAMES = {"max_epochs": "--epochs", "num_layers": "--layers", "out_dir": "--out"}


def option_name(field_name: str) -> str:
    return OPTION_NAMES.get(field_name, "--" + field_name.replace("_", "-"))


def portable_corpus(corpus: str) -> str:
    """The corpus path as a checkpoint stores it: the shipped corpus by its data-relative name
    (found again by poetry_lm.paths on any machine), any other as given."""
    try:
        return CORPUS_FILE if Path(corpus).resolve() == DEFAULT_CORPUS.resolve() else corpus
    except OSError:
        return corpus


def corpus_path(corpus: str) -> Path:
    if corpus == "song":
        return SONG_CORPUS
    return DEFAULT_CORPUS if corpus == CORPUS_FILE and not Path(corpus).is_file() else Path(corpus)


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
        self.made = self.not_yet_there(out)  # what this start creates: removed if it fails
        self.lock = self.claim_folder(out)
        try:
            ckpt = self.read_last() if resume else None
            self.cfg = self.settings(cfg, ckpt, limits)
            self.texts, self.titles = self.load_texts()
            self.vocab, model_cfg = self.vocabulary(ckpt)
            self.table = CharTable(self.vocab)
            self.model, self.loss, self.optimizer = self.build_model(model_cfg)
            self.progress, self.history = self.restore(ckpt)
            self.averaged = self.weight_average(ckpt)
            self.encoded, self.windows = self.prepare_batches()
            self.steps_per_epoch = self.epoch_batches(0)[1]
            self.continue_schedule()
            self.repair_best(ckpt)
        except BaseException:
            self.abandon(out)
            raise
        # the last (or current) epoch's training throughput, for the history
        self.tokens_per_s = 0.0
        self.stop_signal: int | None = None  # set by a signal handler, acted on between steps

    # -- the run folder ------------------------------------------------------------
    def claim_folder(self, out: Path):
        """Create the run folder, check it is writable, and lock it for this process (rank 0).

        Raises CheckpointError with the OS's reason (a file in the way, a read-only mount) and
        when another process holds the lock. Temporary files of a killed save are removed."""
        if not self.ctx.is_main:
            return None
        try:
            out.mkdir(parents=True, exist_ok=True)
            lock = open(out / ".lock", "a+")  # noqa: SIM115 - held for the run's lifetime
        except OSError as err:
            raise CheckpointError(
                f"cannot use {out} as a run folder ({err.strerror or err})"
            ) from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            lock.close()
            raise CheckpointError(
                f"{out} is in use by another training run (pid {holder}); wait for it or "
                "choose another --out"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        for name in ("last.pt", "best.pt"):
            remove_stale_temporaries(out / name)
        return lock

    def not_yet_there(self, out: Path) -> list[Path]:
        """What claiming ``out`` will create (rank 0 claims): its lock file and the folders
        missing on the way to it, innermost first."""
        made, path = [], out / ".lock"
        while self.ctx.is_main and not path.exists() and path != path.parent:
            made.append(path)
            path = path.parent
        return made

    def abandon(self, out: Path) -> None:
        """Undo a start that failed before training began: release the lock, and remove the lock
        file and the folders this start created, where nothing else was put in them since. A
        lock file that was there before stays, as after any run."""
        lock_file = out / ".lock"
        if self.lock is not None and lock_file in self.made:
            lock_file.unlink(missing_ok=True)  # while still held, so no other run holds it
        self.release()
        for folder in self.made:
            if folder == lock_file:
                continue
            try:
                folder.rmdir()
            except OSError:  # not empty, or already gone: left as it is
                break

    def release(self) -> None:
        """Unlock the run folder (the OS does it too when the process ends, however it ends)."""
        if self.lock is not None:
            self.lock.close()
            self.lock = None

    def read_last(self) -> dict:
        """``last.pt`` with its training state, or CheckpointError saying why it cannot resume."""
        if not self.last_path.exists():
            raise CheckpointError(f"{self.last_path} does not exist: there is no run to resume")
        ckpt = read_checkpoint(self.last_path)
        missing = [k for k in ("train", "optimizer", "progress", "history", "rng") if k not in ckpt]
        if missing:
            raise CheckpointError(
                f"{self.last_path} holds no training state ({', '.join(missing)} missing): it is "
                "a best.pt or a shipped model, which can be evaluated but not resumed"
            )
        return ckpt

    # -- the steps of __init__ -----------------------------------------------------
    def settings(self, cfg: TrainConfig, ckpt: dict | None, limits: dict | None) -> TrainConfig:
        """The run's settings: ``cfg``, or when resuming the run's own, with only ``limits``
        (e.g. ``max_epochs``, ``max_minutes``) changed. The device is the one the context got."""
        if ckpt is not None:
            cfg = self.resumed_settings(ckpt, cfg.out_dir, limits or {})
        elif self.last_path.exists():
            raise CheckpointError(
                f"{self.last_path} exists: pass --resume to continue it or choose another --out"
            )
        # a resumed run trains where this session's context is (bf16 only on the GPU)
        device = self.ctx.device.type
        return replace(cfg, device=device, bf16=cfg.bf16 and device == "cuda")

    def resumed_settings(self, ckpt: dict, out_dir: str, given: dict) -> TrainConfig:
        """The run's own settings, with the ones ``given`` on this command line: those in
        RESUME_MAY_CHANGE are applied (and said so); any other must equal the run's, or
        ValueError names it: a resumed run never silently drops what it was asked."""
        saved = {**SAVED_BEFORE_IT_EXISTED, **ckpt["train"]}
        settings = {**saved, "out_dir": out_dir, "model": dict(saved.get("model", {}))}
        for name, value in given.items():
            # a model setting is compared with the model the run built (its checkpoint's config)
            in_model = name not in settings and name in ckpt["config"]
            old = ckpt["config"][name] if in_model else settings.get(name)
            if name in RESUME_MAY_CHANGE:
                if value != old:
                    self.log(f"resuming with {option_name(name)} {value} (the run had {old})")
                settings[name] = value
            elif value != old:
                raise ResumeConflict(
                    f"{option_name(name)} cannot change when a run is resumed (the run has "
                    f"{old}, this command asks {value}); start a new run with another --out"
                )
        settings["corpus"] = str(corpus_path(settings["corpus"]))
        return TrainConfig(**settings)

    def load_texts(self) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        """The corpus's poem texts and cleaned titles by split (the first ``limit_poems`` of
        each, if set).

        Raises CorpusError when train or valid is empty (a perplexity over no poems would read
        as a perfect 1.0) or train has fewer poems than --min-freq (no token would be kept)."""
        cfg = self.cfg
        splits = load_corpus(cfg.corpus)
        if cfg.limit_poems:
            splits = {k: v[: cfg.limit_poems] for k, v in splits.items()}
        for name in ("train", "valid"):
            if not splits[name]:
                raise CorpusError(
                    f"the {name} split of {cfg.corpus} holds no poems; training needs poems in "
                    "train and valid (see corpus/README.md for how poems are split)"
                )
        if len(splits["train"]) < cfg.min_freq:
            raise CorpusError(
                f"the train split of {cfg.corpus} has {len(splits['train'])} poem(s), fewer "
                f"than --min-freq {cfg.min_freq}: no character would be kept"
            )
        if cfg.pretrain_corpus:  # its train split only: its valid and test stay unread
            pre = load_corpus(corpus_path(cfg.pretrain_corpus))["train"][: cfg.limit_poems]
            splits["pretrain"] = pre
        texts = {k: [p.text for p in v] for k, v in splits.items()}
        return texts, {k: [clean_title(p.title) for p in v] for k, v in splits.items()}

    def vocabulary(self, ckpt: dict | None) -> tuple[list[str], ModelConfig]:
        """The vocabulary and the model's configuration: the checkpoint's when resuming, else
        built from the train split (with adaptive-softmax cutoffs from its frequencies)."""
        if ckpt is not None:
            return ckpt["vocab"], ModelConfig.from_saved(ckpt["config"])
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

    def weight_average(self, ckpt: dict | None) -> AveragedModel | None:
        """The exponential moving average of the weights (``ema_decay``), or None: the run's own
        when it is resumed with the same decay, else a new one from the weights as they are now
        (restored first), which a resumed run says. Weight-drop and dropout act on the trained
        weights only, so the average is of the weights themselves."""
        decay = self.cfg.ema_decay
        kept = ckpt.get("averaged") if ckpt else None  # the resumed run's average
        old = ckpt["train"].get("ema_decay") if ckpt else None
        if not decay:
            if kept is not None:
                self.log(f"the run's weight average (--ema-decay {old}) is dropped: --ema-decay 0")
            return None
        averaged = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(decay))
        if kept is not None and old == decay:
            averaged.load_state_dict(kept)
        elif ckpt is not None:
            how = "restarts" if kept is not None else "starts"
            self.log(f"the weight average {how} from the resumed weights (--ema-decay {decay})")
        return averaged

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
            # this epoch's summed train NLL and tokens so far, so a resumed epoch reports all of it
            "epoch_nll": 0.0,
            "epoch_tokens": 0,
            "best_step": -1,  # the step whose weights best.pt holds (last.pt is written first)
            "total_steps": 0,  # the schedule's length when saved, and where its cosine restarted
            "lr_anchor": [0, 1.0],
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

    def continue_schedule(self) -> None:
        """A resumed run whose schedule changed length (--epochs, a new corpus) continues its
        cosine smoothly from the rate it had reached, instead of jumping to the new curve."""
        p, total = self.progress, self.total_steps()
        if p["total_steps"] and p["total_steps"] != total and self.cfg.lr_schedule == "cosine":
            step = p["global_step"]
            rate = learning_rate(self.cfg, step, p["total_steps"], p["lr_anchor"])
            p["lr_anchor"] = [step, rate / (self.cfg.lr * warmup_factor(self.cfg, step))]
            self.log(
                f"the schedule now runs {total} steps instead of {p['total_steps']}: the cosine "
                f"continues from lr {rate:.3g} at step {step}"
            )
        p["total_steps"] = total

    def repair_best(self, ckpt: dict | None) -> None:
        """A run killed between writing last.pt and best.pt: last.pt holds the best weights
        (its ``best_step`` is its own step), so best.pt is written from them."""
        p = self.progress
        if ckpt is None or p["best_step"] != p["global_step"]:
            return
        try:
            best_step = read_checkpoint(self.best_path)["progress"].get("best_step")
        except CheckpointError:
            best_step = None
        if best_step != p["best_step"]:
            self.save_best()
            self.log(f"{self.best_path} was not written before the run stopped; written now")

    def prepare_batches(self, epoch: int = 0) -> tuple[list[list[int]], np.ndarray | None]:
        """The encoded train poems and, for ``batching="windows"``, their windows. With a
        ``title_share``, which poems carry their title is drawn for ``epoch``; a backward
        model reads every poem right to left (its title, context, still first)."""
        cfg = self.cfg
        parts = ["train", "pretrain"] if epoch < cfg.pretrain_epochs else ["train"]
        texts = [orient(t, self.model.config.direction) for k in parts for t in self.texts[k]]
        titles = [title for k in parts for title in self.titles[k]]
        titled = np.random.default_rng([cfg.seed, epoch, 1]).random(len(texts)) < cfg.title_share
        encoded = [
            self.table.encode_poem(text, title if keep else "")
            for text, title, keep in zip(texts, titles, titled)
        ]
        if cfg.batching == "streams":
            return encoded, None
        return encoded, make_windows(encoded, cfg.seq_len, cfg.seq_step, self.table.pad)

    def epoch_batches(self, epoch: int, start: int = 0):
        """This epoch's shuffled (T, B) batches from step ``start`` on, and its number of steps."""
        cfg = self.cfg
        if cfg.title_share or cfg.pretrain_epochs:  # this epoch's poems, and which are titled
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

    def total_steps(self) -> int:
        """The schedule's length: the pretraining epochs' steps, then the corpus's own."""
        cfg = self.cfg
        if not cfg.pretrain_epochs:
            return cfg.max_epochs * self.steps_per_epoch
        pre = self.epoch_batches(0)[1]
        own = (
            self.epoch_batches(cfg.pretrain_epochs)[1]
            if cfg.max_epochs > cfg.pretrain_epochs
            else 0
        )
        self.epoch_batches(0)  # as __init__ left them
        return cfg.pretrain_epochs * pre + (cfg.max_epochs - cfg.pretrain_epochs) * own

    # -- checkpoints ---------------------------------------------------------------
    def save(self, path: Path, model: PoetryLM | None = None, **extra) -> None:
        if not self.ctx.is_main:
            return
        save_checkpoint(
            path,
            self.model if model is None else model,
            self.vocab,
            train={**asdict(self.cfg), "corpus": portable_corpus(self.cfg.corpus)},
            progress=dict(self.progress),
            history=list(self.history),
            **extra,
        )

    def save_last(self) -> None:
        state = {"optimizer": self.optimizer.state_dict(), "rng": torch.get_rng_state()}
        if self.averaged is not None:
            state["averaged"] = self.averaged.state_dict()
        self.save(self.last_path, **state)

    def save_best(self) -> None:
        """best.pt: the weights validation scored (the average, when one is kept)."""
        self.save(self.best_path, self.scored_model())

    def scored_model(self) -> PoetryLM:
        return self.model if self.averaged is None else self.averaged.module

    # -- loop ----------------------------------------------------------------------
    def fit(self) -> dict:
        handlers = self.catch_signals()  # before the first line a watcher may wait for
        cfg, p = self.cfg, self.progress
        n_params = sum(t.numel() for t in self.model.parameters())
        threads, world = torch.get_num_threads(), self.ctx.world
        self.log(
            f"vocabulary {len(self.vocab)}, {len(self.encoded)} poems as {cfg.batching} "
            f"of {cfg.seq_len}, {self.steps_per_epoch} steps/epoch, {n_params / 1e6:.2f}M "
            f"parameters, {threads} thread(s) × {world} process(es) on {self.ctx.device}"
        )
        total = self.total_steps()
        if cfg.warmup_steps > total / 4:
            self.log(
                f"the warm-up ({cfg.warmup_steps} steps) is over a quarter of the run's {total} "
                "steps: the learning rate is reached late or never (see --warmup-steps)"
            )
        try:
            while p["epoch"] < cfg.max_epochs and p["bad_epochs"] < cfg.patience:
                train_loss, out_of_time = self.train_epoch()
                if self.stop_signal is None and out_of_time:
                    budget = cfg.max_minutes
                    self.log(f"time budget of {budget} min spent; validating what there is")
                    self.end_epoch(train_loss, partial=True)
                    break
                if self.stop_signal is None:
                    self.end_epoch(train_loss)
                if self.stop_signal is not None:  # after a whole step, or a whole epoch's end
                    self.save_last()
                    name = signal.Signals(self.stop_signal).name
                    self.log(
                        f"interrupted: saved {self.last_path} ({name}); continue with --resume"
                    )
                    raise Interrupted(self.stop_signal)
            return self.finish() if self.ctx.is_main else {}
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
            distributed.finish(self.ctx)
            self.release()

    def catch_signals(self) -> dict:
        """Ctrl-C, SIGTERM (kill, job schedulers) and SIGHUP (a closed terminal) ask training to
        stop after the current step, which then saves last.pt: a step is never cut in half. A
        second signal stops at once (last.pt then holds the state of the last save). Returns
        the handlers replaced (none outside the main thread, where Python allows no handler)."""

        def request(signum, frame):
            if self.stop_signal is not None:
                raise KeyboardInterrupt
            self.stop_signal = signum

        replaced = {}
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            try:
                replaced[signum] = signal.signal(signum, request)
            except ValueError:  # not the main thread
                break
        return replaced

    def train_epoch(self) -> tuple[float, bool]:
        """One epoch (or the rest of one) of optimizer steps. Returns the mean train loss in
        nats/token, and whether it ended early because the time budget was spent."""
        cfg, p = self.cfg, self.progress
        from tqdm import tqdm

        self.model.train()
        batches, self.steps_per_epoch = self.epoch_batches(p["epoch"], p["step_in_epoch"])
        # the schedule's length: a pretraining run's phases differ, so it is fixed at the start
        total_steps = (
            p["total_steps"] if cfg.pretrain_epochs else cfg.max_epochs * self.steps_per_epoch
        )
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
        loss_sum, loss_tokens = p["epoch_nll"], p["epoch_tokens"]  # the epoch so far
        started, last_save = time.monotonic(), time.monotonic()
        elapsed0, tokens_seen = p["elapsed_s"], 0
        # streams carry the state from chunk to chunk (restarting from zero after a resume)
        state = None
        block, block_nll, block_n = max(1, self.steps_per_epoch // STEP_POINTS_PER_EPOCH), 0.0, 0
        out_of_time = False
        for batch in bar:
            for group in self.optimizer.param_groups:
                group["lr"] = learning_rate(cfg, p["global_step"], total_steps, p["lr_anchor"])
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
            # one collective: global token count and summed NLL, whether any rank is out of
            # time, and whether any rank was asked to stop (so that all stop at the same step)
            total_nll, total_n, stop, interrupted = self.ctx.all_sum(
                [float(nll.detach()), n, float(over_budget), float(self.stop_signal is not None)]
            )
            if not math.isfinite(total_nll):
                self.diverged(f"the training loss is {total_nll}")
            self.optimizer.zero_grad(set_to_none=True)
            if total_n:  # a chunk of padding only (a very short --seq-len) has nothing to learn
                # DDP averages gradients over ranks; scaling by world/total makes that the mean
                # over all the global batch's tokens
                (nll * (self.ctx.world / total_n)).backward()
                norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip)
                if not math.isfinite(norm):
                    self.diverged(f"the gradient norm is {float(norm)}")
                self.optimizer.step()
                if self.averaged is not None:
                    self.averaged.update_parameters(self.model)
            loss_sum += total_nll
            loss_tokens += total_n
            block_nll, block_n = block_nll + total_nll, block_n + total_n
            if (p["global_step"] + 1) % block == 0:
                mean = block_nll / max(block_n, 1)  # a block of padding only counts no token
                p["loss_by_step"].append([p["global_step"] + 1, round(mean, 4)])
                block_nll, block_n = 0.0, 0
            tokens_seen += total_n
            p["epoch_nll"], p["epoch_tokens"] = loss_sum, loss_tokens
            p["step_in_epoch"] += 1
            p["global_step"] += 1
            p["elapsed_s"] = elapsed0 + now - started
            bar.set_postfix(
                loss=f"{loss_sum / max(loss_tokens, 1):.3f}",
                tok_s=f"{tokens_seen / max(now - started, 1e-9):.0f}",
                refresh=False,
            )
            if now - last_save > cfg.save_every_minutes * 60:
                self.save_last()
                last_save = now
            if interrupted:
                self.stop_signal = self.stop_signal or signal.SIGTERM  # another rank's signal
                break
            if stop:
                out_of_time = True
                break
        bar.close()
        self.tokens_per_s = tokens_seen / max(time.monotonic() - started, 1e-9)
        return loss_sum / max(loss_tokens, 1), out_of_time

    def end_epoch(self, train_loss: float, partial: bool = False) -> None:
        """Validate, record the epoch (or the part of one) in the history, save and log."""
        p = self.progress
        # without titles; with an average, the average is scored (and the weights beside it)
        report = perplexity(self.scored_model(), self.table, self.texts["valid"])
        if not math.isfinite(report.perplexity):
            self.diverged(f"the validation perplexity is {report.perplexity}")
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
        if self.averaged is not None:
            raw = perplexity(self.model, self.table, self.texts["valid"]).perplexity
            record["val_ppl_weights"] = round(raw, 3)
        self.history.append(record)
        if not partial:
            p["step_in_epoch"], p["epoch_nll"], p["epoch_tokens"] = 0, 0.0, 0
        improved = report.perplexity < p["best_val_ppl"]
        if improved:
            p["best_val_ppl"] = report.perplexity
            p["bad_epochs"] = 0
            p["best_step"] = p["global_step"]
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
        # last.pt first: killed between the two writes, the run resumes and writes best.pt
        self.save_last()
        if improved:
            self.save_best()
        self.write_metrics()

    def diverged(self, what: str) -> None:
        """Stop a run whose numbers are no longer finite; last.pt keeps its last good state."""
        raise Diverged(
            f"training diverged at step {self.progress['global_step'] + 1}: {what}; "
            f"{self.last_path} keeps the state of its last save (step "
            f"{self.saved_step()}); try a lower --lr or --clip"
        )

    def saved_step(self) -> str:
        try:
            return str(read_checkpoint(self.last_path)["progress"]["global_step"])
        except (CheckpointError, KeyError):
            return "none yet"

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
        try:
            (out / "metrics.json").write_text(json.dumps(metrics, indent=1, ensure_ascii=False))
            plot_history(self.history, out / "training.png", steps)
        except OSError as err:
            raise CheckpointError(
                f"cannot write the metrics of {out} ({err.strerror or err})"
            ) from None


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
