"""``poetry-lm train``: train a model, or resume a run.

Every option but ``--resume`` and ``--threads`` is a field of ``TrainConfig`` or ``ModelConfig``,
and takes its default and help from there: the defaults are the shipped model's recipe.
"""

from __future__ import annotations

import json
import sys
from dataclasses import fields

import click

from poetry_lm.errors import USER_ERRORS
from poetry_lm.model.lm import ACTIVATIONS, CELLS, DIRECTIONS, SOFTMAXES, ModelConfig
from poetry_lm.options import SEED, FiniteFloatRange, option_from, set_threads, threads_option
from poetry_lm.streams import ForgivingStream, emit, setup_streams
from poetry_lm.train.config import (
    BATCHINGS,
    DEVICES,
    OPTIMIZERS,
    SCHEDULES,
    ResumeConflict,
    TrainConfig,
)
from poetry_lm.train.trainer import Diverged, Interrupted, Trainer
from poetry_lm.usage import settings_or_usage_error

MODEL_FIELDS = {f.name for f in fields(ModelConfig)}
# finite: click's float ranges let nan and inf through
POSITIVE = FiniteFloatRange(0, min_open=True)
MAX_LR = 10.0  # a larger rate is a typing slip, not an experiment


@click.command("train")
@option_from(TrainConfig, "out_dir", "--out", type=click.Path(file_okay=False))
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in --out from its last.pt, with its own settings; --epochs, "
    "--max-minutes, --patience, --corpus and --device may be changed, any other must match.",
)
@option_from(
    TrainConfig, "corpus", type=click.Path(dir_okay=False), show_default="corpus/tang.jsonl.xz"
)
@option_from(TrainConfig, "pretrain_corpus", type=click.Path(dir_okay=False))
@option_from(TrainConfig, "pretrain_epochs", type=click.IntRange(0))
@option_from(ModelConfig, "cell", type=click.Choice(CELLS))
@option_from(ModelConfig, "activation", type=click.Choice(list(ACTIVATIONS)))
@option_from(ModelConfig, "embed_dim", type=click.IntRange(1))
@option_from(ModelConfig, "hidden_dim", type=click.IntRange(1))
@option_from(ModelConfig, "num_layers", "--layers", type=click.IntRange(1))
@option_from(ModelConfig, "dropout", type=FiniteFloatRange())  # its range: ModelConfig
@option_from(ModelConfig, "softmax", type=click.Choice(SOFTMAXES))
@option_from(ModelConfig, "tie_weights")
@option_from(TrainConfig, "optimizer", type=click.Choice(OPTIMIZERS))
@option_from(TrainConfig, "lr", type=FiniteFloatRange(0, MAX_LR, min_open=True))
@option_from(TrainConfig, "lr_schedule", type=click.Choice(SCHEDULES))
@option_from(TrainConfig, "warmup_steps", type=click.IntRange(0))
@option_from(TrainConfig, "clip", type=POSITIVE)
@option_from(TrainConfig, "batch_size", type=click.IntRange(1))
@option_from(TrainConfig, "seq_len", type=click.IntRange(2))
@option_from(TrainConfig, "seq_step", type=click.IntRange(1))
@option_from(TrainConfig, "batching", type=click.Choice(BATCHINGS))
@option_from(TrainConfig, "min_freq", type=click.IntRange(1))
@option_from(TrainConfig, "max_epochs", "--epochs", type=click.IntRange(1))
@option_from(TrainConfig, "patience", type=click.IntRange(1))
@option_from(TrainConfig, "max_minutes", type=POSITIVE)
@option_from(TrainConfig, "save_every_minutes", type=POSITIVE)
@option_from(TrainConfig, "limit_poems", type=click.IntRange(1))
@option_from(ModelConfig, "couplet_input")
@option_from(TrainConfig, "title_share", type=FiniteFloatRange(0, 1))
@option_from(ModelConfig, "direction", type=click.Choice(DIRECTIONS))
@option_from(ModelConfig, "forget_bias", type=FiniteFloatRange())
@option_from(ModelConfig, "weight_drop", type=FiniteFloatRange(0, 1, max_open=True))
@option_from(ModelConfig, "locked_dropout")
@option_from(TrainConfig, "ema_decay", type=FiniteFloatRange(0, 1, max_open=True))
@option_from(TrainConfig, "seed", type=SEED)
@option_from(TrainConfig, "device", type=click.Choice(DEVICES))
@option_from(TrainConfig, "bf16")
@threads_option
def train_command(resume, threads, **settings):
    """Train a poem model; the defaults are the recipe of the shipped model.

    Under ``torchrun --nproc_per_node=N train.py …`` each process takes 1/N of every batch."""
    setup_streams()
    set_threads(threads)
    model = {name: settings.pop(name) for name in list(settings) if name in MODEL_FIELDS}
    cfg = settings_or_usage_error(TrainConfig, model=model, **settings)
    # with --resume, the run keeps its own settings: what this command line gives is applied
    # where that is safe and refused where it is not (config.resumed_config)
    ctx = click.get_current_context()
    given = {
        name: value
        for name, value in ctx.params.items()
        if name not in ("resume", "threads", "out_dir")
        and ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
    }
    # progress lines are not worth a run: losing stderr's reader must not end training
    sys.stderr = ForgivingStream(sys.stderr)
    try:
        trainer = Trainer(
            cfg, resume=resume, log=lambda msg: click.echo(msg, err=True), limits=given
        )
    except ResumeConflict as err:  # a value on this command line: a usage error
        raise click.UsageError(str(err)) from None
    except USER_ERRORS as err:
        raise click.ClickException(str(err)) from None
    try:
        result = trainer.fit()
    except Interrupted as stop:  # last.pt saved; 128 + the signal, as a shell reports it
        sys.exit(128 + stop.signum)
    except KeyboardInterrupt:  # a second signal: stopped at once
        sys.exit(130)
    except (*USER_ERRORS, Diverged) as err:  # a loss no longer finite is the settings' fault
        raise click.ClickException(str(err)) from None
    if result:  # rank 0 of a distributed run, or the only process
        emit(json.dumps(result))
