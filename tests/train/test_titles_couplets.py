"""Training with titles, with the couplet input, and right to left; evaluating such models."""

import math

import torch
from click.testing import CliRunner
from conftest import tiny_config

from poetry_lm.cli import main as cli
from poetry_lm.evaluation.perplexity import perplexity
from poetry_lm.model.checkpoint import load_model
from poetry_lm.train.trainer import Trainer


def train(out, model=None, **overrides):
    """A tiny plain run, one epoch of 120 poems: each test turns on what it tests."""
    settings = dict(limit_poems=120, max_epochs=1, batching="streams")
    cfg = tiny_config(out, model, **{**settings, **overrides})
    trainer = Trainer(cfg, log=lambda msg: None)
    trainer.fit()
    return trainer


def test_a_share_of_poems_is_read_after_its_title_drawn_each_epoch(tmp_path):
    trainer = train(tmp_path, title_share=0.5)
    sep = trainer.table.sep + len(trainer.table)

    def titled(epoch):
        trainer.batches.of_epoch(epoch)
        return [sep in ids for ids in trainer.batches.encoded]

    first, second = titled(0), titled(1)
    assert 0.3 < sum(first) / len(first) < 0.7 and first != second
    # scored tokens are the same with or without titles: the poems' own
    model, table, _ = load_model(tmp_path / "best.pt")
    poems, titles = trainer.texts["valid"][:20], trainer.titles["valid"][:20]
    plain = perplexity(model, table, poems)
    given = perplexity(model, table, poems, titles=titles)
    assert plain.tokens == given.tokens and plain.nll != given.nll
    result = CliRunner().invoke(cli, ["evaluate", str(tmp_path / "best.pt"), "--titles"])
    assert result.exit_code == 0 and "given the titles" in result.output, result.output


def test_a_model_from_before_titles_refuses_them_clearly(tmp_path, no_title_model):
    checkpoint = no_title_model
    result = CliRunner().invoke(cli, ["evaluate", checkpoint, "--titles", "--split", "valid"])
    assert result.exit_code == 1 and "trained without titles" in result.output, result.output
    poems = tmp_path / "p.txt"
    poems.write_text("床前明月光，疑是地上霜。\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["evaluate", checkpoint, "--titles", "--file", str(poems)])
    assert result.exit_code == 2 and "--titles" in result.output


def test_couplet_input_trains_and_is_kept_in_the_checkpoint(tmp_path):
    trainer = train(tmp_path, model=dict(couplet_input=True))
    model, table, payload = load_model(tmp_path / "best.pt")
    assert payload["config"]["couplet_input"] and model.rnn.layers[0].weight_ih.shape[1] == 32
    marks = {table.tokens[i] for i in payload["config"]["verse_marks"]}
    assert {"，", "。"} <= marks
    report = perplexity(model, table, trainer.texts["valid"][:20])
    assert math.isfinite(report.perplexity) and report.perplexity < len(table)


def test_a_backward_model_reads_poems_right_to_left(tmp_path):
    trainer = train(tmp_path, model=dict(direction="backward"))
    assert all(
        ids[1] == trainer.table.index.get(trainer.texts["train"][i][-1], trainer.table.unk)
        for i, ids in enumerate(trainer.batches.encoded[:10])
    )
    model, table, _ = load_model(tmp_path / "best.pt")
    poem = trainer.texts["valid"][0]
    ids = torch.tensor(table.encode_poem(poem[::-1]))[:, None]
    with torch.no_grad():
        nll, n, _ = model.sequence_nll(ids, table.pad)
    report = perplexity(model, table, [poem])
    assert report.tokens == n and math.isclose(report.nll, float(nll), rel_tol=1e-6)
