"""The Trainer used directly, as from a notebook: the time budget, and what __init__ prepares."""

import inspect
import json

from conftest import tiny_config

from poetry_lm.model.checkpoint import read_checkpoint
from poetry_lm.train import trainer as trainer_module
from poetry_lm.train.trainer import Trainer


def test_a_spent_time_budget_ends_with_a_partial_epoch_validated(tmp_path):
    # a budget far below one step's time: the first step spends it
    trainer = Trainer(tiny_config(tmp_path, max_minutes=1e-6), log=lambda msg: None)
    result = trainer.fit()
    (record,) = trainer.history
    assert 0 < record["epoch"] < 1 and record["step"] == 1
    assert record["tokens_per_s"] > 0 and round(result["best_val_ppl"], 3) == record["val_ppl"]
    progress = read_checkpoint(tmp_path / "last.pt")["progress"]
    assert progress["epoch"] == 0 and progress["step_in_epoch"] == 1
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["history"] == trainer.history


def test_init_prepares_every_attribute_the_loop_reads(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, batching="windows"), log=lambda msg: None)
    before = set(vars(trainer))
    trainer.fit()
    # the loop sets nothing new: every attribute exists from __init__ on
    assert set(vars(trainer)) == before
    assert trainer.batches.windows is not None and trainer.batches.windows.shape[1] == 33
    assert len(trainer.batches.encoded) == 200 and trainer.progress.epoch == 2


def test_the_trainer_reads_no_attribute_it_may_not_have():
    # every attribute is set in __init__, so none is read back with a fallback
    assert "getattr(self" not in inspect.getsource(trainer_module)
