"""--pretrain-corpus and --pretrain-epochs: the first epochs read another corpus's train poems
beside the corpus's own; the vocabulary, valid and test stay the corpus's."""

import json
import lzma
import random
import signal

import pytest
import torch
from click.testing import CliRunner
from conftest import tiny_config

from poetry_lm.cli.train import train_command
from poetry_lm.model.checkpoint import read_checkpoint
from poetry_lm.settings import SettingError
from poetry_lm.train.config import TrainConfig
from poetry_lm.train.trainer import Interrupted, Trainer

POOL = "春夏秋冬山水风月花鸟云天江河日夜长短高低远近南北东西"
ONLY_IN_PRETRAINING = "龘"


def corpus_of(path, n, pool=POOL):
    """``n`` poems of four random five-character verses drawn from ``pool`` (no two alike, so
    that no two are grouped as near-duplicates)."""
    rng = random.Random(path.name)
    with lzma.open(path, "wt", encoding="utf-8") as f:
        for i in range(n):
            verses = ["".join(rng.choice(pool) for _ in range(5)) for _ in range(4)]
            text = f"{verses[0]}，{verses[1]}。{verses[2]}，{verses[3]}。"
            record = {"id": f"{path.stem}-{i}", "author": "", "title": "", "text": text}
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return str(path)


@pytest.fixture
def corpora(tmp_path):
    """A small corpus, and a pretraining corpus twice its size whose every poem holds a
    character the corpus never has."""
    main = corpus_of(tmp_path / "main.jsonl.xz", 100)
    pre = corpus_of(tmp_path / "pre.jsonl.xz", 200, POOL + ONLY_IN_PRETRAINING * 5)
    return main, pre


def pretraining(out, corpora, **overrides):
    """A tiny run (dropout off, windows: a resumed run is bit for bit an unbroken one) whose
    first epoch reads the pretraining corpus too."""
    main, pre = corpora
    settings = dict(
        corpus=main, pretrain_corpus=pre, pretrain_epochs=1, max_epochs=3, patience=5,
        batching="windows", batch_size=16, warmup_steps=3,
    )  # fmt: skip
    model = dict(embed_dim=8, hidden_dim=16, dropout=0.0)
    return tiny_config(out, model, **{**settings, **overrides})


def test_the_pretraining_epochs_read_more_poems(tmp_path, corpora):
    trainer = Trainer(pretraining(tmp_path / "run", corpora), log=lambda msg: None)
    own, pre = len(trainer.texts["train"]), len(trainer.texts["pretrain"])
    assert own > 50 and pre > own
    counts = []
    for epoch in range(3):
        trainer.batches.of_epoch(epoch)
        counts.append(len(trainer.batches.encoded))
    assert counts == [own + pre, own, own]
    trainer.fit()
    steps = [h["step"] for h in trainer.history]
    per_epoch = [steps[0], steps[1] - steps[0], steps[2] - steps[1]]
    assert per_epoch[0] > per_epoch[1] == per_epoch[2] > 0
    # the schedule's length was the sum of the phases
    assert trainer.progress.total_steps == steps[-1]


def test_the_vocabulary_is_the_corpus_train_vocabulary_only(tmp_path, corpora):
    trainer = Trainer(pretraining(tmp_path / "pre", corpora), log=lambda msg: None)
    trainer.release()
    assert any(ONLY_IN_PRETRAINING in text for text in trainer.texts["pretrain"])
    assert ONLY_IN_PRETRAINING not in trainer.vocab
    plain = Trainer(
        pretraining(tmp_path / "plain", corpora, pretrain_corpus=None, pretrain_epochs=0),
        log=lambda msg: None,
    )
    plain.release()
    assert trainer.vocab == plain.vocab and set(POOL) <= set(trainer.vocab)
    # valid stays the corpus's
    assert trainer.texts["valid"] == plain.texts["valid"]


def test_a_resumed_pretraining_run_ends_as_an_unbroken_one(tmp_path, corpora):
    reference = tmp_path / "reference"
    Trainer(pretraining(reference, corpora), log=lambda msg: None).fit()

    out = tmp_path / "stopped"
    trainer = Trainer(pretraining(out, corpora), log=lambda msg: None)
    step, steps = trainer.optimizer.step, []

    def step_then_stop_at_the_fourth():  # as a SIGTERM mid-way through the pretraining epoch
        steps.append(step())
        if len(steps) == 4:
            trainer.stop_signal = signal.SIGTERM

    trainer.optimizer.step = step_then_stop_at_the_fourth
    with pytest.raises(Interrupted):
        trainer.fit()
    saved = read_checkpoint(out / "last.pt")["progress"]
    # saved in the middle of the pretraining epoch
    assert saved["epoch"] == 0 and 4 <= saved["global_step"] < trainer.steps_per_epoch
    saved = read_checkpoint(out / "last.pt")
    assert saved["train"]["pretrain_corpus"] == corpora[1]
    assert saved["train"]["pretrain_epochs"] == 1

    result = CliRunner().invoke(train_command, ["--out", str(out), "--resume"])
    assert result.exit_code == 0, result.output
    for name in ("last.pt", "best.pt"):
        mine, theirs = read_checkpoint(out / name), read_checkpoint(reference / name)
        for key, tensor in theirs["model"].items():
            assert torch.equal(mine["model"][key], tensor), (name, key)
        assert mine["progress"]["global_step"] == theirs["progress"]["global_step"]
        assert mine["train"]["pretrain_epochs"] == 1
    history = [h["train_loss"] for h in read_checkpoint(out / "last.pt")["history"]]
    assert history == [h["train_loss"] for h in read_checkpoint(reference / "last.pt")["history"]]


@pytest.mark.parametrize(
    "settings",
    [
        dict(pretrain_corpus="song", pretrain_epochs=3, max_epochs=2),
        dict(pretrain_corpus="song"),
        dict(pretrain_epochs=1),
    ],
)
def test_pretraining_settings_that_do_not_fit_are_refused(settings):
    with pytest.raises(SettingError):
        TrainConfig(**settings)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--pretrain-corpus", "song", "--pretrain-epochs", "3", "--epochs", "2"], "--epochs"),
        (["--pretrain-corpus", "song"], "go together"),
        (["--pretrain-epochs", "1"], "go together"),
    ],
)
def test_the_cli_refuses_them_as_usage_errors(args, words, tmp_path):
    result = CliRunner().invoke(train_command, ["--out", str(tmp_path / "run"), *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and words in result.output
    assert "--pretrain-" in result.output
    assert not (tmp_path / "run").exists()
