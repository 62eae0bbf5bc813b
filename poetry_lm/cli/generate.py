"""``poetry-lm generate``: write poems."""

from __future__ import annotations

import json

import click

from poetry_lm.cli.common import (
    form_option,
    model_option,
    option_from,
    run_or_exit,
    set_threads,
    settings_or_usage_error,
    threads_option,
)
from poetry_lm.decoding.generate import SampleOptions


@click.command("generate")
@click.argument("chars", required=False, default="")
@click.option(
    "--start",
    "start_texts",
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
@click.option("--acrostic", default="", help="Line i begins with the i-th character (藏头诗).")
@click.option(
    "--rhyme/--no-rhyme",
    default=None,
    help="Even lines end in one 平水韵 group, no rhyme twice (free poems: a group of either "
    "tone, once the first verse sets the length) [default: on].",
)
@click.option("--rhyme-first", is_flag=True, help="The first line rhymes too.")
@click.option(
    "--tones",
    is_flag=True,
    help="Regulated 平仄 (平起 or 仄起) on the 2nd, 4th, 6th and last characters.",
)
@click.option("--no-repeat", is_flag=True, help="No character twice in a poem (punctuation aside).")
@option_from(SampleOptions, "best_of", type=click.IntRange(1, 64))
@option_from(SampleOptions, "beam", type=click.IntRange(0, 64))
@option_from(SampleOptions, "prime")
@option_from(SampleOptions, "repetition", "--repetition-penalty", type=click.FloatRange(0))
@option_from(SampleOptions, "same_place", "--same-place-penalty", type=click.FloatRange(0))
@option_from(SampleOptions, "temperature", type=float)
@option_from(SampleOptions, "top_k", type=click.IntRange(0))
@option_from(SampleOptions, "top_p", type=float)
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
    help="json: one object per line with text, lines, form, rhyme, score, per-character "
    "log-probabilities and truncated.",
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="On stderr: each poem's rhyme, score and dropped constraints.",
)
@click.option(
    "--seed", type=int, default=None, help="Random seed: the same seed writes the same poems."
)
@threads_option
def generate_command(
    chars,
    start_texts,
    checkpoint,
    num,
    form,
    acrostic,
    rhyme,
    rhyme_first,
    tones,
    no_repeat,
    best_of,
    beam,
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
    set_threads(threads)
    import torch

    from poetry_lm.decoding.generate import generate, verses
    from poetry_lm.model.checkpoint import load_model
    from poetry_lm.prosody.forms import Constraints
    from poetry_lm.text.corpus import to_simplified, to_traditional

    opts = settings_or_usage_error(
        SampleOptions,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        greedy=greedy,
        max_len=max_len,
        best_of=best_of,
        beam=beam,
        prime=to_simplified(prime),
        repetition=repetition,
        same_place=same_place,
    )
    for text, hint in [*((t, "--start") for t in start_texts), (prime, "--prime")]:
        if len(to_simplified(text)) > max_len:
            raise click.BadParameter(
                f"{text!r} is longer than --max-len ({max_len} characters)", param_hint=hint
            )
    starts = [to_simplified(t) for t in [*chars, *start_texts]] or [""]
    cons = run_or_exit(
        Constraints,
        form,
        to_simplified(acrostic),
        rhyme is not False,
        rhyme_first,
        tones,
        no_repeat,
    )
    model, table, _ = run_or_exit(load_model, checkpoint)
    generator = torch.Generator()
    generator.manual_seed(seed if seed is not None else torch.seed())
    poems = run_or_exit(
        generate, model, table, [s for s in starts for _ in range(num)], opts, generator, cons
    )
    script_of = to_traditional if script == "traditional" else str
    for i, poem in enumerate(poems, 1):
        if verbose:
            click.echo(
                f"poem {i}: mean log-probability {poem.score:.3f}"
                + "".join(f"; rhyme {script_of(g)}" for g in poem.rhyme)
                + "".join(f"; {event}" for event in poem.backoffs)
                + (f"; truncated at --max-len {max_len}" if poem.truncated else ""),
                err=True,
            )
    if fmt == "json":
        for poem in poems:
            text = script_of(poem.text)
            click.echo(
                json.dumps(
                    {
                        "text": text,
                        "lines": verses(text),
                        "form": form and form.name,
                        "rhyme": [script_of(g) for g in poem.rhyme],
                        "score": round(poem.score, 4),
                        "logprobs": [round(lp, 4) for lp in poem.logprobs],
                        "truncated": poem.truncated,
                    },
                    ensure_ascii=False,
                )
            )
    else:
        click.echo("\n\n".join("\n".join(verses(script_of(p.text))) for p in poems))
