"""``poetry-lm evaluate``: perplexity of a checkpoint on a split or a file."""

from __future__ import annotations

import click

from poetry_lm.cli.poems import file_option, read_poems
from poetry_lm.errors import run_or_exit
from poetry_lm.options import corpus_option, model_option, set_threads, split_option, threads_option
from poetry_lm.streams import emit, setup_streams


@click.command("evaluate")
@click.argument("positional", metavar="[CHECKPOINT]", type=click.Path(), required=False)
@model_option
@split_option
@file_option(
    "Score the poems of this UTF-8 file instead of a corpus split: one poem a line, or "
    "generate's output (text or --format json)."
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
def evaluate_command(
    positional, checkpoint, split, poem_file, corpus, as_generated, titles, threads
):
    """Print the perplexity of a checkpoint (--model, or the argument CHECKPOINT) on a corpus split
    or on a file of poems."""
    setup_streams()
    set_threads(threads)
    if positional is not None:
        source = click.get_current_context().get_parameter_source("checkpoint")
        if source == click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError("name the checkpoint once: as --model or as CHECKPOINT")
        checkpoint = positional
    if titles and poem_file:
        raise click.UsageError("--titles reads a corpus split's titles: not with --file")
    from poetry_lm.evaluation.perplexity import perplexity
    from poetry_lm.model.checkpoint import load_model
    from poetry_lm.model.stepper import Stepper
    from poetry_lm.text.corpus import clean_title, load_corpus
    from poetry_lm.text.normalise import source_name

    model, table, _ = run_or_exit(load_model, checkpoint)
    if titles and table.sep is None:
        raise click.ClickException(f"{checkpoint} was trained without titles: --titles needs one")
    if poem_file:
        poems, _ = run_or_exit(read_poems, poem_file, table.index)
        source = source_name(poem_file)
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
