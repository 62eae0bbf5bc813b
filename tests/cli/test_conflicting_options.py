"""generate's options that contradict each other, or that the decoding asked for would never
read, are usage errors (exit status 2) naming the option, as is a text no poem can start with
or a character the model does not know, in every option that takes text; serve's --window
waits no longer than the batcher does."""

from dataclasses import replace

import pytest
from click.testing import CliRunner

from poetry_lm.cli.write import generate_command
from poetry_lm.paths import SHIPPED_MODEL
from poetry_lm.request import PoemRequest, Sampling
from poetry_lm.serve.batcher import Batcher
from poetry_lm.serve.command import serve_command
from poetry_lm.serving import MAX_WAIT
from poetry_lm.writing.writer import Writer

UNKNOWN = "𠀀"  # a Chinese character (CJK Extension B) that the shipped model does not know


def invoke(command, *args):
    return CliRunner().invoke(command, [str(a) for a in args])


def assert_usage_error(result, option: str, *words: str):
    """Exit status 2, no traceback, one line naming ``option`` as click names it."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    message = result.output.strip().splitlines()[-1]
    # a sentence that begins with the option names it once: "Error: --rhyme-first needs …"
    named_once = message.startswith(f"Error: {option.strip(chr(39))} ")
    assert named_once or message.startswith(f"Error: Invalid value for {option}: "), message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize(
    "args, option, words",
    [
        (
            ["--no-rhyme", "--rhyme-first", "--form", "五绝", "--seed", 1],
            "'--rhyme-first'",
            "--rhyme-first needs --rhyme",
        ),
        (["--greedy", "--best-of", 4], "'--greedy'", "--best-of"),
        # typed, even at its default value: greedy decoding never reads it
        (["--greedy", "--temperature", 0.8], "'--temperature'", "no effect with --greedy"),
        (["--greedy", "--top-k", 5], "'--top-k'", "no effect with --greedy"),
        (["--greedy", "--top-p", 0.5], "'--top-p'", "no effect with --greedy"),
        (["--greedy", "--beam", 3, "--temperature", 1], "'--temperature'", "with --greedy"),
        (["--beam", 3, "--top-k", 5], "'--top-k'", "no effect with --beam"),
        (["--beam", 3, "--top-p", 0.5], "'--top-p'", "no effect with --beam"),
    ],
)
def test_options_at_odds_are_refused(args, option, words):
    assert_usage_error(invoke(generate_command, *args), option, words)


@pytest.mark.parametrize(
    "args, option, words",
    [
        (["月", "--acrostic", "春夏秋冬"], "'--acrostic'", "no start text can be given"),
        (["--acrostic", UNKNOWN + "山水月"], "'--acrostic'", f"'{UNKNOWN}' in --acrostic"),
        ([UNKNOWN], "'[CHARS]'", f"'{UNKNOWN}' in CHARS"),
        (["--start", UNKNOWN], "'--start'", f"'{UNKNOWN}' in --start"),
        (["--prime", UNKNOWN + "山"], "'--prime'", f"'{UNKNOWN}' in --prime"),
        (["--keywords", UNKNOWN], "'--keywords'", f"'{UNKNOWN}' in --keywords"),
    ],
)
def test_texts_the_model_cannot_use_are_usage_errors(args, option, words):
    assert_usage_error(invoke(generate_command, *args), option, words)


def test_greedy_and_beam_never_read_what_they_refuse():
    """The premise of the refusals: greedy decoding (sampled or beam) writes the same poem
    whatever the temperature, top-k and top-p, and a stochastic beam whatever top-k and top-p."""
    writer = Writer(SHIPPED_MODEL)
    request = writer.check(PoemRequest(form="五绝"))
    others = dict(temperature=0.3, top_k=3, top_p=0.5)
    for base, unused in [
        (Sampling(greedy=True), others),
        (Sampling(greedy=True, beam=3), others),
        (Sampling(beam=3), dict(top_k=3, top_p=0.5)),
    ]:
        poems = [  # unchecked: a check would refuse what the premise is about
            writer.write_rows(replace(request, sampling=sampling), ["月"], [1])[0].text
            for sampling in (base, replace(base, **unused))
        ]
        assert poems[0] == poems[1], (base, poems)


def test_window_is_capped_where_the_batcher_caps_its_wait():
    (window,) = [p for p in serve_command.params if p.name == "window"]
    batcher = Batcher()
    try:
        assert window.type.max == batcher.max_wait == MAX_WAIT
    finally:
        batcher.close()
    result = invoke(serve_command, "--window", 0.5, "--port", 0)  # refused before any model
    assert result.exit_code == 2 and "'--window'" in result.output, result.output
