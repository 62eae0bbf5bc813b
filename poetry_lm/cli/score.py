"""``poetry-lm score``: per-character surprisal and perplexity of poems."""

from __future__ import annotations

import json
from itertools import islice

import click

from poetry_lm.cli.poems import file_option, poem_text, read_poems
from poetry_lm.errors import run_or_exit
from poetry_lm.options import TEXT, model_option, set_threads, threads_option
from poetry_lm.streams import emit, setup_streams
from poetry_lm.usage import option_error


@click.command("score")
@click.argument("poem", type=TEXT, required=False)
@file_option(
    "Score every poem of this UTF-8 file instead of POEM: one poem a line, or generate's "
    "output (text or --format json)."
)
@model_option
@click.option(
    "--top",
    type=click.IntRange(0),
    default=5,
    show_default=True,
    help="Most surprising characters to list.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@threads_option
def score_command(poem, poem_file, checkpoint, top, fmt, threads):
    """How Tang-like is POEM (either script): per-character surprisal and perplexity.

    POEM and every poem of --file are read by one rule (the same as generate's and evaluate's):
    half-width , . ? ! ; : become full-width, characters the model does not know are read as
    simplified script, and the text must be Chinese characters and poem punctuation."""
    setup_streams()
    set_threads(threads)
    from poetry_lm.decoding.loop import verses
    from poetry_lm.writing.writer import Writer

    if (poem is None) == (poem_file is None):
        raise click.UsageError("give a POEM or --file, one of the two")
    writer = run_or_exit(Writer, checkpoint)
    table = writer.table
    if poem_file:
        texts, _ = run_or_exit(read_poems, poem_file, table.index)
    else:
        texts = [poem_text(poem, table.index, "POEM", "poem")]
        if not texts[0]:
            raise option_error("the poem is empty", "POEM")
    for text in texts:  # each poem is written as soon as it is scored
        s = writer.score(text)
        r = s.report
        if fmt == "json":
            record = {
                "text": text,
                "perplexity": round(r.perplexity, 3),
                "surprisal": round(r.nll, 3),
                "tokens": r.tokens,
                "unknown": r.unk_tokens,
                "per_token": [[tok, round(nats, 3)] for tok, nats in s.surprisal],
                "most_surprising": [[tok, round(nats, 3)] for tok, nats in s.most_surprising(top)],
            }
            emit(json.dumps(record, ensure_ascii=False))
            continue
        emit(
            f"{text}\n  perplexity {r.perplexity:.2f}, surprisal {r.nll:.2f} nats over "
            f"{r.tokens} tokens (the end included), {r.unk_tokens} unknown to the model"
        )
        emit(
            "  most surprising: "
            + ", ".join(f"{tok} {nats:.2f}" for tok, nats in s.most_surprising(top))
        )
        tokens = iter(s.surprisal)
        for chunk in [*(islice(tokens, len(line)) for line in verses(text)), tokens]:
            emit("  " + "  ".join(f"{tok} {nats:.2f}" for tok, nats in chunk))  # a verse a line
