"""A training run's settings (``TrainConfig``), and which of them a resumed run may change."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from poetry_lm.model.lm import ModelConfig
from poetry_lm.paths import CORPUS_FILE, DEFAULT_CORPUS, SONG_CORPUS
from poetry_lm.settings import SettingError, setting

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


class ResumeConflict(ValueError):
    """A setting given with --resume that the run cannot take (its model, its data, its seed)."""


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


def resumed_config(
    ckpt: dict, out_dir: str, given: dict, log: Callable[[str], None]
) -> TrainConfig:
    """The run's own settings, with the ones ``given`` on this command line: those in
    RESUME_MAY_CHANGE are applied (and said so); any other must equal the run's, or
    ResumeConflict names it: a resumed run never silently drops what it was asked."""
    saved = {**SAVED_BEFORE_IT_EXISTED, **ckpt["train"]}
    settings = {**saved, "out_dir": out_dir, "model": dict(saved.get("model", {}))}
    for name, value in given.items():
        # a model setting is compared with the model the run built (its checkpoint's config)
        in_model = name not in settings and name in ckpt["config"]
        old = ckpt["config"][name] if in_model else settings.get(name)
        if name in RESUME_MAY_CHANGE:
            if value != old:
                log(f"resuming with {option_name(name)} {value} (the run had {old})")
            settings[name] = value
        elif value != old:
            raise ResumeConflict(
                f"{option_name(name)} cannot change when a run is resumed (the run has "
                f"{old}, this command asks {value}); start a new run with another --out"
            )
    settings["corpus"] = str(corpus_path(settings["corpus"]))
    return TrainConfig(**settings)


def run_config(
    cfg: TrainConfig,
    ckpt: dict | None,
    given: dict | None,
    device: str,
    log: Callable[[str], None],
) -> TrainConfig:
    """The run's settings: ``cfg``, or when resuming (``ckpt``, its last.pt) the run's own with
    the settings ``given`` on the command line (see ``resumed_config``), on ``device``: a resumed
    run trains where this session is (bf16 only on the GPU)."""
    if ckpt is not None:
        cfg = resumed_config(ckpt, cfg.out_dir, given or {}, log)
    return replace(cfg, device=device, bf16=cfg.bf16 and device == "cuda")
