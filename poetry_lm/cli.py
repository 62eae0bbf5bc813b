"""Command-line interface: ``train``, ``evaluate`` and ``generate``.

Errors a user can cause end in one sentence on stderr and exit status 1 or 2, never a traceback.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from .checkpoint import CheckpointError
from .corpus import DEFAULT_CORPUS, CorpusError

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "poetry_lm.pt"
USER_ERRORS = (CheckpointError, CorpusError, ValueError, OSError)


def set_threads(threads: int) -> None:
    """Fix torch's thread count: on a small shared machine extra threads mostly contend."""
    import torch

    torch.set_num_threads(threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))


def run_or_exit(fn, *args, **kwargs):
    """Call fn; a user-caused error becomes one clear sentence and exit status 1."""
    try:
        return fn(*args, **kwargs)
    except USER_ERRORS as err:
        raise click.ClickException(str(err)) from None


threads_option = click.option("--threads", type=click.IntRange(1, 256), default=1, show_default=True,
                              help="CPU threads for torch (more rarely helps on a busy 2-core machine).")


@click.command("train")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="runs/default", show_default=True,
              help="Run folder: last.pt, best.pt, metrics.json, training.png.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last.pt.")
@click.option("--corpus", type=click.Path(dir_okay=False), default=str(DEFAULT_CORPUS), show_default=True)
@click.option("--cell", type=click.Choice(["lstm", "gru", "rnn"]), default="lstm", show_default=True)
@click.option("--activation", type=click.Choice(["tanh", "relu", "sigmoid"]), default="tanh", show_default=True,
              help="Nonlinearity of --cell rnn.")
@click.option("--embed-dim", type=click.IntRange(1), default=256, show_default=True)
@click.option("--hidden-dim", type=click.IntRange(1), default=512, show_default=True)
@click.option("--layers", type=click.IntRange(1), default=1, show_default=True)
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.15, show_default=True)
@click.option("--softmax", type=click.Choice(["full", "adaptive"]), default="adaptive", show_default=True)
@click.option("--tie-weights", is_flag=True, help="Share embedding and output weights (full softmax).")
@click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default="adam", show_default=True,
              help="Adam, or SGD with momentum 0.9.")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=2e-3, show_default=True)
@click.option("--lr-schedule", type=click.Choice(["constant", "cosine"]), default="cosine", show_default=True)
@click.option("--clip", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True,
              help="Maximum global gradient norm.")
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option("--seq-len", type=click.IntRange(2), default=65, show_default=True)
@click.option("--seq-step", type=click.IntRange(1), default=32, show_default=True)
@click.option("--min-freq", type=click.IntRange(1), default=2, show_default=True,
              help="Characters rarer than this in train become <unk>.")
@click.option("--epochs", "max_epochs", type=click.IntRange(1), default=8, show_default=True)
@click.option("--patience", type=click.IntRange(1), default=2, show_default=True,
              help="Stop after this many epochs without a better validation perplexity.")
@click.option("--max-minutes", type=click.FloatRange(0, min_open=True), default=None,
              help="Training-time budget for the whole run, resumed sessions included.")
@click.option("--limit-poems", type=click.IntRange(1), default=None,
              help="Use only the first N poems of each split (quick trials).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--bf16", is_flag=True, help="bfloat16 autocast on CUDA.")
@threads_option
def train_command(out_dir, resume, corpus, cell, activation, embed_dim, hidden_dim, layers, dropout, softmax, tie_weights,
                  optimizer, lr, lr_schedule, clip, batch_size, seq_len, seq_step, min_freq, max_epochs,
                  patience, max_minutes, limit_poems, seed, device, bf16, threads):
    """Train a poem model; the defaults are the recipe of the shipped model.

    Under ``torchrun --nproc_per_node=N train.py …`` each process takes 1/N of every batch."""
    set_threads(threads)
    from .training import TrainConfig, Trainer

    if seq_step > seq_len:
        raise click.BadParameter("--seq-step cannot exceed --seq-len", param_hint="--seq-step")
    if tie_weights and softmax != "full":
        raise click.BadParameter("--tie-weights needs --softmax full", param_hint="--tie-weights")
    cfg = TrainConfig(out_dir=out_dir, corpus=corpus, seq_len=seq_len, seq_step=seq_step, batch_size=batch_size,
                      optimizer=optimizer, lr=lr, lr_schedule=lr_schedule, clip=clip, max_epochs=max_epochs,
                      patience=patience, max_minutes=max_minutes, min_freq=min_freq, limit_poems=limit_poems,
                      seed=seed, device=device, bf16=bf16, model=dict(cell=cell, activation=activation, embed_dim=embed_dim,
                                            hidden_dim=hidden_dim, num_layers=layers,
                                            dropout=dropout, softmax=softmax, tie_weights=tie_weights))
    trainer = run_or_exit(Trainer, cfg, resume=resume, log=lambda msg: click.echo(msg, err=True))
    try:
        result = trainer.fit()
    except KeyboardInterrupt:
        sys.exit(130)
    if result:  # rank 0 of a distributed run, or the only process
        click.echo(json.dumps(result))


@click.command("evaluate")
@click.argument("checkpoint", type=click.Path(dir_okay=False), default=str(DEFAULT_MODEL))
@click.option("--split", type=click.Choice(["train", "valid", "test"]), default="test", show_default=True)
@click.option("--file", "poem_file", type=click.Path(dir_okay=False), default=None,
              help="Score this UTF-8 file of poems (one per line) instead of a corpus split.")
@click.option("--corpus", type=click.Path(dir_okay=False), default=str(DEFAULT_CORPUS), show_default=True)
@threads_option
def evaluate_command(checkpoint, split, poem_file, corpus, threads):
    """Print the perplexity of CHECKPOINT on a corpus split or on a file of poems."""
    set_threads(threads)
    from .checkpoint import load_model
    from .corpus import load_corpus, read_poem_file
    from .evaluate import perplexity

    model, table, _ = run_or_exit(load_model, checkpoint)
    if poem_file:
        poems, source = run_or_exit(read_poem_file, poem_file), poem_file
    else:
        poems, source = [p.text for p in run_or_exit(load_corpus, corpus)[split]], f"{split} split"
    report = perplexity(model, table, poems)
    click.echo(f"{source}: perplexity {report.perplexity:.2f} over {report.tokens} tokens in {report.poems} poems "
               f"(<unk> rate {100 * report.unk_rate:.2f}%)")


@click.command("generate")
@click.argument("chars", required=False, default="")
@click.option("--start", "start_texts", multiple=True,
              help="A start text for one poem (repeatable); CHARS gives one poem per character.")
@click.option("--model", "checkpoint", type=click.Path(dir_okay=False), default=str(DEFAULT_MODEL), show_default=True)
@click.option("-n", "--num", type=click.IntRange(1, 1000), default=1, show_default=True, help="Poems per start.")
@click.option("--temperature", type=click.FloatRange(0, min_open=True), default=0.8, show_default=True)
@click.option("--top-k", type=click.IntRange(0), default=0, show_default=True, help="0 keeps every character.")
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=0.95, show_default=True)
@click.option("--greedy", is_flag=True, help="Always take the most likely character.")
@click.option("--max-len", type=click.IntRange(1, 10000), default=128, show_default=True,
              help="Most characters per poem.")
@click.option("--seed", type=int, default=None, help="Random seed: the same seed writes the same poems.")
@threads_option
def generate_command(chars, start_texts, checkpoint, num, temperature, top_k, top_p, greedy, max_len, seed, threads):
    """Write poems that begin with each of CHARS (e.g. 日红山夜湖海月), or with each --start text.

    Traditional characters are accepted and converted to simplified script."""
    set_threads(threads)
    import torch

    from .checkpoint import load_model
    from .corpus import to_simplified
    from .sample import SampleOptions, generate, verses

    starts = [to_simplified(t) for t in [*chars, *start_texts]] or [""]
    model, table, _ = run_or_exit(load_model, checkpoint)
    generator = torch.Generator()
    generator.manual_seed(seed if seed is not None else torch.seed())
    opts = SampleOptions(temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy, max_len=max_len)
    poems = run_or_exit(generate, model, table, [s for s in starts for _ in range(num)], opts, generator)
    click.echo("\n\n".join("\n".join(verses(p)) for p in poems))


@click.group()
def main():
    """poetry_lm: a character-level LSTM that writes Tang poems."""


main.add_command(train_command)
main.add_command(evaluate_command)
main.add_command(generate_command)
