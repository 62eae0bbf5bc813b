"""``poetry-lm generate``: write poems."""

from __future__ import annotations

import dataclasses
import json

import click
from click.core import ParameterSource

from poetry_lm.cli.common import (
    TEXT,
    FiniteFloatRange,
    emit,
    form_option,
    model_option,
    option_error,
    option_from,
    poem_text,
    run_or_exit,
    seed_option,
    set_threads,
    settings_or_usage_error,
    setup_streams,
    shown_name,
    threads_option,
    usage_error,
)
from poetry_lm.decoding.generate import MAX_TEMPERATURE, SampleOptions
from poetry_lm.decoding.rerank import RerankOptions
from poetry_lm.settings import SettingError

# Poems are decoded in batches of at most this many rows (poems × --best-of or --beam) and
# written as each batch is done, so memory stays bounded whatever -n and the start count ask.
MAX_ROWS = 256
# Below this temperature sampling is --greedy: every weight but the likeliest's is
# exp(-gap / T), under e^-100 for any gap over 1e-4 nats; dividing by a smaller T overflows.
GREEDY_TEMPERATURE = 1e-6


@click.command("generate")
@click.argument("chars", type=TEXT, required=False, default="")
@click.option(
    "--start",
    "start_texts",
    type=TEXT,
    multiple=True,
    help="A start text for one poem (repeatable); CHARS gives one poem per character.",
)
@model_option
@click.option(
    "-n",
    "--num",
    type=click.IntRange(1, 1000),
    default=1,
    show_default=True,
    help="Poems per start.",
)
@click.option(
    "--form",
    callback=form_option,
    default=None,
    help="五绝, 七绝, 五律 or 七律 (wujue, qijue, wulv, qilv): 4 or 8 lines of 5 or 7 characters.",
)
@click.option(
    "--acrostic", type=TEXT, default="", help="Line i begins with the i-th character (藏头诗)."
)
@click.option(
    "--keywords",
    "keywords",
    type=TEXT,
    multiple=True,
    help='Words the poem must hold, each inside one verse: --keywords "春 雨 归" (quoted; '
    "split at spaces, commas and 、) or the option repeated.",
)
@click.option(
    "--rhyme/--no-rhyme",
    default=None,
    help="Even lines end in one 平水韵 group, no rhyme twice (free poems: a group of either "
    "tone, once the first verse sets the length) [default: on].",
)
@click.option("--rhyme-first", is_flag=True, help="The first line rhymes too.")
@click.option(
    "--tones/--no-tones",
    default=None,
    help="Regulated 平仄 (平起 or 仄起) on the 2nd, 4th, 6th and last characters; needs a form "
    "[default: on with a form].",
)
@click.option("--no-repeat", is_flag=True, help="No character twice in a poem (punctuation aside).")
@option_from(SampleOptions, "best_of", type=click.IntRange(1, 64))
@option_from(SampleOptions, "beam", type=click.IntRange(0, 64))
@option_from(RerankOptions, "reader", "--rerank-with", type=click.Path(dir_okay=False))
@option_from(RerankOptions, "weight", "--rerank-weight", type=FiniteFloatRange(0))
@option_from(SampleOptions, "title", type=TEXT)
@option_from(SampleOptions, "prime", type=TEXT)
@option_from(SampleOptions, "repetition", "--repetition-penalty", type=FiniteFloatRange(0))
@option_from(SampleOptions, "same_place", "--same-place-penalty", type=FiniteFloatRange(0))
# finite here, in the ranges SampleOptions checks, so that a non-number is told the range too
@option_from(SampleOptions, "temperature", type=FiniteFloatRange(0, MAX_TEMPERATURE, min_open=True))
@option_from(SampleOptions, "top_k", type=click.IntRange(0))
@option_from(SampleOptions, "top_p", type=FiniteFloatRange(0, 1, min_open=True))
@option_from(SampleOptions, "greedy")
@option_from(SampleOptions, "max_len", type=click.IntRange(1, 10000))
@click.option(
    "--script",
    type=click.Choice(["simplified", "traditional"]),
    default="simplified",
    show_default=True,
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one object per line with title, text, lines, form, rhyme, score, per-character "
    "log-probabilities, truncated (and backward with --rerank-with).",
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="On stderr: each poem's rhyme, score (and backward score) and dropped constraints.",
)
@seed_option(None, "Random seed: the same seed writes the same poems.")
@threads_option
def generate_command(
    chars,
    start_texts,
    checkpoint,
    num,
    form,
    acrostic,
    keywords,
    rhyme,
    rhyme_first,
    tones,
    no_repeat,
    best_of,
    beam,
    reader,
    weight,
    title,
    prime,
    repetition,
    same_place,
    temperature,
    top_k,
    top_p,
    greedy,
    max_len,
    script,
    fmt,
    verbose,
    seed,
    threads,
):
    """Write poems that begin with each of CHARS (e.g. 日红山夜湖海月), or with each --start text.

    Input in either script is accepted and read as simplified script."""
    setup_streams()
    set_threads(threads)
    import torch

    from poetry_lm.decoding.generate import candidates, verses
    from poetry_lm.decoding.rerank import rerank
    from poetry_lm.model.stepper import Stepper
    from poetry_lm.model.checkpoint import load_model
    from poetry_lm.text.corpus import to_traditional

    # the options' own checks first (SampleOptions), before the model is read
    opts = settings_or_usage_error(
        SampleOptions,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        greedy=greedy or temperature < GREEDY_TEMPERATURE,
        max_len=max_len,
        best_of=best_of,
        beam=beam,
        repetition=repetition,
        same_place=same_place,
    )
    check_given(opts, greedy)
    rerank_opts = settings_or_usage_error(RerankOptions, reader=reader, weight=weight)
    if reader and (beam or best_of) < 2:
        raise click.UsageError(
            "--rerank-with ranks several candidates per poem: give --best-of or --beam of 2 or more"
        )
    model, table, saved = run_or_exit(load_model, checkpoint)
    try:
        step = Stepper(model)  # packed once for every batch
    except ValueError as err:  # a backward model: the stepper says why it cannot write
        raise option_error(f"{err} (give it to --rerank-with)", "--model") from None
    reader_model = load_reader(reader, table) if reader else None
    starts, acrostic, prime = read_texts(table, chars, start_texts, acrostic, prime)
    title = title_option(title, table, saved)
    max_len = fit_max_len(max_len, form, acrostic, starts)
    if len(prime) > max_len:
        raise option_error(
            f"the prime text ({len(prime)} characters) is longer than --max-len ({max_len})",
            "--prime",
        )
    cons = read_constraints(
        table,
        starts,
        max_len,
        form=form,
        acrostic=acrostic,
        rhyme=rhyme,
        rhyme_first=rhyme_first,
        tones=tones,
        no_repeat=no_repeat,
        keywords=read_keywords(keywords, table),
    )
    generator = torch.Generator()
    generator.manual_seed(seed if seed is not None else torch.seed())
    opts = dataclasses.replace(opts, max_len=max_len, prime=prime, title=title)
    requests = [s for s in starts or [""] for _ in range(num)]
    per_batch = max(1, MAX_ROWS // (beam or best_of))
    script_of = to_traditional if script == "traditional" else str
    # one seed per poem, drawn at once: a poem depends on its start and seed only, so the
    # batches give the same poems as one batch would
    seeds = torch.randint(0, 2**62, (len(requests),), generator=generator).tolist()
    written = 0
    for first in range(0, len(requests), per_batch):
        batch, batch_seeds = requests[first : first + per_batch], seeds[first : first + per_batch]
        found = run_or_exit(
            candidates, model, table, batch, opts, generator, cons, step, seeds=batch_seeds
        )
        poems = rerank(found, reader_model, table, rerank_opts.weight)
        for poem in poems:  # each batch is written as soon as it is done
            written += 1
            if verbose:
                click.echo(
                    f"poem {written}: mean log-probability {poem.score:.3f}"
                    + "".join(f"; rhyme {script_of(g)}" for g in poem.rhyme)
                    + "".join(f"; {event}" for event in poem.backoffs)
                    + (f"; truncated at --max-len {max_len}" if poem.truncated else "")
                    + (
                        f"; backward mean log-probability {poem.backward:.3f}"
                        if poem.backward is not None
                        else ""
                    ),
                    err=True,
                )
            text = script_of(poem.text)
            if fmt == "json":
                record = {
                    "title": script_of(title) or None,  # null without one, as in the API
                    "text": text,
                    "lines": verses(text),
                    "form": form and script_of(form.name),  # 七绝 → 七絕, as text and title
                    "rhyme": [script_of(g) for g in poem.rhyme],
                    "score": round(poem.score, 4),
                    "logprobs": [round(lp, 4) for lp in poem.logprobs],
                    "truncated": poem.truncated,
                }
                if poem.backward is not None:
                    record["backward"] = round(poem.backward, 4)
                emit(json.dumps(record, ensure_ascii=False))
            else:
                emit(("\n" if written > 1 else "") + "\n".join(verses(text)))


def check_given(opts: SampleOptions, greedy: bool) -> None:
    """The sampling options typed on the command line that ``opts``' decoding would ignore
    (``check_unused``) are a usage error. A --temperature under GREEDY_TEMPERATURE is how it
    asks for greedy decoding without --greedy, so it is refused only beside --greedy."""
    from poetry_lm.decoding.generate import check_unused

    ctx = click.get_current_context()
    names = ("temperature", "top_k", "top_p") if greedy else ("top_k", "top_p")
    given = {n for n in names if ctx.get_parameter_source(n) == ParameterSource.COMMANDLINE}
    try:
        check_unused(opts, given)
    except SettingError as err:
        raise usage_error(err) from None


def read_texts(table, chars: str, start_texts, acrostic: str, prime: str):
    """CHARS, --start, --acrostic and --prime read by the one text rule, each character known to
    the model, and no start beside an acrostic → (starts, acrostic, prime), or a usage error
    naming the option at fault."""
    from poetry_lm.decoding.generate import check_acrostic_starts
    from poetry_lm.text.corpus import is_ideograph
    from poetry_lm.text.normalise import normalise

    # CHARS is one start character per poem, so each must be a character
    chars = normalise(chars, table.index)
    odd = next((ch for ch in chars if not is_ideograph(ch)), None)
    if odd:
        raise option_error(
            f"{odd!r} is not a Chinese character; each of CHARS starts a poem", "CHARS"
        )
    known_text(chars, table, "chars")
    starts = [*chars, *(known_text(t, table, "start_texts", "start text") for t in start_texts)]
    if any(not t for t in starts):
        raise option_error("a start text is empty", "--start")
    acrostic = known_text(acrostic, table, "acrostic")
    odd = next((ch for ch in acrostic if not is_ideograph(ch)), None)
    if odd:
        raise option_error(
            f"the acrostic {acrostic!r} holds {odd!r}; each line needs a Chinese character",
            "--acrostic",
        )
    prime = known_text(prime, table, "prime", "prime text")
    try:
        check_acrostic_starts(acrostic, starts)
    except SettingError as err:
        raise usage_error(err) from None
    return starts, acrostic, prime


def known_text(value: str, table, param: str, what: str = "") -> str:
    """The value of option ``param`` (its parameter name) read by the one text rule
    (``poem_text``; ``what`` names it in the message) and every character known to the model
    (``check_start``), else a usage error naming the option."""
    from poetry_lm.decoding.generate import check_start

    (option,) = [p for p in click.get_current_context().command.params if p.name == param]
    text = poem_text(value, table.index, shown_name(option), what or param)
    try:
        check_start(table, text, param)
    except SettingError as err:
        raise usage_error(err) from None
    return text


def load_reader(path: str, table):
    """The --rerank-with checkpoint: unreadable, exit status 1 (as --model); not a backward
    model of the forward model's vocabulary, a usage error."""
    from poetry_lm.decoding.rerank import check_reader
    from poetry_lm.model.checkpoint import load_model

    reader, reader_table, _ = run_or_exit(load_model, path)
    try:
        check_reader(reader, reader_table, table, f"checkpoint {path}")
    except ValueError as err:
        raise option_error(str(err), "--rerank-with") from None
    return reader


def title_option(value: str, table, saved: dict) -> str:
    """--title under the one text rule, for a model that reads titles; a usage error if not.
    Characters the model does not know are read as ``<unk>``, as in training; a warning on
    stderr names them. A model whose checkpoint (``saved``) says it trained with
    ``title_share`` 0 never learnt to read a title: a warning says so, and it is read anyway."""
    if not value:
        return ""
    from poetry_lm.decoding.generate import check_title
    from poetry_lm.model.checkpoint import trained_without_titles
    from poetry_lm.text.normalise import read_title

    try:
        title = read_title(value, table.index)
        unknown = check_title(table, title)
    except ValueError as err:
        raise option_error(str(err), "--title") from None
    if title and trained_without_titles(saved):
        click.echo(
            "warning: the model was trained with --title-share 0, so it never learnt to read a "
            "title; the title is read anyway",
            err=True,
        )
    if unknown:
        click.echo(
            f"warning: the model does not know {''.join(unknown)} of the title; read as <unk>",
            err=True,
        )
    return title


def read_keywords(texts: tuple[str, ...], table) -> list[str]:
    """--keywords values → keywords, each read by the text rule and known to the model (else a
    usage error; a value that holds no keyword, --keywords "", is one too)."""
    from poetry_lm.prosody.keywords import KeywordError, split_keywords

    try:
        texts = split_keywords(texts)
    except KeywordError as err:
        raise usage_error(err) from None
    return [known_text(k, table, "keywords", "keyword") for k in texts]


def read_constraints(table, starts: list[str], max_len: int, **rules):
    """``Constraints.from_options(**rules)`` (None: the option's default), checked before any
    decoding: keywords that cannot all fit the form, acrostic, start and --max-len are a usage
    error naming the option at fault, as is any other combination that cannot be (an acrostic's
    length for the form, --tones without a form, say)."""
    from poetry_lm.prosody.forms import Constraints, check_keywords

    try:
        cons = Constraints.from_options(**rules)
        check_keywords(table, cons, starts, max_len)
    except SettingError as err:  # KeywordError among them
        raise usage_error(err) from None
    return cons


def fit_max_len(max_len: int, form, acrostic: str, starts: list[str]) -> int:
    """--max-len checked against what the request needs, so that nothing is silently cut
    (``check_max_len``): a free acrostic's --max-len, left at its default, is first raised to
    what its lines may need. A start text longer than the poem can be (--max-len, or the
    form's length) is refused."""
    from poetry_lm.decoding.generate import check_max_len, free_poem_room

    given = click.get_current_context().get_parameter_source("max_len")
    if acrostic and form is None and given != ParameterSource.COMMANDLINE:
        max_len = max(max_len, free_poem_room(acrostic))
    try:
        check_max_len(form, max_len, acrostic)
    except SettingError as err:
        raise usage_error(err) from None
    limit, what = (
        (form.lines * (form.chars + 1), f"a {form.name}") if form else (max_len, "--max-len")
    )
    longest = max(starts, key=len, default="")
    if len(longest) > limit:
        raise option_error(
            f"the start text {longest[:20]!r} ({len(longest)} characters) is longer than "
            f"{what} ({limit})",
            "--start",
        )
    return max_len
