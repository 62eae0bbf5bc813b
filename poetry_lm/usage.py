"""Usage errors (exit status 2) in one sentence that names the command's options: a value
given on the command line, or a setting's check (``SettingError``) worded with the option names
instead of the fields (``--top-k`` rather than ``top_k``).
"""

from __future__ import annotations

import click

from poetry_lm.settings import SettingError


def option_error(message: str, option: str) -> click.BadParameter:
    """A usage error (exit status 2) about ``option`` (``--start``, ``CHARS``), worded as click
    words its own and :func:`usage_error` words a setting's: Invalid value for '--start': …"""
    return click.BadParameter(message, param_hint=[option])  # a list: click quotes each name


def settings_or_usage_error(cls, **values):
    """``cls(**values)``; a ``SettingError`` from its checks becomes a usage error (exit status 2)
    in one sentence that names the command's options instead of the fields."""
    try:
        return cls(**values)
    except SettingError as err:
        raise usage_error(err) from None


def shown_name(param: click.Parameter, value=None) -> str:
    """How a message names a parameter: an option by its longest flag (``--top-k``), an off
    switch given as one (``--no-rhyme-first`` for ``value`` False), an argument as the usage
    line shows it (``CHARS``)."""
    if isinstance(param, click.Option):
        off = param.is_flag and param.secondary_opts and value is False
        return max(param.secondary_opts if off else param.opts, key=len)
    return param.human_readable_name


def usage_error(err: SettingError) -> click.BadParameter:
    """A ``SettingError`` as a usage error (exit status 2) of the current command: one sentence
    that names its options instead of the fields, after the option at fault (the first field)."""
    ctx = click.get_current_context()
    params = {p.name: p for p in ctx.command.params if p.opts}
    flags = {name: shown_name(p) for name, p in params.items()}
    culprit = params.get(err.fields[0]) if err.fields else None
    if culprit:  # the option at fault as it was given: --no-rhyme-first
        flags[culprit.name] = shown_name(culprit, ctx.params.get(culprit.name))
    message = err.worded(flags)
    if culprit and message.startswith(f"{flags[culprit.name]} "):  # named once, not twice
        return click.UsageError(message, ctx)
    return click.BadParameter(message, ctx, param=culprit)
