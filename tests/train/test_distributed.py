"""Two CPU processes under torchrun train exactly like one process with the same global batch.

The two processes are the real thing (torchrun starting train.py); the one process they are
compared with, and the resume of their checkpoint, are train.py's command run in this process
(the same code, without two more interpreters that import torch and read the corpus)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import TINY_TRAIN

from poetry_lm.cli.train import train_command

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent))


def history(out: Path) -> list[dict]:
    return json.loads((out / "metrics.json").read_text())["history"]


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun is not installed beside this Python")
@pytest.mark.parametrize("batching", ["windows", "streams"])
def test_two_processes_match_one_process(tmp_path, batching):
    """Streams: each process carries the state of its own columns from chunk to chunk."""
    args = [
        *TINY_TRAIN,
        "--limit-poems",
        "100",
        "--batch-size",
        "16",
        "--dropout",
        "0",
        "--batching",
        batching,
    ]
    single = CliRunner().invoke(train_command, ["--out", str(tmp_path / "one"), *args])
    assert single.exit_code == 0, single.output
    double = subprocess.run(
        [
            TORCHRUN,
            "--standalone",
            "--nproc_per_node=2",
            "train.py",
            "--out",
            str(tmp_path / "two"),
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert double.returncode == 0, double.stderr
    assert "× 2 process(es)" in double.stderr
    one, two = history(tmp_path / "one"), history(tmp_path / "two")
    assert len(one) == len(two) == 2
    for a, b in zip(one, two):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["val_ppl"] == pytest.approx(a["val_ppl"], rel=1e-4)
    # only rank 0 writes, and its result line is the only one
    assert double.stdout.count("best_val_ppl") == 1
    # a checkpoint written by two processes resumes in one
    resumed = CliRunner().invoke(
        train_command, ["--out", str(tmp_path / "two"), "--resume", "--epochs", "3"]
    )
    assert resumed.exit_code == 0, resumed.output
    assert [h["epoch"] for h in history(tmp_path / "two")] == [1, 2, 3]
