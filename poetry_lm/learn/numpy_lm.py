"""Train the numpy language model (poetry_lm.learn.reference.lm) on a few hundred poems.

    python -m poetry_lm numpy-lm [--poems 300] [--cell rnn] [--bptt-steps 20] [--lr 1.0]
                                 [--epochs 10]

The first ``--poems`` train-split poems are the training text and the first ``--poems`` / 5
valid-split poems the held-out text; the vocabulary is every character seen at least twice in
the training poems, the rest read as <unk>. Perplexity is exp(mean NLL) over every next token of
the held-out stream, so it is comparable between runs here, not with ``evaluate``'s.
"""

from __future__ import annotations

from collections import Counter

import click

from poetry_lm.errors import run_or_exit
from poetry_lm.options import seed_option
from poetry_lm.paths import DEFAULT_CORPUS


def load_poems(corpus, count):
    """(train token lists, valid token lists, vocabulary size) for the first ``count`` poems."""
    from poetry_lm.text.corpus import load_corpus
    from poetry_lm.text.vocab import SPECIALS, CharTable

    splits = load_corpus(corpus)
    train = [p.text for p in splits["train"][:count]]
    valid = [p.text for p in splits["valid"][: max(1, count // 5)]]
    counts = Counter(ch for text in train for ch in text)
    table = CharTable([*SPECIALS, *sorted(ch for ch, n in counts.items() if n >= 2)])
    return [table.encode_poem(t) for t in train], [table.encode_poem(t) for t in valid], len(table)


def run(corpus, poems, cell, embed_dim, hidden_dim, k, batch, lr, clip, epochs, seed):
    from poetry_lm.learn.reference.lm import NumpyLM, stream_columns, train

    train_poems, valid_poems, vocab_size = load_poems(corpus, poems)
    click.echo(
        f"{len(train_poems)} train poems, {len(valid_poems)} valid poems, "
        f"{vocab_size} tokens in the vocabulary; cell {cell}, BPTT over τ = {k} steps, SGD lr {lr}"
    )
    model = NumpyLM(vocab_size, embed_dim, hidden_dim, cell, rng=seed)
    train(
        model,
        stream_columns(train_poems, batch),
        stream_columns(valid_poems, min(batch, 4)),
        k=k,
        lr=lr,
        clip=clip,
        epochs=epochs,
        log=click.echo,
    )


@click.command()
@click.option("--poems", type=click.IntRange(5), default=300, show_default=True)
@click.option(
    "--cell",
    type=click.Choice(["rnn", "lstm", "gru", "course-gru"]),
    default="rnn",
    show_default=True,
)
@click.option("--embed-dim", type=click.IntRange(1), default=32, show_default=True)
@click.option("--hidden-dim", type=click.IntRange(1), default=64, show_default=True)
@click.option(
    "--bptt-steps",
    "k",
    type=click.IntRange(1),
    default=20,
    show_default=True,
    help="τ: truncation.",
)
@click.option("--batch", type=click.IntRange(1), default=16, show_default=True)
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True)
@click.option("--clip", type=click.FloatRange(0, min_open=True), default=5.0, show_default=True)
@click.option("--epochs", type=click.IntRange(1), default=10, show_default=True)
@seed_option(0, "Seed of the initial weights.")
@click.option(
    "--corpus", type=click.Path(dir_okay=False), default=str(DEFAULT_CORPUS), show_default=True
)
def main(poems, cell, embed_dim, hidden_dim, k, batch, lr, clip, epochs, seed, corpus):
    """Train a numpy RNN language model by SGD with truncated BPTT and print its perplexity."""
    run_or_exit(run, corpus, poems, cell, embed_dim, hidden_dim, k, batch, lr, clip, epochs, seed)


if __name__ == "__main__":
    main()
