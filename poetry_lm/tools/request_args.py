"""``poetry-lm generate``'s options, as the developers' tools take them: ``"--form 七律 --no-tones
--best-of 8"`` → a :class:`~poetry_lm.request.PoemRequest`, for decoding-stats' settings and its
``--extra``.

The tools may not import the command line, so the parser is read here from the request's fields,
by the rule the command line names them by: ``--field-name`` (``--start`` and ``-n``/``--num``
for ``starts`` and ``n``), a flag for a yes-or-no field (``--rhyme/--no-rhyme`` where it is on
or open by default), repeatable for a list. Defaults, help and ranges come from the fields.
"""

from __future__ import annotations

from dataclasses import fields
from functools import lru_cache

import click
from click.core import ParameterSource

from poetry_lm.options import TEXT, option_from
from poetry_lm.request import PoemRequest, Sampling
from poetry_lm.settings import SettingError
from poetry_lm.usage import shown_name

COMMAND_LINE = ParameterSource.COMMANDLINE
NAMES = {"starts": ("--start",), "n": ("-n", "--num")}  # where the name is not the field's


def field_option(cls, f):
    """The option of field ``f`` of ``cls``, named and typed as the command line does."""
    decls, attrs = NAMES.get(f.name, ()), {}
    if "bool" in str(f.type) and f.default is not False:  # on, or None: open until given
        name = f.name.replace("_", "-")
        decls = (f"--{name}/--no-{name}",)
    if "tuple" in str(f.type):
        attrs.update(multiple=True, show_default=False)
    if "str" in str(f.type):
        attrs["type"] = TEXT
    return option_from(cls, f.name, *decls, **attrs)


@lru_cache(maxsize=1)
def parser() -> click.Command:
    """A command that only parses: every PoemRequest and Sampling field an option."""

    def parse_only(**options):
        return options

    for cls in (Sampling, PoemRequest):  # decorators apply last first: the request's come first
        for f in reversed(fields(cls)):
            if f.name not in ("sampling", "given"):
                parse_only = field_option(cls, f)(parse_only)
    return click.command("generate")(parse_only)


def parse_request(args: list[str]) -> PoemRequest:
    """The request that ``generate`` with options ``args`` asks for, unchecked; an option it
    does not take, or a value it refuses, raises click.UsageError."""
    with parser().make_context("generate", list(args)) as ctx:  # it consumes the list
        typed = {n for n in ctx.params if ctx.get_parameter_source(n) is COMMAND_LINE}
        return PoemRequest.of(**ctx.params, given=frozenset(typed))


def option_words(err: SettingError) -> str:
    """A request's SettingError worded with generate's option names (``--best-of``)."""
    return err.worded({p.name: shown_name(p) for p in parser().params})
