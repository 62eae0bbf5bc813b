"""``poetry-lm check``: the 格律 of a poem (tones, rhymes, form and faults); no model is read."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("check")
@click.argument("poem", required=False)
@click.option(
    "--file",
    "poem_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Check the poems of this UTF-8 file instead of POEM (blank lines between poems).",
)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def check_command(poem, poem_file, fmt):
    """The 格律 of POEM (either script; verses split at marks, spaces or line breaks): each
    character's 平仄 and reading, each rhyme's group, the form, and the faults (失粘, 失对, 出韵,
    重韵, 孤平, 三平尾, 三仄尾). Exit status 0 whatever the faults."""
    from poetry_lm.prosody.check import check_poem, format_check
    from poetry_lm.text.normalise import check_poem_text, line_blocks, normalise

    if (poem is None) == (poem_file is None):
        raise click.UsageError("give a POEM or --file, one of the two")
    if poem_file:
        try:
            text = Path(poem_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise click.ClickException(f"cannot read {poem_file}: {err}") from None
        # poems are separated by blank lines, spaces or a Windows line end in them included
        poems = [block for _, block in line_blocks(text.splitlines(keepends=True))]
    else:
        poems = [poem]
    checks = []
    for text in poems:
        try:
            # the one text rule of every command decides what is poem text; the poem itself is
            # checked as given, since its line breaks and spaces may be what separates verses
            check_poem_text(normalise(text))
            checks.append(check_poem(text))
        except ValueError as err:
            raise click.UsageError(str(err)) from None
    if fmt == "json":
        for check in checks:
            click.echo(json.dumps(check.to_dict(), ensure_ascii=False))
    else:
        click.echo("\n\n".join(format_check(c) for c in checks))
