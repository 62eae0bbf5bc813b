"""What every command shares: user errors as one sentence, the rules for numbers, seeds and
text given on the command line, writing to standard output, thread settings, common options,
and options read from the settings dataclasses (``poetry_lm.settings``).

Errors a user can cause end in one sentence on stderr and exit status 2 (usage: a value on
the command line) or 1 (anything else: a file, a checkpoint, a full disk), never a traceback.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Container
from dataclasses import MISSING, Field, fields

import click

from poetry_lm.model.checkpoint import CheckpointError
from poetry_lm.paths import DEFAULT_CORPUS, SHIPPED_MODEL
from poetry_lm.serving import MAX_BATCH_ROWS, MAX_WAIT, ServeSettings
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
            self.fail(f"{number:g} is out of range: it must be{self.interval()}", param, ctx)

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


def option_error(message: str, option: str) -> click.BadParameter:
    """A usage error (exit status 2) about ``option`` (``--start``, ``CHARS``), worded as click
    words its own and :func:`usage_error` words a setting's: Invalid value for '--start': …"""
    return click.BadParameter(message, param_hint=[option])  # a list: click quotes each name


def poem_text(value: str, known, param_hint: str, what: str) -> str:
    """A user's text under the one rule of :mod:`poetry_lm.text.normalise`; a usage error if not."""
    from poetry_lm.text.normalise import PoemTextError, read_poem

    try:
        return read_poem(value, known, what)
    except PoemTextError as err:
        raise option_error(str(err), param_hint) from None


def file_option(help: str):
    """``--file``: a UTF-8 file of poems, or ``-`` for standard input. Whether it exists, and
    what it holds, is checked as it is read (:func:`poetry_lm.text.normalise.read_text_lines`):
    a missing file is exit status 1 for every command, as any other file at fault."""
    return click.option(
        "--file",
        "poem_file",
        type=click.Path(dir_okay=False, allow_dash=True),
        default=None,
        help=help + " '-' reads standard input.",
    )


JSON_LINES = "generate's JSON lines"
VERSE_LINES = "generate's text: one verse a line, a blank line between poems"
POEM_LINES = "one poem a line"


def read_poems(path: str, known: Container[str] | None = None) -> tuple[list[str], str]:
    """The poems of a file (``-``: standard input), and which of three layouts it was read as:
    ``generate --format json`` lines (their ``text``); ``generate``'s text output, chosen when
    no line holds more than one verse and some line ends one; else one poem a line. Text is
    read by the one text rule, with ``known`` kept as it is (乾 is not read as 干). Raises
    CorpusError naming the file."""
    from poetry_lm.prosody.forms import VERSE_ENDS
    from poetry_lm.text.normalise import file_name, normalise, poem_entries, read_text_lines

    lines = read_text_lines(path)
    if lines and lines[0].startswith("{"):
        try:
            texts = [json.loads(line)["text"] for line in lines if line.strip()]
        except (json.JSONDecodeError, KeyError, TypeError):
            texts = None
        if texts is None or not all(isinstance(t, str) for t in texts):
            raise CorpusError(f"{file_name(path)} is not generate's JSON output, one poem a line")
        return texts, JSON_LINES
    # a verse ends at its first mark: a mark before a line's last character starts another; a
    # file without a mark at all holds unpunctuated poems, one a line, not one long poem
    ends, read = set(VERSE_ENDS), [normalise(line) for line in lines]
    blocks = all(not set(r[:-1]) & ends for r in read) and any(r[-1:] in ends for r in read)
    entries = poem_entries(lines, path, known, blocks)
    return [text for _, text in entries], VERSE_LINES if blocks else POEM_LINES


# -- output --------------------------------------------------------------------------------------


def setup_streams() -> None:
    """Make stdout and stderr able to write Chinese where nothing chose their encoding.

    Under ``LC_ALL=C`` Python picks ASCII; a user who set ``PYTHONIOENCODING`` chose theirs, and
    a character it cannot encode is then reported by :func:`emit`.
    """
    if os.environ.get("PYTHONIOENCODING"):
        return
    for stream in (sys.stdout, sys.stderr):
        if stream is not None and hasattr(stream, "reconfigure"):
            try:
                "月".encode(stream.encoding)
            except (UnicodeEncodeError, LookupError):
                stream.reconfigure(encoding="utf-8")


def _silence_stdout() -> None:
    """Point fd 1 at /dev/null so the interpreter's final flush cannot fail a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def emit(text: str) -> None:
    """Write a line to standard output now (not at exit); a write that fails is one clear
    sentence and exit status 1: a closed or full output, a reader gone, an encoding that lacks
    a character."""
    stream = sys.stdout
    if stream is None:  # ``>&-``: Python found no file descriptor 1
        raise click.ClickException("standard output is closed; nothing can be written")
    try:
        stream.write(text + "\n")
        stream.flush()
    except UnicodeEncodeError as err:
        raise click.ClickException(
            f"standard output's encoding ({stream.encoding}) cannot write "
            f"{err.object[err.start : err.end]!r}; set PYTHONIOENCODING=utf-8"
        ) from None
    except BrokenPipeError:
        _silence_stdout()
        raise click.ClickException("standard output was closed by its reader") from None
    except OSError as err:
        _silence_stdout()
        raise click.ClickException(
            f"cannot write to standard output ({err.strerror or err})"
        ) from None


class ForgivingStream:
    """A text stream whose write errors are dropped after the first: a progress display that
    lost its reader (``train.py 2>&1 | head -1``) must not end the run it reports on. Once
    lost, the file descriptor is pointed at /dev/null so that no later write fails either."""

    def __init__(self, stream):
        self.stream, self.lost = stream, False

    def _guard(self, action, fallback):
        if self.lost:
            return fallback
        try:
            return action()
        except (OSError, ValueError):
            self.lost = True
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, self.stream.fileno())
            except (OSError, ValueError, AttributeError):
                pass
            return fallback

    def write(self, text: str) -> int:
        return self._guard(lambda: self.stream.write(text), len(text))

    def flush(self) -> None:
        self._guard(self.stream.flush, None)

    def __getattr__(self, name):
        return getattr(self.stream, name)


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


def form_option(ctx, param, value):
    """--form: None when not given; any given value, the empty one included, must name a form."""
    from poetry_lm.prosody.forms import parse_form

    if value is None:
        return None
    try:
        return parse_form(argument_text(value))
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


def range_type(f: Field, default) -> click.ParamType | None:
    """The click type of a number field with a range (``int`` or ``int | None``: an integer;
    else a finite float), else None."""
    low, high, low_open = f.metadata.get("range", (None, None, False))
    if isinstance(default, bool) or (low is None and high is None):
        return None
    if str(f.type).split(" | ")[0] in ("int", "<class 'int'>"):
        return click.IntRange(low, high, min_open=low_open)
    return FiniteFloatRange(low, high, min_open=low_open)


def settings_or_usage_error(cls, **values):
    """``cls(**values)``; a ``SettingError`` from its checks becomes a usage error (exit status 2)
    in one sentence that names the command's options instead of the fields."""
    try:
        return cls(**values)
    except SettingError as err:
        raise usage_error(err) from None


def shown_name(param: click.Parameter) -> str:
    """How a message names a parameter: an option by its longest flag (``--top-k``), an
    argument as the usage line shows it (``CHARS``)."""
    if isinstance(param, click.Option):
        return max(param.opts, key=len)
    return param.human_readable_name


def usage_error(err: SettingError) -> click.BadParameter:
    """A ``SettingError`` as a usage error (exit status 2) of the current command: one sentence
    that names its options instead of the fields, after the option at fault (the first field)."""
    ctx = click.get_current_context()
    params = {p.name: p for p in ctx.command.params if p.opts}
    flags = {name: shown_name(p) for name, p in params.items()}
    culprit = params.get(err.fields[0]) if err.fields else None
    return click.BadParameter(err.worded(flags), ctx, param=culprit)


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
