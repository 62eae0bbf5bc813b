"""``poetry-lm train``: train a model, or resume a run."""

from __future__ import annotations

import json
import sys

import click

from poetry_lm.cli.common import corpus_option, run_or_exit, set_threads, threads_option


@click.command("train")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default="runs/default",
    show_default=True,
    help="Run folder: last.pt, best.pt, metrics.json, training.png.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in --out from its last.pt, with its own settings; --epochs and "
    "--max-minutes may be changed.",
)
@corpus_option
@click.option(
    "--cell", type=click.Choice(["lstm", "gru", "rnn"]), default="lstm", show_default=True
)
@click.option(
    "--activation",
    type=click.Choice(["tanh", "relu", "sigmoid"]),
    default="tanh",
    show_default=True,
    help="Nonlinearity of --cell rnn.",
)
@click.option("--embed-dim", type=click.IntRange(1), default=256, show_default=True)
@click.option("--hidden-dim", type=click.IntRange(1), default=768, show_default=True)
@click.option("--layers", type=click.IntRange(1), default=1, show_default=True)
@click.option(
    "--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.25, show_default=True
)
@click.option(
    "--softmax", type=click.Choice(["full", "adaptive"]), default="adaptive", show_default=True
)
@click.option(
    "--tie-weights", is_flag=True, help="Share embedding and output weights (full softmax)."
)
@click.option(
    "--optimizer",
    type=click.Choice(["adam", "sgd"]),
    default="adam",
    show_default=True,
    help="Adam, or SGD with momentum 0.9.",
)
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=2e-3, show_default=True)
@click.option(
    "--lr-schedule", type=click.Choice(["constant", "cosine"]), default="cosine", show_default=True
)
@click.option(
    "--clip",
    type=click.FloatRange(0, min_open=True),
    default=1.0,
    show_default=True,
    help="Maximum global gradient norm.",
)
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--seq-len", type=click.IntRange(2), default=65, show_default=True)
@click.option("--seq-step", type=click.IntRange(1), default=32, show_default=True)
@click.option(
    "--batching",
    type=click.Choice(["windows", "streams"]),
    default="streams",
    show_default=True,
    help="windows: each poem front-padded or cut into --seq-len windows every --seq-step tokens; "
    "streams: whole poems end to end in --batch-size columns, read --seq-len at a time with the state carried.",
)
@click.option(
    "--min-freq",
    type=click.IntRange(1),
    default=2,
    show_default=True,
    help="Characters rarer than this in train become <unk>.",
)
@click.option("--epochs", "max_epochs", type=click.IntRange(1), default=9, show_default=True)
@click.option(
    "--patience",
    type=click.IntRange(1),
    default=2,
    show_default=True,
    help="Stop after this many epochs without a better validation perplexity.",
)
@click.option(
    "--max-minutes",
    type=click.FloatRange(0, min_open=True),
    default=None,
    help="Training-time budget for the whole run, resumed sessions included.",
)
@click.option(
    "--limit-poems",
    type=click.IntRange(1),
    default=None,
    help="Use only the first N poems of each split (quick trials).",
)
@click.option(
    "--couplet-input",
    is_flag=True,
    help="Also feed the first layer the previous verse's character at the same position (对仗).",
)
@click.option(
    "--forget-bias",
    type=float,
    default=0.0,
    show_default=True,
    help="Added to the LSTM forget gate's bias at initialisation (AWD-LSTM uses 1).",
)
@click.option(
    "--weight-drop",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.0,
    show_default=True,
    help="DropConnect probability on the LSTM's recurrent weights in training.",
)
@click.option(
    "--locked-dropout",
    is_flag=True,
    help="One dropout mask per sequence for the embeddings and outputs, not one per step.",
)
@click.option(
    "--title-share",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of train poems read after their title (context, never scored); the rest without.",
)
@click.option(
    "--direction",
    type=click.Choice(["forward", "backward"]),
    default="forward",
    show_default=True,
    help="backward: a right-to-left model of the same poems (for reranking).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--bf16", is_flag=True, help="bfloat16 autocast on CUDA.")
@threads_option
def train_command(
    out_dir,
    resume,
    corpus,
    cell,
    activation,
    embed_dim,
    hidden_dim,
    layers,
    dropout,
    softmax,
    tie_weights,
    optimizer,
    lr,
    lr_schedule,
    clip,
    batch_size,
    seq_len,
    seq_step,
    batching,
    min_freq,
    max_epochs,
    patience,
    max_minutes,
    limit_poems,
    couplet_input,
    forget_bias,
    weight_drop,
    locked_dropout,
    title_share,
    direction,
    seed,
    device,
    bf16,
    threads,
):
    """Train a poem model; the defaults are the recipe of the shipped model.

    Under ``torchrun --nproc_per_node=N train.py …`` each process takes 1/N of every batch."""
    set_threads(threads)
    from poetry_lm.train.trainer import TrainConfig, Trainer

    if seq_step > seq_len:
        raise click.BadParameter("--seq-step cannot exceed --seq-len", param_hint="--seq-step")
    if tie_weights and softmax != "full":
        raise click.BadParameter("--tie-weights needs --softmax full", param_hint="--tie-weights")
    if bf16 and device != "cuda":
        raise click.BadParameter(
            "--bf16 needs --device cuda (bfloat16 autocast is a GPU option here)",
            param_hint="--bf16",
        )
    cfg = TrainConfig(
        out_dir=out_dir,
        corpus=corpus,
        seq_len=seq_len,
        seq_step=seq_step,
        batching=batching,
        batch_size=batch_size,
        optimizer=optimizer,
        lr=lr,
        lr_schedule=lr_schedule,
        clip=clip,
        max_epochs=max_epochs,
        patience=patience,
        max_minutes=max_minutes,
        min_freq=min_freq,
        limit_poems=limit_poems,
        title_share=title_share,
        seed=seed,
        device=device,
        bf16=bf16,
        model=dict(
            cell=cell,
            activation=activation,
            embed_dim=embed_dim,
            hidden_dim=hidden_dim,
            num_layers=layers,
            dropout=dropout,
            softmax=softmax,
            tie_weights=tie_weights,
            couplet_input=couplet_input,
            direction=direction,
            forget_bias=forget_bias,
            weight_drop=weight_drop,
            locked_dropout=locked_dropout,
        ),
    )
    # with --resume, the run keeps its own settings; only limits given on this command line change
    ctx = click.get_current_context()
    limits = {
        name: value
        for name, value in (("max_epochs", max_epochs), ("max_minutes", max_minutes))
        if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
    }
    trainer = run_or_exit(
        Trainer, cfg, resume=resume, log=lambda msg: click.echo(msg, err=True), limits=limits
    )
    try:
        result = trainer.fit()
    except KeyboardInterrupt:
        sys.exit(130)
    if result:  # rank 0 of a distributed run, or the only process
        click.echo(json.dumps(result))
