"""Poems given on the command line: a text argument under the one text rule, and ``--file``, a
file of poems in any of the three layouts the commands write or read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Container

import click

from poetry_lm.text.corpus import CorpusError
from poetry_lm.usage import option_error


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


def untitled(lines: list[str]) -> list[str]:
    """The lines of a poem file with generate's title lines (《春望》, with --title) made blank:
    a title is not part of its poem, and the line numbers of messages stay those of the file."""
    return ["\n" if TITLE_LINE.fullmatch(line.strip()) else line for line in lines]


TITLE_LINE = re.compile("《[^《》]*》")
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
    from poetry_lm.text.normalise import normalise, poem_entries, read_text_lines

    lines = untitled(read_text_lines(path))
    if lines and lines[0].startswith("{"):
        return [
            json_text(line, path, n) for n, line in enumerate(lines, 1) if line.strip()
        ], JSON_LINES
    # a verse ends at its first mark: a mark before a line's last character starts another; a
    # file without a mark at all holds unpunctuated poems, one a line, not one long poem
    ends, read = set(VERSE_ENDS), [normalise(line) for line in lines]
    blocks = all(not set(r[:-1]) & ends for r in read) and any(r[-1:] in ends for r in read)
    entries = poem_entries(lines, path, known, blocks)
    return [text for _, text in entries], VERSE_LINES if blocks else POEM_LINES


def json_text(line: str, path: str, line_no: int) -> str:
    """The ``text`` of one of generate's JSON lines; anything else (not JSON, no text, a text
    that is no string, nesting too deep to parse, a number too long to read) is one sentence
    naming the file and the line, a CorpusError."""
    from poetry_lm.text.normalise import file_name

    try:
        text = json.loads(line)["text"]
    except (ValueError, RecursionError, KeyError, TypeError):  # ValueError: bad JSON, 10**5000
        text = None
    if not isinstance(text, str):
        raise CorpusError(
            f"{file_name(path)} line {line_no} is not generate's JSON output, one poem a line"
        )
    return text
