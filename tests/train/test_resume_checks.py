"""A damaged or foreign last.pt is refused before resuming builds anything, in one sentence that
names it and the fault; a weight that is not a dense float32 CPU tensor is refused by load_model
and by resume alike (one check)."""

import shutil

import pytest
import torch
from click.testing import CliRunner

import poetry_lm.train.trainer as trainer
from poetry_lm.cli.train import train_command
from poetry_lm.model.checkpoint import CheckpointError, load_model, read_checkpoint
from poetry_lm.model.lm import ModelConfig, PoetryLM

SMALL = [
    "--limit-poems", "120", "--embed-dim", "8", "--hidden-dim", "16", "--softmax", "full",
    "--batch-size", "16", "--seq-len", "33", "--seq-step", "16", "--lr", "0.01",
    "--epochs", "1", "--patience", "5", "--batching", "windows",
]  # fmt: skip
FIRST_WEIGHT = "embedding.weight"


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "run"
    result = CliRunner().invoke(train_command, ["--out", str(out), *SMALL])
    assert result.exit_code == 0, result.output
    return out


def with_weight(ckpt, name, tensor):
    return {**ckpt, "model": {**ckpt["model"], name: tensor}}


def other_models_adam_state():
    """The Adam state of a model of other sizes, one step in."""
    model = PoetryLM(
        ModelConfig(vocab_size=60, embed_dim=8, hidden_dim=12, softmax="full", couplet_input=False)
    )
    adam = torch.optim.Adam(model.parameters(), lr=0.01)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    adam.step()
    return adam.state_dict()


def sgd_state(ckpt):
    """Momentum buffers where the run's Adam keeps its moments."""
    state = ckpt["optimizer"]
    moments = {i: {"momentum_buffer": s["exp_avg"]} for i, s in state["state"].items()}
    return {**state, "state": moments}


def resized(ckpt, **sizes):
    return {**ckpt, "config": {**ckpt["config"], **sizes}}


def weight_of_shape(ckpt, shape):
    return with_weight(ckpt, FIRST_WEIGHT, torch.zeros(shape))


FORGERIES = {
    "a weight of the wrong shape": (lambda c: weight_of_shape(c, (5, 8)), "shape"),
    "sizes that disagree with the weights": (lambda c: resized(c, hidden_dim=32), "does not match"),
    "a config of 2**31 hidden units": (lambda c: resized(c, hidden_dim=2**31), "does not match"),
    "a config of a million layers": (lambda c: resized(c, num_layers=10**6), "does not match"),
    "an RNG state that is not one": (lambda c: {**c, "rng": torch.zeros(3)}, "RNG state"),
    "another model's optimizer": (
        lambda c: {**c, "optimizer": other_models_adam_state()},
        "this model's 8 parameters",
    ),
    "SGD's state in an Adam run": (lambda c: {**c, "optimizer": sgd_state(c)}, "adam state"),
    "a vocabulary cut by 50 tokens": (
        lambda c: {**c, "vocab": c["vocab"][:-50]},
        "vocabulary has",
    ),
    "a weight average that is not one": (
        lambda c: {**c, "train": {**c["train"], "ema_decay": 0.5}, "averaged": {"x": 1}},
        "weight average",
    ),
    "a progress counter that is not a number": (
        lambda c: {**c, "progress": {**c["progress"], "epoch": "one"}},
        "progress epoch",
    ),
    "a setting this version does not have": (
        lambda c: {**c, "train": {**c["train"], "warp_drive": True}},
        "warp_drive",
    ),
}


@pytest.mark.parametrize("forgery", FORGERIES)
def test_resume_refuses_a_damaged_last_pt_before_building_anything(
    forgery, one_epoch, tmp_path, monkeypatch
):
    out = tmp_path / "run"
    shutil.copytree(one_epoch, out)
    change, words = FORGERIES[forgery]
    torch.save(change(read_checkpoint(out / "last.pt")), out / "last.pt")
    last, best = (out / "last.pt").read_bytes(), (out / "best.pt").read_bytes()

    def no_model(*args):
        raise AssertionError("resume built a model from a checkpoint it should have refused")

    monkeypatch.setattr(trainer, "build_model", no_model)  # refused before any allocation
    result = CliRunner().invoke(train_command, ["--out", str(out), "--resume", "--epochs", "2"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    message = result.output.strip().splitlines()[-1]
    assert message.startswith("Error: checkpoint ") and "last.pt cannot be" in message, message
    assert words in message, message
    assert (out / "last.pt").read_bytes() == last and (out / "best.pt").read_bytes() == best
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in one_epoch.iterdir())


def complex_weight(t):
    return t.to(torch.complex64)


# what is not a dense float32 CPU tensor: refused, naming the weight and what it is
WEIGHT_FAULTS = {
    "sparse": (lambda t: t.to_sparse(), "is a sparse_coo tensor, not a dense one"),
    "meta": (lambda t: t.to("meta"), "is on the meta device, not held in the file"),
    "complex64": (complex_weight, "is complex64, not float32"),
    "float64": (lambda t: t.double(), "is float64, not float32"),
    "int64": (lambda t: t.long(), "is int64, not float32"),
    "float16": (lambda t: t.half(), "is float16, not float32"),
    "bfloat16": (lambda t: t.bfloat16(), "is bfloat16, not float32"),
}


@pytest.mark.parametrize("kind", WEIGHT_FAULTS)
def test_a_weight_that_is_not_a_dense_float32_cpu_tensor_is_refused(kind, one_epoch, tmp_path):
    change, words = WEIGHT_FAULTS[kind]
    for name in ("best.pt", "last.pt"):
        ckpt = read_checkpoint(one_epoch / name)
        path = tmp_path / name
        torch.save(with_weight(ckpt, FIRST_WEIGHT, change(ckpt["model"][FIRST_WEIGHT])), path)
        with pytest.raises(CheckpointError) as refused:
            load_model(path)
        assert f"checkpoint {path} cannot be used: its weight {FIRST_WEIGHT} {words}" == str(
            refused.value
        )
    out = tmp_path / "run"
    shutil.copytree(one_epoch, out)
    shutil.copy(tmp_path / "last.pt", out / "last.pt")
    result = CliRunner().invoke(train_command, ["--out", str(out), "--resume", "--epochs", "2"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert f"last.pt cannot be used: its weight {FIRST_WEIGHT} {words}" in result.output


def test_a_checked_last_pt_still_resumes(one_epoch, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(one_epoch, out)
    result = CliRunner().invoke(train_command, ["--out", str(out), "--resume", "--epochs", "2"])
    assert result.exit_code == 0, result.output
    load_model(out / "best.pt")
    assert read_checkpoint(out / "last.pt")["progress"]["epoch"] == 2
