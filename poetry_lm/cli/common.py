"""What every command shares: user errors as one sentence, thread settings, common options,
and options read from the settings dataclasses (``poetry_lm.settings``).

Errors a user can cause end in one sentence on stderr and exit status 1 or 2, never a traceback.
"""

from __future__ import annotations

import os
from dataclasses import MISSING, Field, fields

import click

from poetry_lm.model.checkpoint import CheckpointError
from poetry_lm.paths import DEFAULT_CORPUS, SHIPPED_MODEL
from poetry_lm.settings import SettingError
from poetry_lm.text.corpus import CorpusError

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


model_option = click.option(
    "--model",
    "checkpoint",
    type=click.Path(dir_okay=False),
    default=str(SHIPPED_MODEL),
    show_default="models/poetry_lm.pt",
    help="The checkpoint to use.",
)
threads_option = click.option(
    "--threads",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="CPU threads for torch (more rarely helps on a busy 2-core machine).",
)


def form_option(ctx, param, value):
    from poetry_lm.prosody.forms import parse_form

    try:
        return parse_form(value) if value else None
    except ValueError as err:
        raise click.BadParameter(str(err)) from None


def field_named(cls, name: str) -> Field:
    """The dataclass field ``cls.name``."""
    (found,) = [f for f in fields(cls) if f.name == name]
    return found


def field_default(cls, name: str):
    """The default of the dataclass field ``cls.name``."""
    f = field_named(cls, name)
    return f.default_factory() if f.default is MISSING else f.default


def option_from(cls, name: str, *decls: str, **attrs):
    """A click option for the dataclass field ``cls.name``, taking its default and help from the
    field, so that each is written once. ``decls`` default to ``--name-with-dashes``; a bool
    field becomes a flag. ``attrs`` (a click type, say) are passed on."""
    default = field_default(cls, name)
    attrs.setdefault("help", field_named(cls, name).metadata.get("help"))
    if isinstance(default, bool):
        attrs.setdefault("is_flag", True)
    else:
        attrs.setdefault("show_default", default not in (None, ""))
    return click.option(*(decls or ["--" + name.replace("_", "-")]), name, default=default, **attrs)


def settings_or_usage_error(cls, **values):
    """``cls(**values)``; a ``SettingError`` from its checks becomes a usage error (exit status 2)
    in one sentence that names the command's options instead of the fields."""
    try:
        return cls(**values)
    except SettingError as err:
        ctx = click.get_current_context()
        params = {p.name: p for p in ctx.command.params if p.opts}
        flags = {name: max(p.opts, key=len) for name, p in params.items()}
        culprit = params.get(err.fields[0]) if err.fields else None
        raise click.BadParameter(err.worded(flags), ctx, param=culprit) from None


corpus_option = click.option(
    "--corpus",
    type=click.Path(dir_okay=False),
    default=str(DEFAULT_CORPUS),
    show_default="corpus/tang.jsonl.xz",
)

split_option = click.option(
    "--split", type=click.Choice(["train", "valid", "test"]), default="test", show_default=True
)
