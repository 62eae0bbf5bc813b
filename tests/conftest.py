import os
import shutil

import pytest
import torch
from click.testing import CliRunner
from filelock import FileLock  # torch's own dependency

from poetry_lm.cli.train import train_command

torch.set_num_threads(1)  # tiny tensors: extra threads only contend


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    """``-n auto`` (setup.cfg): a worker per CPU this process may run on (taskset, a container's
    share), not per CPU of the machine."""
    return len(os.sched_getaffinity(0))


TINY_TRAIN = [
    "--limit-poems",
    "200",
    "--embed-dim",
    "16",
    "--hidden-dim",
    "32",
    "--epochs",
    "2",
    "--batch-size",
    "32",
    "--lr",
    "0.01",
    "--seq-len",
    "33",
    "--seq-step",
    "16",
    # the plain recipe; tiny_theme_run adds titles and the couplet input
    "--no-couplet-input",
    "--title-share",
    "0",
]


def tiny_config(out, model: dict | None = None, **overrides):
    """A TrainConfig of a tiny plain run (no titles, no couplet input) into ``out``, as TINY_TRAIN
    reads; ``model`` (ModelConfig fields) and ``overrides`` (TrainConfig fields) change it."""
    from poetry_lm.train.trainer import TrainConfig

    settings = dict(
        out_dir=str(out), limit_poems=200, batch_size=32, seq_len=33, seq_step=16, lr=0.01,
        max_epochs=2, title_share=0.0,
    )  # fmt: skip
    plain = dict(embed_dim=16, hidden_dim=32, softmax="full", couplet_input=False)
    return TrainConfig(**{**settings, **overrides}, model={**plain, **(model or {})})


def shared_run(tmp_path_factory, name: str, args: list[str]):
    """The folder of a tiny training run through the CLI (``train.py`` with ``args``), trained once
    per test session: under pytest-xdist the first worker to ask trains it in the folder all the
    workers share, and the others wait for it and read it."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # every worker's base folder is in the session's
    out, done = root / name, root / f"{name}.trained"
    with FileLock(root / f"{name}.lock"):
        if not done.is_file():
            shutil.rmtree(out, ignore_errors=True)  # what a failed attempt left
            result = CliRunner().invoke(train_command, ["--out", str(out), *args])
            assert result.exit_code == 0, result.output
            done.touch()
    return out


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A real (tiny) training run through the CLI; its folder holds best.pt and last.pt."""
    return shared_run(tmp_path_factory, "tiny_run", TINY_TRAIN)


@pytest.fixture(scope="session")
def tiny_backward_run(tmp_path_factory):
    """As ``tiny_run``, reading poems right to left (``--direction backward``): a reader for the
    rerank, on the same vocabulary as ``tiny_run``'s model."""
    return shared_run(
        tmp_path_factory, "tiny_backward_run", [*TINY_TRAIN, "--direction", "backward"]
    )


@pytest.fixture(scope="session")
def tiny_theme_run(tmp_path_factory):
    """As ``tiny_run``, with titles read before half of the poems and the couplet input: a
    model that writes for a title (its folder holds best.pt and last.pt)."""
    args = [*TINY_TRAIN, "--couplet-input", "--title-share", "0.5"]
    return shared_run(tmp_path_factory, "tiny_theme_run", args)


@pytest.fixture(scope="session")
def no_title_model(tmp_path_factory):
    """A checkpoint whose vocabulary has no ``<sep>``, as every model trained before titles:
    it cannot read a title (a tiny untrained model; its path as a string)."""
    from poetry_lm.model.checkpoint import save_checkpoint
    from poetry_lm.model.lm import ModelConfig, PoetryLM
    from poetry_lm.text.vocab import REQUIRED

    vocab = [*REQUIRED, "，", "。", *"床前明月光疑是地上霜举头望低思故乡春"]
    torch.manual_seed(0)
    config = ModelConfig(len(vocab), 8, 8, softmax="full", couplet_input=False)
    path = tmp_path_factory.mktemp("no_title") / "old.pt"
    save_checkpoint(path, PoetryLM(config), vocab)
    return str(path)
