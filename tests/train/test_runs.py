"""Run folders, resuming and degenerate data: each user-caused fault of training is one clear
sentence and the right exit status, and nothing already saved is lost."""

import errno
import json
import lzma
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import tiny_config

from poetry_lm.cli.train import train_command
from poetry_lm.model.checkpoint import load_model, read_checkpoint
from poetry_lm.text.corpus import split_of
from poetry_lm.train.trainer import Trainer, learning_rate

ROOT = Path(__file__).resolve().parents[2]
SMALL = [
    "--limit-poems", "120", "--embed-dim", "8", "--hidden-dim", "16", "--softmax", "full",
    "--batch-size", "16", "--seq-len", "33", "--seq-step", "16", "--lr", "0.01",
    "--epochs", "2", "--patience", "5", "--batching", "windows",
]  # fmt: skip


def train(*args):
    return CliRunner().invoke(train_command, [str(a) for a in args])


def assert_user_error(result, status, *words):
    assert result.exit_code == status, result.output
    assert "Traceback" not in result.output
    message = result.output.strip().splitlines()[-1]
    assert message.startswith("Error:"), result.output
    for word in words:
        assert word in message, message


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    out = tmp_path_factory.mktemp("two") / "run"
    result = train("--out", out, *SMALL)
    assert result.exit_code == 0, result.output
    return out


def copy_run(run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(run, out)
    return out


# -- 1. divergence -----------------------------------------------------------------------------


def test_a_diverging_run_stops_with_a_clear_message_and_keeps_the_last_good_save(
    tmp_path, monkeypatch
):
    from poetry_lm.model.lm import PoetryLM

    real, calls = PoetryLM.sequence_nll, []

    def blows_up_in_epoch_two(model, tokens, pad, state=None):
        nll, n, state = real(model, tokens, pad, state)
        calls.append(model.training)
        if sum(calls) > 40:  # 30 steps an epoch: the 11th step of the second epoch
            nll = nll * float("inf")
        return nll, n, state

    monkeypatch.setattr(PoetryLM, "sequence_nll", blows_up_in_epoch_two)
    out = tmp_path / "run"
    result = train("--out", out, *SMALL)
    assert_user_error(
        result, 1, "training diverged at step 41", "the state of its last save (step 30)"
    )
    model, _, ckpt = load_model(out / "last.pt")  # the epoch-1 save: finite, loadable
    assert ckpt["progress"]["global_step"] == 30


# -- 6. resume: apply or refuse, and say which ---------------------------------------------------


@pytest.mark.parametrize(
    "option, value",
    [("--hidden-dim", 64), ("--lr", 0.5), ("--batch-size", 8), ("--seed", 3), ("--layers", 2)],
)
def test_resume_refuses_a_setting_it_cannot_honour(option, value, two_epochs, tmp_path):
    out = copy_run(two_epochs, tmp_path)
    before = (out / "last.pt").read_bytes()
    result = train("--out", out, "--resume", option, value)
    assert_user_error(result, 2, option, "cannot change when a run is resumed")
    assert (out / "last.pt").read_bytes() == before


def test_resume_accepts_a_setting_equal_to_the_runs(two_epochs, tmp_path):
    out = copy_run(two_epochs, tmp_path)
    result = train("--out", out, "--resume", "--hidden-dim", 16, "--epochs", 3)
    assert result.exit_code == 0, result.output


def test_resume_applies_a_new_corpus_path_and_says_so(two_epochs, tmp_path):
    out = copy_run(two_epochs, tmp_path)
    moved = tmp_path / "moved.jsonl.xz"
    shutil.copy(ROOT / "corpus/tang.jsonl.xz", moved)
    result = train("--out", out, "--resume", "--corpus", moved, "--epochs", 3)
    assert result.exit_code == 0, result.output
    assert f"resuming with --corpus {moved}" in result.output
    assert read_checkpoint(out / "last.pt")["train"]["corpus"] == str(moved)


def small_schedule(out):
    """A tiny run whose warm-up ends early, so that its cosine schedule shows."""
    return tiny_config(
        out, dict(embed_dim=8, hidden_dim=16), limit_poems=120, batch_size=16, warmup_steps=5
    )


def test_a_longer_schedule_continues_from_the_rate_it_had_reached(tmp_path):
    first = Trainer(small_schedule(tmp_path), log=lambda msg: None)
    first.fit()
    step, total = first.progress.global_step, first.progress.total_steps
    reached = learning_rate(first.cfg, step - 1, total, first.progress.lr_anchor)
    said = []
    resumed = Trainer(
        small_schedule(tmp_path), resume=True, log=said.append, limits={"max_epochs": 4}
    )
    p = resumed.progress
    next_rate = learning_rate(resumed.cfg, step, p.total_steps, p.lr_anchor)
    assert p.total_steps == 2 * total
    assert abs(next_rate / reached - 1) < 0.05  # no jump (the old bug: 1.0e-4 → 1.05e-3)
    end = learning_rate(resumed.cfg, p.total_steps, p.total_steps, p.lr_anchor)
    assert end == pytest.approx(0.05 * 0.01)  # and it still ends at the floor
    assert any("the cosine continues" in line for line in said)
    resumed.release()


def test_resuming_a_model_without_training_state_says_so(two_epochs, tmp_path):
    out = copy_run(two_epochs, tmp_path)
    shutil.copy(out / "best.pt", out / "last.pt")
    assert_user_error(train("--out", out, "--resume"), 1, "holds no training state")
    assert_user_error(train("--out", tmp_path / "none", "--resume"), 1, "no run to resume")


# -- 11. degenerate corpora ----------------------------------------------------------------------


def corpus_of(path, ids, text="床前明月光，疑是地上霜。举头望明月，低头思故乡。"):
    with lzma.open(path, "wt", encoding="utf-8") as f:
        for i in ids:
            record = {"id": i, "author": "", "title": "", "text": text}
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def test_a_corpus_without_a_valid_split_is_refused(tmp_path):
    ids = [str(i) for i in range(300) if split_of(str(i)) == "train"][:40]
    corpus = corpus_of(tmp_path / "c.jsonl.xz", ids)
    result = train("--out", tmp_path / "run", "--corpus", corpus, *SMALL)
    assert_user_error(result, 1, "valid split", "holds no poems")


def test_a_train_split_smaller_than_min_freq_is_refused(tmp_path):
    ids = [str(i) for i in range(300) if split_of(str(i)) in ("train", "valid")]
    one_train = [i for i in ids if split_of(i) == "train"][:1] + [
        i for i in ids if split_of(i) == "valid"
    ][:3]
    # poems that share no verse, so that none is grouped with another as a near-duplicate
    path = tmp_path / "c.jsonl.xz"
    with lzma.open(path, "wt", encoding="utf-8") as f:
        for i, (a, b) in zip(one_train, ["春夏", "秋冬", "山水", "风月"]):
            text = a * 5 + "，" + b * 5 + "。"
            f.write(json.dumps({"id": i, "author": "", "title": "", "text": text}) + "\n")
    corpus = path
    result = train("--out", tmp_path / "run", "--corpus", corpus, *SMALL, "--min-freq", 2)
    assert_user_error(result, 1, "train split", "--min-freq 2")


@pytest.mark.parametrize("batching", ["streams", "windows"])
def test_the_shortest_sequence_length_trains(batching, tmp_path):
    # 40 poems: a length of 2 makes a step of every character, and any number of them shows it
    args = [*SMALL, "--seq-len", 2, "--seq-step", 1, "--epochs", 1, "--batching", batching]
    args += ["--limit-poems", 40]
    result = train("--out", tmp_path / "run", *args)
    assert result.exit_code == 0, result.output


# -- 12. run folders -----------------------------------------------------------------------------


def test_an_unusable_out_is_refused_before_training(tmp_path):
    blocker = tmp_path / "some_file"
    blocker.write_text("x")
    result = train("--out", blocker / "sub", *SMALL)
    assert_user_error(result, 1, "cannot use", "as a run folder", "Not a directory")


@pytest.mark.parametrize(
    "args, words", [(["--resume"], "no run to resume"), (["--corpus", "notxz"], "notxz")]
)
def test_a_failed_start_leaves_nothing_behind(args, words, tmp_path):
    out = tmp_path / "typo" / "run"
    assert_user_error(train("--out", out, *SMALL, *args), 1, words)
    assert not (tmp_path / "typo").exists()  # the folders it made, and their lock, are gone
    # a folder that was there keeps what it held, and loses only what the start made
    out.mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    assert_user_error(train("--out", out, *SMALL, *args), 1, words)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_two_runs_cannot_share_a_folder(tmp_path):
    holder = Trainer(small_schedule(tmp_path / "run"), log=lambda msg: None)
    try:
        result = train("--out", tmp_path / "run", *SMALL)
        assert_user_error(result, 1, "is in use by another training run")
    finally:
        holder.release()
    assert train("--out", tmp_path / "run", *SMALL, "--epochs", 1).exit_code == 0


def test_a_full_disk_is_one_sentence_with_its_cause(tmp_path, monkeypatch):
    import poetry_lm.model.checkpoint as checkpoint

    def full(payload, f):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as err:  # torch wraps the OS error, as its file writer does
            raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos") from err

    monkeypatch.setattr(checkpoint.torch, "save", full)
    result = train("--out", tmp_path / "run", *SMALL, "--epochs", 1)
    assert_user_error(result, 1, "cannot write checkpoint", "No space left on device")
    assert not list((tmp_path / "run").glob("*.tmp"))


class FullDisk:
    """A file on a completely full disk: it opens (creating a file takes no data block) but
    every write fails, as the OS fails it."""

    def __init__(self, real):
        self.real = real

    def __getattr__(self, name):
        return getattr(self.real, name)

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("there", [False, True])
def test_a_completely_full_disk_names_the_folder_and_leaves_nothing(there, tmp_path, monkeypatch):
    import builtins

    import poetry_lm.train.run_folder as run_folder

    out = tmp_path / "runs" / "run"
    if there:  # a folder that was there keeps what it held
        out.mkdir(parents=True)
        (out / "notes.txt").write_text("mine")
    full = lambda *args, **kwargs: FullDisk(builtins.open(*args, **kwargs))  # noqa: E731
    monkeypatch.setattr(run_folder, "open", full, raising=False)  # the lock file's write
    result = train("--out", out, *SMALL, "--epochs", 1)
    assert_user_error(result, 1, f"cannot use {out} as a run folder", "No space left on device")
    if there:
        assert [p.name for p in out.iterdir()] == ["notes.txt"]
    else:
        assert not (tmp_path / "runs").exists()


def test_stale_temporaries_are_removed(two_epochs, tmp_path):
    out = copy_run(two_epochs, tmp_path)
    (out / "last.pt1a2b3c.tmp").write_bytes(b"half a checkpoint")
    (out / "best.ptzz.tmp").write_bytes(b"")
    assert train("--out", out, "--resume", "--epochs", 3).exit_code == 0
    assert not list(out.glob("*.tmp"))


def test_a_run_killed_between_last_and_best_writes_best_on_resume(tmp_path):
    out = tmp_path / "run"
    assert train("--out", out, *SMALL, "--epochs", 1).exit_code == 0
    stale_best = (out / "best.pt").read_bytes()
    assert train("--out", out, "--resume", "--epochs", 2).exit_code == 0
    last = read_checkpoint(out / "last.pt")
    assert last["progress"]["best_step"] == last["progress"]["global_step"]  # epoch 2 improved
    (out / "best.pt").write_bytes(stale_best)  # as if killed before best.pt was written
    result = train("--out", out, "--resume")  # nothing left to train: only the repair
    assert result.exit_code == 0 and "written now" in result.output, result.output
    best = read_checkpoint(out / "best.pt")
    for key, tensor in last["model"].items():
        assert torch.equal(best["model"][key], tensor)


def test_the_checkpoint_names_the_shipped_corpus_portably(two_epochs):
    assert read_checkpoint(two_epochs / "last.pt")["train"]["corpus"] == "corpus/tang.jsonl.xz"


# -- 4. a progress display that loses its reader -------------------------------------------------


def test_training_survives_its_progress_reader_going_away(tmp_path):
    out = tmp_path / "run"
    args = " ".join([sys.executable, "train.py", "--out", str(out), *SMALL])
    subprocess.run(f"{args} 2>&1 | head -1", shell=True, cwd=ROOT, timeout=300, check=False)
    last = read_checkpoint(out / "last.pt")
    assert last["progress"]["epoch"] == 2  # every epoch trained and saved
    assert json.loads((out / "metrics.json").read_text())["result"] is not None
