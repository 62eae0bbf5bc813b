"""Keep the example outputs in the documentation true to the code.

A fenced block (three backticks, no language) whose first line begins with ``$ `` is an
example: each ``$ command`` line is followed by the output it prints (stdout and stderr as a
terminal shows them), and examples are separated by blank lines. A shown output whose last
line is ``...`` shows only its first lines: those are compared, the rest is left out. A block
that runs another program (``curl`` against a running server) is not checked.

    python -m poetry_lm.tools.readme                  # README.md and its pages; exit 1 on drift
    python -m poetry_lm.tools.readme --update README.md docs/forms.md   # rewrite their outputs

Without FILES the documents are README.md and every page reached from it by links
(``documents``), so an example that moves from the README to a page it links to stays checked.

The commands run in this process (``poetry-lm …``, ``python -m poetry_lm …``, ``python
generate.py`` and ``python train.py`` are the package's own click commands), so the model is
read once per command and nothing is spawned. ``tests/tools/test_readme.py`` runs the comparison.
"""

from __future__ import annotations

import difflib
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import click

FENCE = "```"
MORE = "..."
README = "README.md"
PAGE_LINK = re.compile(r"\]\(([\w./-]+\.md)(?:#[\w-]*)?\)")  # a markdown link to a local page


def documents(root: Path) -> list[Path]:
    """README.md under ``root`` and every page reached from it by links, in order of discovery.

    Links are read relative to the page they are in; pages outside ``root`` are left out."""
    root = root.resolve()
    found, i = [root / README], 0
    while i < len(found):
        page = found[i]
        for link in PAGE_LINK.findall(page.read_text(encoding="utf-8")):
            target = (page.parent / link).resolve()
            if target.is_relative_to(root) and target.is_file() and target not in found:
                found.append(target)
        i += 1
    return found


@dataclass
class Example:
    command: str  # the line after "$ ", comment included
    shown: list[str]  # the output lines shown (without a closing "...")
    cut: str | None  # the closing "..." line as written, when only the first lines are shown


def example_blocks(lines: list[str]) -> list[tuple[int, int]]:
    """(first, last) line indices of the body of each example block: the lines between fences."""
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() == FENCE and i + 1 < len(lines) and lines[i + 1].startswith("$ "):
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == FENCE)
            blocks.append((i + 1, end))
            i = end
        i += 1
    return blocks


def parse_block(body: list[str]) -> list[Example]:
    examples: list[Example] = []
    for line in body:
        if line.startswith("$ "):
            examples.append(Example(line[2:], [], None))
        else:
            examples[-1].shown.append(line)
    for ex in examples:
        while ex.shown and not ex.shown[-1].strip():  # the blank line between examples
            ex.shown.pop()
        if ex.shown and ex.shown[-1].strip() == MORE:
            ex.cut = ex.shown.pop()
    return examples


def run_command(command: str) -> list[str]:
    """Run an example command in this process → its output lines (stdout and stderr, in order).

    Raises ValueError for a command that is not one of the package's, or that fails."""
    from click.testing import CliRunner

    from poetry_lm.cli import main
    from poetry_lm.cli.train import train_command
    from poetry_lm.cli.write import generate_command

    argv = shlex.split(command, comments=True)
    if argv[:2] == ["python", "generate.py"]:
        cmd, args = generate_command, argv[2:]
    elif argv[:2] == ["python", "train.py"]:
        cmd, args = train_command, argv[2:]
    elif argv[:3] == ["python", "-m", "poetry_lm"]:
        cmd, args = main, argv[3:]
    elif argv[:1] == ["poetry-lm"]:  # the console script of the same group
        cmd, args = main, argv[1:]
    else:
        raise ValueError(f"cannot run the example {command!r}: not a poetry_lm command")
    result = CliRunner().invoke(cmd, args)
    if result.exit_code != 0:
        raise ValueError(
            f"the example {command!r} failed (exit {result.exit_code}): {result.output.strip()}"
        )
    return [line.rstrip() for line in result.output.rstrip("\n").split("\n")]


def render(ex: Example, output: list[str]) -> list[str]:
    """The example as it should read: its command and its output (cut as the original was)."""
    if ex.cut is not None:
        output = [*output[: len(ex.shown)], ex.cut]
    return [f"$ {ex.command}", *output]


PACKAGE_COMMANDS = ("poetry-lm ", "python -m poetry_lm ", "python generate.py", "python train.py")


def refresh(text: str) -> str:
    """``text`` with every example's output replaced by what its command prints now. A block
    with a command of another program (``curl`` against a running server) is left as written."""
    lines = text.split("\n")
    for first, last in reversed(example_blocks(lines)):
        examples = parse_block(lines[first:last])
        if not all(ex.command.startswith(PACKAGE_COMMANDS) for ex in examples):
            continue
        body: list[str] = []
        for ex in examples:
            body += [*([""] if body else []), *render(ex, run_command(ex.command))]
        lines[first:last] = body
    return "\n".join(lines)


def drift(path: Path) -> str:
    """A unified diff from ``path`` as written to ``path`` refreshed; empty when they agree."""
    text = path.read_text(encoding="utf-8")
    fresh = refresh(text)
    return "".join(
        difflib.unified_diff(
            text.splitlines(keepends=True),
            fresh.splitlines(keepends=True),
            f"{path} (as written)",
            f"{path} (as the commands print now)",
        )
    )


@click.command()
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--update", is_flag=True, help="Rewrite the outputs in place instead of comparing.")
def main(files: tuple[Path, ...], update: bool):
    """Compare the ``$ command`` examples of FILES (default: README.md and the pages reached
    from it by links) with what the commands print now; exit 1 with a diff on drift.
    --update rewrites them."""
    failed = False
    for path in files or documents(Path(".")):
        try:
            if update:
                path.write_text(refresh(path.read_text(encoding="utf-8")), encoding="utf-8")
                click.echo(f"{path}: examples rewritten")
                continue
            diff = drift(path)
        except ValueError as err:
            raise click.ClickException(f"{path}: {err}") from None
        if diff:
            failed = True
            click.echo(diff)
        else:
            click.echo(f"{path}: every example prints what it shows")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
