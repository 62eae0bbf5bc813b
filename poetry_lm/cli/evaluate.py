"""``poetry-lm evaluate``: perplexity of a checkpoint on a split or a file."""

from __future__ import annotations

import click

from poetry_lm.cli.common import (
    corpus_option,
    emit,
    run_or_exit,
    set_threads,
    setup_streams,
    split_option,
    threads_option,
)
from poetry_lm.paths import SHIPPED_MODEL


@click.command("evaluate")
@click.argument("checkpoint", type=click.Path(), default=str(SHIPPED_MODEL))
@split_option
@click.option(
    "--file",
    "poem_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Score this UTF-8 file of poems (one per line) instead of a corpus split.",
)
@corpus_option
@click.option(
    "--as-generated",
    is_flag=True,
    help="Read the poems one token at a time with generation's int8 weights, not whole with "
    "the model's own.",
)
@click.option(
    "--titles",
    is_flag=True,
    help="Read each poem of the split after its title (context, never scored).",
)
@threads_option
def evaluate_command(checkpoint, split, poem_file, corpus, as_generated, titles, threads):
    """Print the perplexity of CHECKPOINT on a corpus split or on a file of poems."""
    setup_streams()
    set_threads(threads)
    if titles and poem_file:
        raise click.UsageError("--titles reads a corpus split's titles: not with --file")
    from poetry_lm.decoding.stepper import Stepper
    from poetry_lm.evaluation.perplexity import perplexity
    from poetry_lm.model.checkpoint import load_model
    from poetry_lm.text.corpus import clean_title, load_corpus
    from poetry_lm.text.normalise import read_poem_file

    model, table, _ = run_or_exit(load_model, checkpoint)
    if poem_file:
        poems, source = run_or_exit(read_poem_file, poem_file, table.index), poem_file
    else:
        chosen = run_or_exit(load_corpus, corpus)[split]
        poems, source = [p.text for p in chosen], f"{split} split"
        if not poems:  # a perplexity over no tokens would read as a perfect 1.00
            raise click.ClickException(f"the {split} split of {corpus} holds no poems")
    names = [clean_title(p.title) for p in chosen] if titles else None
    if titles:
        source += ", given the titles"
    report = run_or_exit(
        perplexity, model, table, poems, step=Stepper(model) if as_generated else None, titles=names
    )
    emit(
        f"{source}: perplexity {report.perplexity:.2f} over {report.tokens} tokens "
        f"in {report.poems} poems (<unk> rate {100 * report.unk_rate:.2f}%)"
    )
