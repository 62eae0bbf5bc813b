"""``poetry-lm evaluate``: perplexity of a checkpoint on a split or a file."""

from __future__ import annotations

import click

from poetry_lm.cli.common import run_or_exit, set_threads, threads_option
from poetry_lm.paths import DEFAULT_CORPUS, SHIPPED_MODEL


@click.command("evaluate")
@click.argument("checkpoint", type=click.Path(dir_okay=False), default=str(SHIPPED_MODEL))
@click.option(
    "--split", type=click.Choice(["train", "valid", "test"]), default="test", show_default=True
)
@click.option(
    "--file",
    "poem_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Score this UTF-8 file of poems (one per line) instead of a corpus split.",
)
@click.option(
    "--corpus",
    type=click.Path(dir_okay=False),
    default=str(DEFAULT_CORPUS),
    show_default="corpus/tang.jsonl.xz",
)
@click.option(
    "--as-generated",
    is_flag=True,
    help="Read the poems one token at a time with generation's int8 weights, not whole with "
    "the model's own.",
)
@threads_option
def evaluate_command(checkpoint, split, poem_file, corpus, as_generated, threads):
    """Print the perplexity of CHECKPOINT on a corpus split or on a file of poems."""
    set_threads(threads)
    from poetry_lm.decoding.stepper import Stepper
    from poetry_lm.evaluation.perplexity import perplexity
    from poetry_lm.model.checkpoint import load_model
    from poetry_lm.text.corpus import load_corpus, read_poem_file

    model, table, _ = run_or_exit(load_model, checkpoint)
    if poem_file:
        poems, source = run_or_exit(read_poem_file, poem_file), poem_file
    else:
        poems, source = [p.text for p in run_or_exit(load_corpus, corpus)[split]], f"{split} split"
    report = perplexity(model, table, poems, step=Stepper(model) if as_generated else None)
    click.echo(
        f"{source}: perplexity {report.perplexity:.2f} over {report.tokens} tokens "
        f"in {report.poems} poems (<unk> rate {100 * report.unk_rate:.2f}%)"
    )
