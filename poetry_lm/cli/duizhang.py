"""``poetry-lm duizhang``: the 对仗 measure of 律诗 middle couplets (docs/duizhang.md)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from poetry_lm.cli.common import corpus_option, run_or_exit, split_option


def read_poems(path: str) -> list[str]:
    """Poems one per line: plain text, or ``generate --format json`` lines (their ``text``)."""
    from poetry_lm.text.corpus import CorpusError
    from poetry_lm.text.normalise import read_poem_file

    lines = Path(path).read_text(encoding="utf-8").splitlines()
    if lines and lines[0].startswith("{"):
        try:
            texts = [json.loads(line)["text"] for line in lines if line.strip()]
        except (json.JSONDecodeError, KeyError, TypeError):
            texts = None
        if texts is None or not all(isinstance(t, str) for t in texts):
            raise CorpusError(f"{path} is not generate's JSON output, one poem a line")
        return texts
    return read_poem_file(path)


@click.command("duizhang")
@split_option
@click.option(
    "--file",
    "poem_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Measure the poems of this file (one per line, or generate --format json) instead.",
)
@corpus_option
def duizhang_command(split, poem_file, corpus):
    """对仗 of the middle couplets of the 律诗 in a split or a file, against train couplets."""
    from poetry_lm.evaluation.duizhang import PairTable, measure
    from poetry_lm.text.corpus import load_corpus

    splits = run_or_exit(load_corpus, corpus)
    table = PairTable(p.text for p in splits["train"])
    if poem_file:
        poems, source = run_or_exit(read_poems, poem_file), poem_file
    else:
        poems, source = [p.text for p in splits[split]], f"{split} split"
    report = measure(table, poems)
    if not report.couplets:
        how = " (read one poem a line, or generate's --format json)" if poem_file else ""
        raise click.ClickException(f"{source} holds no poem with the 律诗 shape{how}")
    click.echo(
        f"{source}: {report.poems} poems with the 律诗 shape, {report.couplets} middle couplets"
    )
    for name, length in (("all", None), ("五律", 5), ("七律", 7)):
        chosen = [t for t in poems if length is None or _line_length(t) == length]
        part = measure(table, chosen) if length else report
        if part.couplets:
            click.echo(
                f"  {name}: {part.poems} poems, pair share {100 * part.pair_share:.1f}%"
                f" ± {100 * part.margin:.1f}"
                f" (mismatched couplets {100 * part.control:.1f}%),"
                f" tone share {100 * part.tone_share:.1f}%"
            )


def _line_length(text: str) -> int | None:
    from poetry_lm.evaluation.duizhang import lushi_lines

    lines = lushi_lines(text)
    return len(lines[0]) if lines else None
