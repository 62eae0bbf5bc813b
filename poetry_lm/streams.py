"""Writing to standard output and standard error: Chinese where nothing chose an encoding, a
failed write as one sentence (:func:`emit`), and a progress stream that outlives its reader.

Shared by the commands (``poetry_lm.cli``) and the tools (``poetry_lm.tools``).
"""

from __future__ import annotations

import os
import sys

import click


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


def silence_stdout() -> None:
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
        silence_stdout()
        raise click.ClickException("standard output was closed by its reader") from None
    except OSError as err:
        silence_stdout()
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
