"""decoding-stats reads generate's options by its own parser (tools import no command line):
it takes the same options, and the same options write the same poems."""

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from poetry_lm.cli.write import generate_command
from poetry_lm.tools.decoding_stats import generated_texts
from poetry_lm.tools.request_args import option_words, parse_request, parser

MODEL = str(Path(__file__).resolve().parents[2] / "models" / "poetry_lm.pt")
CLI_ONLY = {"--model", "--script", "--format", "-v", "--verbose", "--threads"}


def option_names(command: click.Command) -> dict[str, set[str]]:
    """{parameter: its option names and their --no- twins} of a command's options."""
    return {
        p.name: {*p.opts, *p.secondary_opts}
        for p in command.params
        if isinstance(p, click.Option) and not set(p.opts) & CLI_ONLY
    }


def test_the_parser_takes_every_option_generate_takes_by_the_same_names():
    assert option_names(parser()) == option_names(generate_command)


def test_options_are_read_into_the_request_with_what_was_typed():
    request = parse_request(["--form", "七律", "--no-tones", "--best-of", "8", "--top-k", "40"])
    assert (request.form, request.tones, request.best_of) == ("七律", False, 8)
    assert request.sampling.top_k == 40 and request.rhyme_first is None and request.heard
    assert request.given == {"form", "tones", "best_of", "top_k"}
    old = parse_request(["--no-heard", "--no-rhyme-first", "--keywords", "春", "--keywords", "雨"])
    assert (old.heard, old.rhyme_first, old.keywords) == (False, False, ("春", "雨"))
    with pytest.raises(click.UsageError, match="No such option.*--bogus"):
        parse_request(["--bogus"])


def test_a_settings_error_names_generates_options():
    with pytest.raises(ValueError) as err:
        parse_request(["--beam", "4", "--best-of", "2"]).check()
    assert option_words(err.value) == "choose --beam or --best-of, not both"


@pytest.mark.parametrize(
    "setting, extra", [("七律-no-tones", "--top-k 40"), ("beam-五绝", ""), ("free", "--no-heard")]
)
def test_decoding_stats_writes_the_poems_generate_writes(setting, extra):
    from poetry_lm.tools.decoding_stats import generate_args

    args = [*generate_args(setting, extra), "-n", "5", "--seed", "3", "--format", "json"]
    out = CliRunner().invoke(generate_command, [*args, "--model", MODEL])
    assert out.exit_code == 0, out.output
    texts = [json.loads(line)["text"] for line in out.output.splitlines()]
    assert generated_texts(setting, 5, 3, MODEL, extra) == texts and len(set(texts)) == 5
