"""Training settings for learners: --warmup-steps, a default learning rate per optimizer, and
the train loss per block of steps in metrics.json and training.png."""

import json

from click.testing import CliRunner
from conftest import TINY_TRAIN

from poetry_lm.cli.train import train_command
from poetry_lm.train.config import DEFAULT_LR, TrainConfig
from poetry_lm.train.schedule import learning_rate


def without(args, option):
    i = args.index(option)
    return args[:i] + args[i + 2 :]


def test_sgd_without_lr_gets_its_own_default_and_the_warmup_is_an_option(tmp_path):
    args = [*without(TINY_TRAIN, "--lr"), "--optimizer", "sgd", "--warmup-steps", "3"]
    args = [*without(args, "--epochs"), "--epochs", "1"]
    result = CliRunner().invoke(train_command, ["--out", str(tmp_path), *args])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["train"]["lr"] == DEFAULT_LR["sgd"] != DEFAULT_LR["adam"]
    assert metrics["train"]["warmup_steps"] == 3
    # every step is a point when an epoch has fewer than 100 steps
    steps = metrics["steps"]
    assert [s["step"] for s in steps] == list(range(1, metrics["history"][-1]["step"] + 1))
    assert all(s["train_loss"] > 0 for s in steps)
    assert (tmp_path / "training.png").read_bytes()[:4] == b"\x89PNG"


def test_the_warmup_reaches_the_learning_rate_after_its_steps():
    cfg = TrainConfig(lr=0.5, warmup_steps=4, lr_schedule="constant")
    assert [learning_rate(cfg, s, 100) for s in range(6)] == [0.125, 0.25, 0.375, 0.5, 0.5, 0.5]
    assert learning_rate(TrainConfig(lr=0.5, warmup_steps=0), 0, 100) == 0.5


def test_a_warmup_longer_than_a_quarter_of_the_run_is_reported(tiny_run):
    """The tiny run keeps the default 200-step warm-up over a few dozen steps: it says so."""
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    total = metrics["history"][-1]["step"]
    assert metrics["train"]["warmup_steps"] == 200 > total / 4
    result = CliRunner().invoke(
        train_command, ["--out", str(tiny_run.parent / "again"), *TINY_TRAIN, "--epochs", "1"]
    )
    assert result.exit_code == 0
    assert "warm-up (200 steps) is over a quarter" in result.output
