"""One source of defaults: the settings dataclasses hold the shipped recipe, the command line
takes its defaults from them, and each check is made once, in the dataclass."""

from dataclasses import fields

import pytest
from click.testing import CliRunner

from poetry_lm.cli.train import train_command
from poetry_lm.cli.write import generate_command
from poetry_lm.model.checkpoint import read_checkpoint
from poetry_lm.model.lm import ModelConfig, PoetryLM
from poetry_lm.options import field_default
from poetry_lm.paths import SHIPPED_MODEL
from poetry_lm.request import PoemRequest, Sampling
from poetry_lm.settings import SettingError
from poetry_lm.train.trainer import TrainConfig

# fields no option sets: the vocabulary's size, the adaptive cutoffs and the couplet input's
# token kinds come from the corpus, and the model's settings reach TrainConfig as one dict
NOT_OPTIONS = {"vocab_size", "cutoffs", "verse_marks", "verse_resets", "model"}
# a request's Sampling is its own fields' options; what a user typed is the command line's to say
NOT_OPTIONS |= {"sampling", "given"}
OPTION_FIELDS = {f.name for cls in (PoemRequest, Sampling) for f in fields(cls)}
COMMANDS = (
    (train_command, (TrainConfig, ModelConfig)),
    (generate_command, (PoemRequest, Sampling)),
)


@pytest.mark.parametrize("command, classes", COMMANDS, ids=["train", "generate"])
def test_every_setting_is_an_option_with_the_dataclass_default(command, classes):
    params = {p.name: p for p in command.params}
    for cls in classes:
        for f in fields(cls):
            if f.name in NOT_OPTIONS:
                continue
            assert f.name in params, f"{cls.__name__}.{f.name} has no option"
            param = params[f.name]
            assert param.default == field_default(cls, f.name), f.name
            assert param.help == f.metadata["help"], f.name


def test_the_dataclass_defaults_are_the_shipped_recipe():
    """So that Trainer(TrainConfig()) in a notebook trains the shipped model again."""
    ckpt = read_checkpoint(SHIPPED_MODEL)
    train = TrainConfig()
    for name in ("batching", "seq_len", "seq_step", "batch_size", "optimizer", "lr"):
        assert getattr(train, name) == ckpt["train"][name], name
    for name in ("lr_schedule", "warmup_steps", "clip", "min_freq", "max_epochs", "patience"):
        assert getattr(train, name) == ckpt["train"][name], name
    for name in ("title_share", "seed"):
        assert getattr(train, name) == ckpt["train"][name], name
    model = ModelConfig(vocab_size=ckpt["config"]["vocab_size"])
    for name in ("embed_dim", "hidden_dim", "num_layers", "dropout", "softmax", "cell"):
        assert getattr(model, name) == ckpt["config"][name], name
    for name in ("couplet_input", "direction", "forget_bias", "weight_drop", "locked_dropout"):
        assert getattr(model, name) == ckpt["config"][name], name
    assert (Sampling().temperature, Sampling().top_p) == (0.8, 0.95)


def test_a_request_left_at_its_defaults_asks_what_the_command_line_does():
    """PoemRequest() is `python generate.py`: every option's default is the field's, read
    into the same request (rhyme on; 平仄 on with a form)."""
    defaults = {p.name: p.default for p in generate_command.params if p.name in OPTION_FIELDS}
    assert PoemRequest.of(**defaults) == PoemRequest()
    assert PoemRequest().rhyme and PoemRequest().tones is None
    assert PoemRequest(form="五绝").constraints().tones  # 平仄 on with a form
    assert PoemRequest().check().max_len == 128


def test_the_adaptive_default_needs_cutoffs_only_to_build_the_output_layer():
    config = ModelConfig(vocab_size=50, couplet_input=False)
    with pytest.raises(SettingError, match="adaptive softmax needs cutoffs"):
        PoetryLM(config)
    config.cutoffs = [10, 30]
    assert PoetryLM(config).adaptive.cutoffs == [10, 30, 50]


@pytest.mark.parametrize(
    "make, fields_named",
    [
        (
            lambda: ModelConfig(10, softmax="adaptive", tie_weights=True),
            "tie_weights needs softmax",
        ),
        (lambda: TrainConfig(bf16=True), "bf16 needs device cuda"),
        (lambda: TrainConfig(seq_len=16, seq_step=17), "seq_step cannot exceed seq_len"),
        (lambda: TrainConfig(model={"cell": "lstm2"}), "cell must be one of"),
        (lambda: TrainConfig(optimizer="rmsprop"), "optimizer must be one of adam, sgd"),
        (lambda: PoemRequest.of(beam=2, best_of=2).check(), "choose beam or best_of"),
        (lambda: PoemRequest.of(top_p=0).check(), "top_p must be in"),
        (lambda: PoemRequest.of(temperature=101).check(), r"temperature must be in \(0, 100\]"),
    ],
)
def test_each_check_is_made_by_the_dataclass_naming_fields(make, fields_named):
    with pytest.raises(SettingError, match=fields_named):
        make()


@pytest.mark.parametrize(
    "command, args, option, words",
    [
        (train_command, ["--tie-weights"], "--tie-weights", "--tie-weights needs --softmax full"),
        (train_command, ["--dropout", "1"], "--dropout", "--dropout must be in [0, 1)"),
        (generate_command, ["--beam", "2", "--best-of", "3"], "--beam", "choose --beam or"),
    ],
)
def test_the_command_line_turns_a_failed_check_into_a_usage_error(command, args, option, words):
    result = CliRunner().invoke(command, args)
    assert result.exit_code == 2 and result.exception.__class__ is SystemExit
    (line,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert option in line and words in line
    # named once: "Error: --dropout must be …", never "Invalid value for '--dropout': --dropout"
    assert f"'{option}': {option} " not in line
    assert "Traceback" not in result.output
