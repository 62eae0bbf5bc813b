"""One rule for the poem text a user gives, whatever the command (generate, score, evaluate).

Every command reads a user's text the same way, so the same text is accepted or refused the
same way everywhere:

1. a byte-order mark (U+FEFF) and all whitespace are dropped;
2. the half-width marks ``, . ? ! ; :`` become the full-width ``，。？！；：`` the corpus uses,
   and a run of marks collapses to its strongest, as the corpus's do (``霜。。`` → ``霜。``);
3. a character the model does not know is converted to simplified script (OpenCC ``t2s``); a
   character it knows is kept as it is, so 乾, 於, 徵 stay themselves and are not read as 干,
   于, 征;
4. what is left must be poem text: Chinese characters and ``，。？！；：、``, beginning with a
   character (a poem, a start text or a verse never begins with a mark), and at most
   :data:`MAX_TEXT_CHARS` long.

A title is read by the same rule, then kept as the corpus keeps titles: its Chinese characters
only (``clean_title``), at most :data:`~poetry_lm.text.corpus.MAX_TITLE_CHARS` of them.

Errors are :class:`PoemTextError`, one sentence naming the text and the offending character.
"""

from __future__ import annotations

import io
import os
import stat
import sys
import unicodedata
from collections.abc import Container
from pathlib import Path

from poetry_lm.text.corpus import (
    MAX_TITLE_CHARS,
    CorpusError,
    is_ideograph,
    is_poem_char,
    normalise_marks,
    to_simplified,
)

BOM = "\ufeff"
HALF_WIDTH = str.maketrans(",.?!;:", "，。？！；：")
# The longest poem of the corpus has 2,980 characters: a text longer than this is not a poem,
# and the bound keeps the work (and memory) of one poem bounded.
MAX_TEXT_CHARS = 4000


class PoemTextError(CorpusError):
    """Text given by a user that is not poem text, with a one-sentence reason."""


def simplify_unknown(text: str, known: Container[str] | None = None) -> str:
    """Convert to simplified script the characters not in ``known`` (every one if None)."""
    if known is None:
        return to_simplified(text)
    return "".join(ch if ch in known else to_simplified(ch) for ch in text)


def normalise(text: str, known: Container[str] | None = None) -> str:
    """Steps 1–3 of the module's rule: no BOM or whitespace, full-width marks, simplified script
    for what ``known`` (a vocabulary's tokens) lacks."""
    text = normalise_marks("".join(text.replace(BOM, "").split()).translate(HALF_WIDTH))
    return simplify_unknown(text, known)


def invisible(ch: str) -> bool:
    """True for a character a message would show as nothing: a control or format character
    (U+200B zero-width space), a combining mark (U+FE0F variation selector), a separator."""
    return ch != " " and unicodedata.category(ch)[0] in "CMZ"


def shown(text: str) -> str:
    """``text`` quoted for a message, each invisible character written as its code point so
    that the user can see what is at fault: ``'白日<U+200B>依'``; one such character alone is
    ``U+200B``."""
    if len(text) == 1 and invisible(text):
        return f"U+{ord(text):04X}"
    return "'" + "".join(f"<U+{ord(ch):04X}>" if invisible(ch) else ch for ch in text) + "'"


def check_poem_text(text: str, what: str = "poem", typed: str | None = None) -> str:
    """Step 4: raise :class:`PoemTextError` unless ``text`` is poem text that begins with a
    character; returns ``text``. An empty text passes (callers decide whether one is allowed).
    A message quotes ``typed``, the text as the user gave it, where given: "，。" read as "。"
    is still quoted as typed, and "<img src=x" with its spaces."""
    typed = text if typed is None else typed.strip()
    if len(text) > MAX_TEXT_CHARS:
        raise PoemTextError(
            f"the {what} has {len(text)} characters; at most {MAX_TEXT_CHARS} are accepted"
        )
    bad = next((ch for ch in text if not is_poem_char(ch)), None)
    if bad is not None:
        raise PoemTextError(
            f"the {what} {shown(typed[:20])} holds {shown(bad)}, which is not a Chinese character "
            "or poem punctuation"
        )
    if text and not is_ideograph(text[0]):
        raise PoemTextError(
            f"the {what} {shown(typed[:20])} begins with {shown(typed[0])}, not a character"
        )
    return text


def read_poem(text: str, known: Container[str] | None = None, what: str = "poem") -> str:
    """A user's text → normalised poem text (the whole rule), or :class:`PoemTextError`."""
    return check_poem_text(normalise(text, known), what, typed=text)


def read_title(text: str, known: Container[str] | None = None) -> str:
    """A user's title → the title as the model reads it: its Chinese characters only, as the
    corpus's titles (``《春望》（其一）`` → ``春望其一``), each read by the rule. Raises
    :class:`PoemTextError` for a title with no Chinese character, or longer than
    ``MAX_TITLE_CHARS`` characters (the longest a model was trained on)."""
    # clean_title's filter, without its cut: a title too long is refused, not shortened
    chinese = "".join(filter(is_ideograph, normalise(text, known)))
    if text.strip() and not chinese:
        raise PoemTextError(f"the title {shown(text)} holds no Chinese character")
    if len(chinese) > MAX_TITLE_CHARS:
        raise PoemTextError(
            f"the title has {len(chinese)} characters; at most {MAX_TITLE_CHARS} are accepted"
        )
    return chinese


STDIN = "-"  # a --file of this name is standard input


def source_name(path: Path | str) -> str:
    """Where poems were read from, as a line of output names it: the path, or "standard
    input" for ``-``."""
    return "standard input" if str(path) == STDIN else str(path)


def file_name(path: Path | str) -> str:
    """How messages name a poem file: "poem file PATH", or "standard input" for ``-``."""
    return source_name(path) if str(path) == STDIN else f"poem file {path}"


# The whole corpus is 10 MB of text: a poem file larger than this is a mistake (``/dev/zero``, a
# disk image), and reading it would only exhaust the memory.
MAX_FILE_BYTES = 64 * 2**20


def read_text_lines(path: Path | str) -> list[str]:
    """The lines of a UTF-8 text file, or of standard input where ``path`` is ``-``, each with
    its line end (``\r\n`` and ``\r`` read as ``\n``). Raises :class:`PoemTextError` naming
    the file: missing, unreadable, not a regular file (a device, a pipe, a folder), over
    :data:`MAX_FILE_BYTES`, or not UTF-8 (a checkpoint given by mistake)."""
    try:
        if str(path) == STDIN:
            if sys.stdin is None:  # ``<&-``: Python found no file descriptor 0
                raise PoemTextError("standard input is closed; there are no poems to read")
            raw = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)  # bytes: not the locale's decoding
        else:
            if not stat.S_ISREG(os.stat(path).st_mode):  # /dev/zero would be read for ever
                raise PoemTextError(
                    f"{file_name(path)} is not a regular file (a stream can be given on "
                    "standard input: --file -)"
                )
            with Path(path).open("rb") as f:
                raw = f.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            raise PoemTextError(
                f"{file_name(path)} is larger than {MAX_FILE_BYTES // 2**20} MiB, the most a "
                "poem file may hold"
            )
        return list(io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8"))
    except FileNotFoundError:
        raise PoemTextError(f"{file_name(path)} does not exist") from None
    except UnicodeDecodeError:
        raise PoemTextError(f"{file_name(path)} is not UTF-8 text") from None
    except OSError as err:
        raise PoemTextError(f"{file_name(path)} cannot be read ({err.strerror})") from None


def poem_entries(
    lines: list[str], path: Path | str, known: Container[str] | None = None, blocks: bool = False
) -> list[tuple[str, str]]:
    """(the text as given, the poem read from it by :func:`read_poem`) for each non-blank line
    of ``lines`` (the file ``path``), or with ``blocks`` each run of non-blank lines (a blank
    line between poems, the lines of one joined).

    An entry that is not poem text is an error naming the file and the line at fault, so that a
    perplexity is never silently computed over part of a file; so is a file with no poem.
    Raises :class:`PoemTextError`.
    """
    entries = []
    for line_no, entry in line_blocks(lines) if blocks else enumerate(lines, 1):
        try:
            text = read_poem(entry, known)
        except PoemTextError as err:
            line_no += _line_at_fault(entry, known)
            raise PoemTextError(f"{source_name(path)} line {line_no}: {err}") from None
        if text:
            entries.append((entry, text))
    if not entries:
        raise PoemTextError(f"{file_name(path)} holds no poems")
    return entries


def _line_at_fault(entry: str, known: Container[str] | None) -> int:
    """Which line of a block (0 for its first) holds a character that is not poem text; 0 where
    none does (the fault is the whole block's: its length, or its first character)."""
    for offset, line in enumerate(entry.split("\n")):
        if not all(is_poem_char(ch) for ch in normalise(line, known)):
            return offset
    return 0


def line_blocks(lines: list[str]) -> list[tuple[int, str]]:
    """Runs of non-blank lines, each joined, with the number (from 1) of its first line."""
    blocks: list[tuple[int, str]] = []
    previous_blank = True
    for line_no, line in enumerate(lines, 1):
        if not line.strip():
            previous_blank = True
        elif previous_blank:
            blocks.append((line_no, line))
            previous_blank = False
        else:
            blocks[-1] = (blocks[-1][0], blocks[-1][1] + line)
    return blocks
