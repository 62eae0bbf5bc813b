"""Command-line options and parameter types shared by the commands (``poetry_lm.cli``), the
developers' tools (``poetry_lm.tools``) and the learners' workbench (``poetry_lm.learn``): finite
numbers, the seed rule, UTF-8 arguments, the model, form, corpus and thread options, and options
read from the settings dataclasses (``poetry_lm.settings``), so that each default and help text
is written once.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import MISSING, Field, fields

import click

from poetry_lm.paths import DEFAULT_CORPUS, SHIPPED_MODEL
from poetry_lm.serving import MAX_BATCH_ROWS, MAX_WAIT, ServeSettings

# -- numbers -----------------------------------------------------------------------------------


class FiniteFloatRange(click.FloatRange):
    """click's FloatRange that also refuses nan and ±inf (which pass its comparisons), and says
    of a value that is no number, or out of range, what it must be: "'abc' is not a number in
    [0, 1)", "200 is out of range: it must be in (0, 100]"."""

    name = "finite float range"

    def convert(self, value, param, ctx):
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number{self.interval()}", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value} is not a finite number", param, ctx)
        try:
            return super().convert(number, param, ctx)
        except click.BadParameter:  # click's own words: "200.0 is not in the range x<=100.0"
            # the value as typed: 1e-400 reads as 0.0, which the user never wrote
            self.fail(f"{value} is out of range: it must be{self.interval()}", param, ctx)

    def interval(self) -> str:
        """The range as the settings' messages write it: " in [0, 1)", " ≥ 0", "" if none."""
        if self.min is not None and self.max is not None:
            low, high = "(["[not self.min_open], ")]"[not self.max_open]
            return f" in {low}{self.min:g}, {self.max:g}{high}"
        if self.min is not None:
            return f" {'>' if self.min_open else '≥'} {self.min:g}"
        if self.max is not None:
            return f" {'<' if self.max_open else '≤'} {self.max:g}"
        return ""

    def _describe_range(self) -> str:
        # without bounds here (the settings dataclass checks the range), click would print
        # "x<=None" in the help
        if self.min is None and self.max is None:
            return "finite"
        return super()._describe_range()


# One seed rule for every command: an integer from 0 to 2**32 - 1 (what numpy and torch both take).
SEED = click.IntRange(0, 2**32 - 1)


def seed_option(default: int | None, help: str):
    return click.option(
        "--seed", type=SEED, default=default, show_default=default is not None, help=help
    )


# -- text ----------------------------------------------------------------------------------------


def argument_text(value: str) -> str:
    """A command-line string as the UTF-8 text it was typed in.

    Python decodes ``argv`` with the locale's encoding and keeps undecodable bytes as lone
    surrogates; under ``LC_ALL=C`` that makes 月 three surrogates. The bytes are recovered and
    read as UTF-8; bytes that are not UTF-8 (a cut character, GBK) raise ValueError.
    """
    if not any("\udc80" <= ch <= "\udcff" for ch in value):
        return value
    raw = value.encode(sys.getfilesystemencoding(), "surrogateescape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{raw!r} is not UTF-8 text") from None


class Text(click.ParamType):
    """A string option or argument repaired by :func:`argument_text`; bad bytes: a usage error."""

    name = "text"

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            return argument_text(value)
        except ValueError as err:
            self.fail(str(err), param, ctx)


TEXT = Text()


def form_option(ctx, param, value):
    """--form: None when not given; any given value, the empty one included, must name a form."""
    from poetry_lm.prosody.forms import parse_form

    if value is None:
        return None
    try:
        return parse_form(argument_text(value))
    except ValueError as err:
        raise click.BadParameter(str(err)) from None


# -- options -------------------------------------------------------------------------------------

model_option = click.option(
    "--model",
    "checkpoint",
    type=click.Path(),
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


def set_threads(threads: int) -> None:
    """Fix torch's thread count: on a small shared machine extra threads mostly contend."""
    import torch

    torch.set_num_threads(threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))


def field_named(cls, name: str) -> Field:
    """The dataclass field ``cls.name``."""
    (found,) = [f for f in fields(cls) if f.name == name]
    return found


def field_default(cls, name: str):
    """The default of the dataclass field ``cls.name``."""
    f = field_named(cls, name)
    return f.default_factory() if f.default is MISSING else f.default


def range_type(f: Field, default) -> click.ParamType | None:
    """The click type of a number field with a range (``int`` or ``int | None``: an integer;
    else a finite float), else None."""
    low, high, low_open = f.metadata.get("range", (None, None, False))
    if isinstance(default, bool) or (low is None and high is None):
        return None
    if str(f.type).split(" | ")[0] in ("int", "<class 'int'>"):
        return click.IntRange(low, high, min_open=low_open)
    return FiniteFloatRange(low, high, min_open=low_open)


def option_from(cls, name: str, *decls: str, **attrs):
    """A click option for the dataclass field ``cls.name``, taking its default and help from the
    field, so that each is written once. ``decls`` default to ``--name-with-dashes``; a bool
    field becomes a flag (``--name/--no-name`` where it is on by default); a number with a
    range (``setting(…, low, high)``) takes it as its type. ``attrs`` (a click type, say) are
    passed on."""
    default = field_default(cls, name)
    attrs.setdefault("help", field_named(cls, name).metadata.get("help"))
    if "type" not in attrs and (kind := range_type(field_named(cls, name), default)):
        attrs["type"] = kind
    if isinstance(default, bool):
        attrs.setdefault("is_flag", True)
        if default and not decls:  # a flag that is on by default needs a way to turn it off
            name_dashed = name.replace("_", "-")
            decls = (f"--{name_dashed}/--no-{name_dashed}",)
            attrs.setdefault("show_default", True)
    else:
        attrs.setdefault("show_default", default not in (None, ""))
    return click.option(*(decls or ["--" + name.replace("_", "-")]), name, default=default, **attrs)


corpus_option = click.option(
    "--corpus",
    type=click.Path(dir_okay=False),
    default=str(DEFAULT_CORPUS),
    show_default="corpus/tang.jsonl.xz",
)

split_option = click.option(
    "--split", type=click.Choice(["train", "valid", "test"]), default="test", show_default=True
)

# the web service's batching options, for ``poetry-lm serve`` and the load script (which
# passes them to the server it starts); --max-rows is --batch-rows's name before
window_option = option_from(ServeSettings, "window", type=click.FloatRange(0, MAX_WAIT))
batch_rows_option = option_from(
    ServeSettings,
    "batch_rows",
    "--batch-rows",
    "--max-rows",
    type=click.IntRange(1, MAX_BATCH_ROWS),
)
