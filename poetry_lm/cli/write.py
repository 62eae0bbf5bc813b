"""``poetry-lm generate``: write poems. Options → a PoemRequest → the Writer → standard output."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import fields

import click
from click.core import ParameterSource

from poetry_lm.decoding.loop import verses
from poetry_lm.errors import USER_ERRORS
from poetry_lm.options import (
    SEED,
    TEXT,
    form_option,
    model_option,
    option_from,
    set_threads,
    threads_option,
)
from poetry_lm.request import PoemRequest, Sampling
from poetry_lm.settings import SettingError
from poetry_lm.streams import emit, setup_streams
from poetry_lm.usage import option_error, usage_error

# the PoemRequest fields that are CLI options (starts come from CHARS and --start too)
REQUEST_OPTIONS = [
    ("starts", ("--start",), dict(type=TEXT, multiple=True, show_default=False)),
    ("n", ("-n", "--num"), {}),
    ("form", (), dict(callback=lambda ctx, param, value: form_name(ctx, param, value))),
    ("acrostic", (), dict(type=TEXT)),
    ("keywords", (), dict(type=TEXT, multiple=True, show_default=False)),
    ("rhyme", (), {}),
    ("rhyme_first", ("--rhyme-first/--no-rhyme-first",), {}),
    ("tones", ("--tones/--no-tones",), {}),
    ("heard", (), {}),
    ("no_repeat", (), {}),
    ("title", (), dict(type=TEXT)),
    ("prime", (), dict(type=TEXT)),
    ("max_len", (), {}),
    ("best_of", (), {}),
    ("rerank_with", (), dict(type=click.Path(dir_okay=False))),
    ("rerank_weight", (), {}),
    ("select", (), dict(type=TEXT)),
    ("coherence_model", (), dict(type=click.Path(dir_okay=False))),
    ("seed", (), dict(type=SEED)),
]


def request_options(command):
    """Every PoemRequest and Sampling field as an option, default and help from the field."""
    for f in reversed(fields(Sampling)):
        command = option_from(Sampling, f.name)(command)
    for name, decls, attrs in reversed(REQUEST_OPTIONS):
        command = option_from(PoemRequest, name, *decls, **attrs)(command)
    return command


@click.command("generate")
@click.argument("chars", type=TEXT, required=False, default="")
@model_option
@request_options
@click.option(
    "--script", type=click.Choice(["simplified", "traditional"]), default="simplified",
    show_default=True,
)  # fmt: skip
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
    help="json: one object per line with title, text, lines, form, rhyme, score, per-character "
    "log-probabilities, truncated (and backward with --rerank-with).",
)  # fmt: skip
@click.option(
    "-v", "--verbose", is_flag=True,
    help="On stderr: each poem's rhyme, score (and backward score) and dropped constraints.",
)  # fmt: skip
@threads_option
def generate_command(chars, checkpoint, script, fmt, verbose, threads, **options):
    """Write poems that begin with each of CHARS (e.g. 日红山夜湖海月), or with each --start text.

    Input in either script is accepted and read as simplified script."""
    setup_streams()
    set_threads(threads)
    from poetry_lm.text.corpus import to_traditional

    ctx = click.get_current_context()
    typed = {n for n in options if ctx.get_parameter_source(n) == ParameterSource.COMMANDLINE}
    request = PoemRequest.of(**options, given=frozenset(typed))
    checked(request.check)  # the options' own rules, before the model is read
    writer = load_writer(checkpoint)
    starts = (*read_chars(chars, writer.table), *request.starts)
    request = checked(writer.check, dataclasses.replace(request, starts=starts))
    warn_title(writer, request.title)
    script_of = to_traditional if script == "traditional" else str
    poems = (poem for batch in writer.batches(request) for poem in batch)
    for written, poem in enumerate(poems, 1):  # each batch is written as soon as it is done
        if fmt == "text" and written > 1:
            emit("")  # the blank line between poems, before the next poem's -v header
        if verbose:
            click.echo(f"poem {written}: {poem_notes(poem, request, script_of)}", err=True)
        if fmt == "json":
            emit(json.dumps(poem_record(poem, request, script_of), ensure_ascii=False))
        else:
            emit("\n".join(poem_lines(poem, request, script_of)))


def form_name(ctx, param, value: str | None) -> str | None:
    """--form: None when not given; any given value, the empty one included, must name a form
    (its name is kept: 五绝 for wujue)."""
    form = form_option(ctx, param, value)
    return form and form.name


def checked(check, *args):
    """``check(*args)``; a SettingError is a usage error naming the option at fault, another
    user error (a checkpoint that cannot be read) one sentence and exit status 1."""
    try:
        return check(*args)
    except SettingError as err:
        raise usage_error(err) from None
    except USER_ERRORS as err:
        raise click.ClickException(str(err)) from None


def load_writer(checkpoint: str):
    """The Writer of ``--model``: unreadable, exit status 1; a backward model, a usage error."""
    from poetry_lm.writing.writer import Writer

    writer = checked(Writer, checkpoint)
    try:
        _ = writer.step  # packed once for every batch
    except ValueError as err:  # a backward model: the stepper says why it cannot write
        raise option_error(f"{err} (give it to --rerank-with)", "--model") from None
    return writer


def read_chars(chars: str, table) -> list[str]:
    """CHARS: one start character per poem, each a Chinese character the model knows."""
    from poetry_lm.request import known_text
    from poetry_lm.text.corpus import is_ideograph
    from poetry_lm.text.normalise import normalise

    chars = normalise(chars, table.index)
    odd = next((ch for ch in chars if not is_ideograph(ch)), None)
    if odd:
        raise option_error(
            f"{odd!r} is not a Chinese character; each of CHARS starts a poem", "CHARS"
        )
    return list(checked(known_text, table, chars, "chars"))


def warn_title(writer, title: str) -> None:
    """Warnings on stderr for a title the model reads in part (characters it does not know are
    read as <unk>, as in training), or never learnt to read (its checkpoint says it trained
    with title_share 0: the title is read anyway)."""
    from poetry_lm.model.checkpoint import trained_without_titles

    if title and trained_without_titles(writer.saved):
        click.echo(
            "warning: the model was trained with --title-share 0, so it never learnt to read a "
            "title; the title is read anyway",
            err=True,
        )
    unknown = writer.table.unknown_chars(title)
    if unknown:
        click.echo(
            f"warning: the model does not know {''.join(unknown)} of the title; read as <unk>",
            err=True,
        )


def poem_notes(poem, request: PoemRequest, script_of) -> str:
    """-v's line about a poem: its score, rhyme, dropped constraints, truncation, backward score."""
    return (
        f"mean log-probability {poem.score:.3f}"
        + "".join(f"; rhyme {script_of(g)}" for g in poem.rhyme)
        + "".join(f"; {event}" for event in poem.backoffs)
        + (f"; truncated at --max-len {request.max_len}" if poem.truncated else "")
        + (
            f"; backward mean log-probability {poem.backward:.3f}"
            if poem.backward is not None
            else ""
        )
        + (f"; --select {request.select} {poem.selected:.3f}" if poem.selected is not None else "")
    )


def poem_lines(poem, request: PoemRequest, script_of) -> list[str]:
    """A poem as text output shows it: its title as 《春望》 (with --title), then a verse a line."""
    title = [f"《{script_of(request.title)}》"] if request.title else []
    return title + verses(script_of(poem.text))


def poem_record(poem, request: PoemRequest, script_of) -> dict:
    """--format json's object for a poem, in the script asked for."""
    text = script_of(poem.text)
    record = {
        "title": script_of(request.title) or None,  # null without one, as in the API
        "text": text,
        "lines": verses(text),
        "form": request.form and script_of(request.form),  # 七绝 → 七絕, as text and title
        "rhyme": [script_of(g) for g in poem.rhyme],
        "score": round(poem.score, 4),
        "logprobs": [round(lp, 4) for lp in poem.logprobs],
        "truncated": poem.truncated,
    }
    if poem.backward is not None:
        record["backward"] = round(poem.backward, 4)
    return record
