"""``poetry-lm check``: the 格律 of a poem (tones, rhymes, form and faults); no model is read."""

from __future__ import annotations

import json

import click

from poetry_lm.cli.poems import file_option, untitled
from poetry_lm.errors import run_or_exit
from poetry_lm.options import TEXT
from poetry_lm.streams import emit, setup_streams


@click.command("check")
@click.argument("poem", type=TEXT, required=False)
@file_option("Check the poems of this UTF-8 file instead of POEM (blank lines between poems).")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def check_command(poem, poem_file, fmt):
    """The 格律 of POEM (either script; verses split at marks, spaces or line breaks): each
    character's 平仄 and reading, each rhyme's group, the form, and the faults (失粘, 失对, 出韵,
    重韵, 孤平, 三平尾, 三仄尾). Exit status 0 whatever the faults."""
    setup_streams()
    from poetry_lm.prosody.check import check_poem, format_check
    from poetry_lm.text.normalise import poem_entries, read_text_lines

    if (poem is None) == (poem_file is None):
        raise click.UsageError("give a POEM or --file, one of the two")
    # the one text rule of every command decides what is poem text; the poem itself is checked
    # as given, since its line breaks and spaces may be what separates verses
    if poem_file:  # poems are separated by blank lines, spaces or a Windows line end included
        lines = untitled(run_or_exit(read_text_lines, poem_file))
        poems = [given for given, _ in run_or_exit(poem_entries, lines, poem_file, blocks=True)]
    else:
        poems = [poem]
    checks = []
    for text in poems:
        try:
            checks.append(check_poem(text))
        except ValueError as err:  # POEM is not poem text (read_poem) or has no character
            raise click.UsageError(str(err)) from None
    for number, check in enumerate(checks):  # each written now: a failed write ends the run
        if fmt == "json":
            emit(json.dumps(check.to_dict(), ensure_ascii=False))
        else:
            emit(("\n" if number else "") + format_check(check))
