"""The model in models/ is the one README and models/README.md describe: it loads, it is trained,
and it writes poems."""

from pathlib import Path

from poetry_lm.cli.train import train_command
from poetry_lm.evaluation.perplexity import perplexity
from poetry_lm.model.checkpoint import load_model, read_checkpoint
from poetry_lm.model.stepper import Stepper
from poetry_lm.request import PoemRequest
from poetry_lm.text.corpus import load_corpus
from poetry_lm.train.trainer import TrainConfig
from poetry_lm.writing.writer import Writer

MODEL = Path(__file__).resolve().parents[2] / "models" / "poetry_lm.pt"


def test_shipped_model_is_small_self_contained_and_trained():
    assert MODEL.stat().st_size <= 30 * 2**20
    model, table, ckpt = load_model(MODEL)
    assert "optimizer" not in ckpt  # a model to use, not a run to resume
    assert len(table) == ckpt["config"]["vocab_size"] == 6872
    # 300 test poems: an untrained model scores about the vocabulary size (6872)
    poems = [p.text for p in load_corpus()["test"][:300]]
    report = perplexity(model, table, poems)
    assert report.perplexity < 130
    as_generated = perplexity(model, table, poems, step=Stepper(model))
    # int8 weights cost little
    assert abs(as_generated.perplexity - report.perplexity) < 0.002 * report.perplexity


def test_shipped_model_writes_a_seven_character_quatrain():
    request = PoemRequest.of(starts=["月"], form="七绝", temperature=0.8, top_p=0.95, seed=0)
    poems = Writer(MODEL).write(request)
    lines = poems[0].lines
    assert len(lines) == 4 and lines[0].startswith("月")
    assert [len(line) for line in lines] == [8, 8, 8, 8] and lines[1][-1] == lines[3][-1] == "。"


def test_train_py_defaults_are_the_shipped_recipe():
    """So that `python train.py` trains the shipped model again."""
    ckpt = read_checkpoint(MODEL)
    defaults = {param.name: param.default for param in train_command.params}
    for name in (
        "batching",
        "seq_len",
        "seq_step",
        "batch_size",
        "optimizer",
        "lr_schedule",
        "clip",
        "min_freq",
        "max_epochs",
        "patience",
        "seed",
    ):
        assert ckpt["train"][name] == defaults[name], name
    # --lr defaults to the optimizer's own rate, resolved by TrainConfig
    assert ckpt["train"]["lr"] == TrainConfig(optimizer=defaults["optimizer"]).lr
    for option, field in (
        ("cell", "cell"),
        ("embed_dim", "embed_dim"),
        ("hidden_dim", "hidden_dim"),
        ("num_layers", "num_layers"),  # the option --layers
        ("dropout", "dropout"),
        ("softmax", "softmax"),
    ):
        assert ckpt["config"][field] == defaults[option], option


def test_shipped_model_writes_for_a_title_and_keywords_with_the_couplet_input():
    from click.testing import CliRunner

    from poetry_lm.cli.write import generate_command

    _, table, ckpt = load_model(MODEL)
    assert ckpt["config"]["couplet_input"] and table.sep is not None

    def poem(*args):
        result = CliRunner().invoke(generate_command, ["--form", "五律", "--seed", "1", *args])
        assert result.exit_code == 0, result.output
        return [line for line in result.output.split() if not line.startswith("《")]  # no title

    plain, titled = poem(), poem("--title", "送别")
    assert len(titled) == 8 and titled != plain  # the title is read
    keyed = poem("--title", "送别", "--keywords", "春 雨")
    assert len(keyed) == 8 and all(any(k in verse for verse in keyed) for k in "春雨")
