"""Fault injection: a small run killed (SIGKILL, SIGTERM, SIGHUP) at random moments, resumed each
time, ends exactly where an uninterrupted run ends."""

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from click.testing import CliRunner

from poetry_lm.cli.train import train_command
from poetry_lm.model.checkpoint import load_model, read_checkpoint

ROOT = Path(__file__).resolve().parents[2]
# dropout off and windows (a resumed stream restarts its carried state): every step is a pure
# function of the saved state, so a resumed run must give the same weights bit for bit
RUN = [
    "--limit-poems", "150", "--embed-dim", "16", "--hidden-dim", "16", "--softmax", "full",
    "--dropout", "0", "--batching", "windows", "--batch-size", "16", "--seq-len", "33",
    "--seq-step", "16", "--lr", "0.01", "--epochs", "3", "--patience", "5",
]  # fmt: skip
KILLS = [signal.SIGKILL, signal.SIGTERM, signal.SIGKILL, signal.SIGHUP, signal.SIGTERM]


def start(out: Path) -> subprocess.Popen:
    resume = ["--resume"] if (out / "last.pt").exists() else []
    command = [sys.executable, "train.py", "--out", str(out), *RUN, *resume]
    return subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)


def interrupted_run(out: Path, rng: random.Random) -> list[str]:
    """Start, kill at a random moment after training began, resume; return what happened."""
    events = []
    for kill in KILLS:
        proc = start(out)
        for line in proc.stderr:  # the loop starts after this line
            if "steps/epoch" in line:
                break
        delay = rng.uniform(0.0, 1.0)
        time.sleep(delay)
        proc.send_signal(kill)
        rest = proc.stderr.read()
        status = proc.wait(timeout=60)
        events.append(f"{kill.name} after {delay:.2f}s: exit {status}")
        assert "Traceback" not in rest, rest
        if status == 0:  # finished before the signal arrived
            return events
        # -kill: the signal came before training installed its handler or after the run ended
        # and restored it (the default action then); the next start resumes or finds it done
        assert status in (-kill, 128 + kill), events
        if status == 128 + kill:
            assert "interrupted: saved" in rest, rest
    assert CliRunner().invoke(train_command, ["--out", str(out), "--resume"]).exit_code == 0
    return events


def test_killed_and_resumed_run_ends_as_an_uninterrupted_one(tmp_path):
    reference = tmp_path / "reference"
    whole = CliRunner().invoke(train_command, ["--out", str(reference), *RUN])
    assert whole.exit_code == 0, whole.output
    out = tmp_path / "killed"
    events = interrupted_run(out, random.Random())
    assert not list(out.glob("*.tmp")), events  # no temporary file of a killed save is left
    load_model(out / "best.pt")  # loadable, checked
    for name in ("last.pt", "best.pt"):
        mine, theirs = read_checkpoint(out / name), read_checkpoint(reference / name)
        for key, tensor in theirs["model"].items():
            assert torch.equal(mine["model"][key], tensor), (name, key, events)
        assert mine["progress"]["global_step"] == theirs["progress"]["global_step"], events
    # every epoch's train loss covers the whole epoch, resumed or not
    losses = [h["train_loss"] for h in read_checkpoint(out / "last.pt")["history"]]
    assert losses == [h["train_loss"] for h in read_checkpoint(reference / "last.pt")["history"]]
