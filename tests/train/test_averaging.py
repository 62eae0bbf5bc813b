"""Averaged weights (``--ema-decay``): the average is the one stated, validation scores it,
best.pt holds it, and it survives a resume."""

import pytest
import torch
from click.testing import CliRunner
from conftest import tiny_config

from poetry_lm.cli.train import train_command
from poetry_lm.model.checkpoint import read_checkpoint
from poetry_lm.train.trainer import Trainer

# windows, no dropout, a constant rate: every step is a pure function of the saved state
PURE = dict(batching="windows", lr_schedule="constant", warmup_steps=0, limit_poems=120)


def pure_config(out, **overrides):
    return tiny_config(out, dict(dropout=0.0), **{**PURE, **overrides})


def quiet(msg):
    pass


def test_the_average_is_the_stated_moving_average_of_the_weights(tmp_path):
    decay = 0.8
    trainer = Trainer(pure_config(tmp_path, ema_decay=decay, max_epochs=1), log=quiet)
    seen = []  # the weights after each optimizer step
    step = trainer.optimizer.step

    def step_and_record(*args, **kwargs):
        out = step(*args, **kwargs)
        seen.append({k: v.detach().clone() for k, v in trainer.model.named_parameters()})
        return out

    trainer.optimizer.step = step_and_record
    trainer.fit()
    assert len(seen) > 3
    expected = dict(seen[0])  # the average starts as the first step's weights
    for weights in seen[1:]:
        expected = {k: decay * expected[k] + (1 - decay) * w for k, w in weights.items()}
    averaged = dict(trainer.averaged.module.named_parameters())
    for name, value in expected.items():
        torch.testing.assert_close(averaged[name], value, rtol=1e-5, atol=1e-6)
    # and it is not simply the last weights
    assert not torch.allclose(averaged["embedding.weight"], seen[-1]["embedding.weight"])


def test_validation_scores_the_average_and_best_pt_holds_it(tmp_path):
    trainer = Trainer(pure_config(tmp_path, ema_decay=0.9), log=quiet)
    trainer.fit()
    for record in trainer.history:  # both figures, and they differ
        assert record["val_ppl"] != record["val_ppl_weights"] > 1
    last, best = read_checkpoint(tmp_path / "last.pt"), read_checkpoint(tmp_path / "best.pt")
    assert round(best["progress"]["best_val_ppl"], 3) == min(h["val_ppl"] for h in trainer.history)
    if best["progress"]["best_step"] == last["progress"]["global_step"]:
        for name, tensor in best["model"].items():
            assert torch.equal(last["averaged"]["module." + name], tensor), name
    assert any(not torch.equal(last["model"][name], best["model"][name]) for name in best["model"])


def test_a_resumed_run_keeps_its_average(tmp_path):
    whole = Trainer(pure_config(tmp_path / "whole", ema_decay=0.9), log=quiet)
    whole.fit()
    first = Trainer(pure_config(tmp_path / "split", ema_decay=0.9, max_epochs=1), log=quiet)
    first.fit()
    resumed = Trainer(
        pure_config(tmp_path / "split", ema_decay=0.9),
        resume=True,
        log=quiet,
        limits={"max_epochs": 2},
    )
    resumed.fit()
    for name in ("last.pt", "best.pt"):
        mine = read_checkpoint(tmp_path / "split" / name)
        theirs = read_checkpoint(tmp_path / "whole" / name)
        for key in ("model", "averaged") if name == "last.pt" else ("model",):
            for param, tensor in theirs[key].items():
                assert torch.equal(mine[key][param], tensor), (name, key, param)


def test_an_average_can_start_when_a_run_is_resumed(tmp_path):
    Trainer(pure_config(tmp_path, max_epochs=1), log=quiet).fit()
    said = []
    resumed = Trainer(
        pure_config(tmp_path),
        resume=True,
        log=said.append,
        limits={"max_epochs": 2, "ema_decay": 0.5},
    )
    # the average begins at the weights the run had reached
    start = read_checkpoint(tmp_path / "last.pt")["model"]
    for name, tensor in resumed.averaged.module.state_dict().items():
        assert torch.equal(tensor, start[name]), name
    resumed.fit()
    assert any("--ema-decay 0.5" in line for line in said)
    first, second = resumed.history
    assert "val_ppl_weights" not in first and second["val_ppl_weights"] > 1


def test_a_changed_decay_on_resume_says_the_average_restarts(tmp_path):
    Trainer(pure_config(tmp_path, ema_decay=0.9, max_epochs=1), log=quiet).fit()
    said = []
    resumed = Trainer(
        pure_config(tmp_path), resume=True, log=said.append, limits={"ema_decay": 0.5}
    )
    assert "the weight average restarts from the resumed weights (--ema-decay 0.5)" in said
    start = read_checkpoint(tmp_path / "last.pt")["model"]  # not the run's average: restarted
    for name, tensor in resumed.averaged.module.state_dict().items():
        assert torch.equal(tensor, start[name]), name
    resumed.release()
    for decay, words in [
        (0.9, None),  # the same decay: the run's own average, nothing to say
        (0.0, "the run's weight average (--ema-decay 0.9) is dropped: --ema-decay 0"),
    ]:
        said.clear()
        limits = {"ema_decay": decay}
        Trainer(pure_config(tmp_path), resume=True, log=said.append, limits=limits).release()
        averages = [line for line in said if "weight average" in line]
        assert averages == ([words] if words else []), said


@pytest.mark.parametrize("value", ["1", "-0.1", "nan"])
def test_a_decay_outside_0_to_1_is_a_usage_error(value, tmp_path):
    result = CliRunner().invoke(train_command, ["--out", str(tmp_path), "--ema-decay", value])
    assert result.exit_code == 2 and "--ema-decay" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "last.pt").exists()


def test_a_run_saved_before_a_setting_existed_resumes_with_what_it_did(tmp_path):
    Trainer(pure_config(tmp_path, max_epochs=1), log=quiet).fit()
    payload = torch.load(tmp_path / "last.pt", weights_only=True)
    for name in ("title_share", "ema_decay"):  # as a checkpoint from before either
        del payload["train"][name]
    torch.save(payload, tmp_path / "last.pt")
    said = []
    resumed = Trainer(
        pure_config(tmp_path), resume=True, log=said.append, limits={"ema_decay": 0.5}
    )
    # titles were not read then (today's default is 0.5), and there was no average
    assert resumed.cfg.title_share == 0.0
    assert "resuming with --ema-decay 0.5 (the run had 0.0)" in said
    resumed.release()
