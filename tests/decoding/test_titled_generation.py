"""Writing for a title (``generate --title``, ``PoemRequest.title``) with a tiny model trained
with titles and the couplet input; a model trained without titles refuses one in one sentence;
``evaluate --titles --as-generated`` reads the titles through generation's step."""

import json

import pytest
import torch
from click.testing import CliRunner

from poetry_lm.cli.evaluate import evaluate_command
from poetry_lm.cli.write import generate_command
from poetry_lm.decoding.loop import best, candidates
from poetry_lm.model.checkpoint import load_model
from poetry_lm.model.stepper import Stepper
from poetry_lm.request import PoemRequest
from poetry_lm.settings import SettingError
from poetry_lm.text.corpus import MAX_TITLE_CHARS, is_ideograph


@pytest.fixture(scope="module")
def theme(tiny_theme_run):
    return tiny_theme_run / "best.pt"


def run(command, *args):
    return CliRunner().invoke(command, [str(a) for a in args])


def records(result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def shape(text: str) -> list[int]:
    """The length of each verse, its mark included."""
    return [len(v) + 1 for v in text.replace("。", "，").split("，") if v]


# each: the options, and what every poem they write must show
OPTIONS = [
    (["--form", "七绝", "--seed", 1], lambda p: shape(p["text"]) == [8] * 4 and p["rhyme"]),
    (["--form", "五律", "--beam", 3, "--seed", 2], lambda p: shape(p["text"]) == [6] * 8),
    (
        ["--form", "五绝", "--acrostic", "春风明月", "--tones", "--seed", 3],
        lambda p: [line[0] for line in p["lines"]] == list("春风明月"),
    ),
    (
        ["山水", "-n", 2, "--best-of", 3, "--max-len", 24, "--seed", 4],
        lambda p: p["text"][0] in "山水" and len(p["text"]) <= 24,
    ),
    (
        ["--start", "春风", "--prime", "明月照高楼。", "--script", "traditional", "--seed", 5],
        lambda p: p["text"].startswith("春風"),
    ),
]


@pytest.mark.parametrize("options, holds", OPTIONS)
def test_a_title_works_with_every_other_option(theme, options, holds):
    titled = records(
        run(generate_command, "--model", theme, "--title", "春望", *options, "--format", "json")
    )
    plain = records(run(generate_command, "--model", theme, *options, "--format", "json"))
    assert len(titled) == len(plain) == (4 if "-n" in options else 1)
    for poem in titled:
        assert poem["title"] == "春望" and holds(poem), poem
    assert all(p["title"] is None for p in plain)  # null without a title, as in the API
    # the same seed, without the title: the model read the title, so its numbers differ
    assert [p["logprobs"] for p in titled] != [p["logprobs"] for p in plain]
    again = records(
        run(generate_command, "--model", theme, "--title", "春望", *options, "--format", "json")
    )
    assert again == titled  # the seed decides


@torch.inference_mode()
def test_a_titled_poem_has_the_models_log_probabilities_given_the_title(theme):
    """Read as training reads it (<bos> title <sep> as context, the couplet input alongside):
    the log-probabilities generation reports are the model's own over the whole sequence."""
    model, table, _ = load_model(theme)
    fields = dict(starts=["春"], title="春望", greedy=True, form="五绝", tones=False)
    request = PoemRequest.of(**fields).check(table)
    (rows,) = candidates(Stepper(model, int8=False), table, request, ["春"], [0])
    poem = best(rows)
    ids = torch.tensor(table.encode_poem(poem.text, "春望"))[:, None]
    hidden, _ = model(ids[:-1])
    every = model.log_probs(hidden[:, 0])  # (T - 1, V)
    first = len(ids) - len(poem.text) - 2  # the step that reads <sep>, before the first character
    expected = every[first:-1].gather(1, ids[first + 1 : -1])[:, 0]
    assert len(poem.text) == 24
    torch.testing.assert_close(torch.tensor(poem.logprobs), expected, atol=1e-4, rtol=0)


def test_a_title_is_read_by_the_text_rule_and_unknown_characters_as_unk(theme):
    model, table, _ = load_model(theme)
    result = run(generate_command, "--model", theme, "--title", " 春望, 其一", "--format", "json")
    assert records(result)[0]["title"] == "春望其一"  # no spaces, its characters only
    rare = next(ch for ch in "龘爨麤靐齉" if ch not in table.index and is_ideograph(ch))
    result = run(generate_command, "--model", theme, "--title", "春" + rare, "--format", "json")
    assert records(result)[0]["title"] == "春" + rare
    assert f"does not know {rare} of the title" in result.stderr


def test_a_title_the_model_cannot_read_is_a_usage_error(theme, no_title_model):
    for args, words in [
        (["--model", theme, "--title", "春" * (MAX_TITLE_CHARS + 1)], f"at most {MAX_TITLE_CHARS}"),
        (["--model", theme, "--title", "spring"], "holds no Chinese character"),
        (["--model", no_title_model, "--title", "春望"], "trained without titles"),
    ]:
        result = run(generate_command, *args)
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        message = result.output.strip().splitlines()[-1]
        assert "--title" in message and words in message, message
    with pytest.raises(SettingError, match="at most 24"):
        PoemRequest.of(title="春" * 25).check()


def test_a_model_trained_with_title_share_0_warns_that_it_never_learnt_titles(tiny_run, theme):
    plain = tiny_run / "best.pt"  # trained with --title-share 0, its vocabulary with <sep>
    result = run(generate_command, "--model", plain, "--title", "春望", "--seed", 1)
    assert result.exit_code == 0, result.output
    (warning,) = [line for line in result.stderr.splitlines() if "never learnt" in line]
    assert warning == (
        "warning: the model was trained with --title-share 0, so it never learnt to read a "
        "title; the title is read anyway"
    )
    assert result.stdout.strip()  # and it writes the poem
    # no warning for a model trained with titles, nor without --title
    for args in (["--model", theme, "--title", "春望"], ["--model", plain]):
        result = run(generate_command, *args, "--seed", 1)
        assert result.exit_code == 0 and "never learnt" not in result.stderr, result.output


def test_evaluate_reads_titles_as_generated(theme):
    """(That the step gives the model's own perplexity with titles: tests/model/test_stepper.py.)"""
    result = run(evaluate_command, theme, "--split", "valid", "--titles", "--as-generated")
    assert result.exit_code == 0 and "given the titles" in result.output, result.output
