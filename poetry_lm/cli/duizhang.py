"""``poetry-lm duizhang``: the 对仗 measure of 律诗 middle couplets (docs/duizhang.md)."""

from __future__ import annotations

import click

from poetry_lm.cli.poems import file_option, read_poems
from poetry_lm.errors import run_or_exit
from poetry_lm.options import corpus_option, split_option
from poetry_lm.streams import emit, setup_streams


@click.command("duizhang")
@split_option
@file_option(
    "Measure the poems of this file instead: generate's output (text or --format json), "
    "or one poem a line."
)
@corpus_option
def duizhang_command(split, poem_file, corpus):
    """对仗 of the middle couplets of the 律诗 in a split or a file, against train couplets."""
    setup_streams()
    from poetry_lm.evaluation.duizhang import PairTable, measure
    from poetry_lm.text.corpus import load_corpus
    from poetry_lm.text.normalise import source_name

    if split == "train" and not poem_file:
        click.echo(
            "warning: train couplets are scored against pair statistics counted from those same "
            "couplets, so the pair share is inflated; measure valid or test poems to compare",
            err=True,
        )
    splits = run_or_exit(load_corpus, corpus)
    table = PairTable(p.text for p in splits["train"])
    if poem_file:
        poems, how = run_or_exit(read_poems, poem_file, table.chars)
        source = source_name(poem_file)
    else:
        poems, source, how = [p.text for p in splits[split]], f"{split} split", ""
    report = measure(table, poems)
    if not report.couplets:
        read_as = f" (read as {how})" if how else ""
        raise click.ClickException(f"{source} holds no poem with the 律诗 shape{read_as}")
    emit(
        f"{source}: {_count(report.poems, 'poem')} with the 律诗 shape, "
        f"{_count(report.couplets, 'middle couplet')}"
    )
    undefined = False
    for name, length in (("all", None), ("五律", 5), ("七律", 7)):
        chosen = [t for t in poems if length is None or _line_length(t) == length]
        part = measure(table, chosen) if length else report
        if part.couplets:
            undefined |= part.margin is None or part.control is None
            emit(
                f"  {name}: {_count(part.poems, 'poem')}, pair share {100 * part.pair_share:.1f}%"
                f" ± {_percent(part.margin, '{:.1f}')}"
                f" (mismatched couplets {_percent(part.control, '{:.1f}%')}),"
                f" tone share {100 * part.tone_share:.1f}%"
            )
    if undefined:
        emit(
            "  n/a: one poem has no spread for a margin, and the control needs two poems of "
            "one length"
        )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _percent(share: float | None, template: str) -> str:
    """A share as a percentage in ``template``, or "n/a" where it is undefined (None)."""
    return "n/a" if share is None else template.format(100 * share)


def _line_length(text: str) -> int | None:
    from poetry_lm.evaluation.duizhang import lushi_lines

    lines = lushi_lines(text)
    return len(lines[0]) if lines else None
