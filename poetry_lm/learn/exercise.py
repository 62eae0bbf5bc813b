"""Exercises: write the backward passes of the RNN, LSTM and GRU cells yourself, then grade them.

    python -m poetry_lm exercise init DIR     # rnn_cell.py, lstm_cell.py, gru_cell.py with TODOs
    python -m poetry_lm exercise grade DIR    # gradient by gradient, with hints into docs/bptt.md

Each file subclasses a reference cell (poetry_lm/learn/reference/cells.py), keeps its forward pass
and replaces its ``backward`` with a TODO; ``init --solution`` writes the reference's backward
instead (what the tests grade). Grading runs the checks of ``gradcheck --cell`` (see
poetry_lm/learn/plugin.py) on each file: the whole sequence against finite differences, and the
first time step and gradient where the backward goes wrong.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import sys
import textwrap
from pathlib import Path

import click

from poetry_lm.learn import plugin
from poetry_lm.learn.reference import GRUCell, LSTMCell, RNNCell

# file stem → (reference class, the section of docs/bptt.md that derives its backward)
EXERCISES = {
    "rnn_cell": (RNNCell, "RNN (`RNNCell`)"),
    "lstm_cell": (LSTMCell, "LSTM (`LSTMCell`)"),
    "gru_cell": (GRUCell, "GRU (`GRUCell`)"),
}
AFFINE = "The affine map (shared by all three cells)"
BPTT = "BPTT: the time loop"
GATE_PATHS = "dh sums every gate path"
# gradient name → (the section to read, what to look at there)
HINTS = {
    "weight_ih": (AFFINE, "dW_ih += dgiᵀ x, the pre-activation gradient times the input"),
    "bias_ih": (AFFINE, "db_ih += Σ_batch dgi, a sum over the rows"),
    "weight_hh": (AFFINE, "dW_hh += dghᵀ h, with h the *previous* state"),
    "bias_hh": (AFFINE, "db_hh += Σ_batch dgh"),
    "dx": (AFFINE, "dx = dgi W_ih, every gate block at once"),
    "dh": (GATE_PATHS, "dh = da W_hh adds the paths through every gate (and the GRU's ⊙ z)"),
    "dc": ("LSTM (`LSTMCell`)", "dc = dc' ⊙ f, the additive cell path"),
}


def anchor(section: str) -> str:
    """GitHub's anchor of a markdown heading: lower case, spaces to '-', punctuation dropped."""
    kept = "".join(ch for ch in section.lower() if ch.isalnum() or ch in " -_")
    return "docs/bptt.md#" + kept.replace(" ", "-")


def exercise_source(stem: str, solution: bool) -> str:
    """The text of one exercise file: the reference's backward, its body a TODO unless solution."""
    cls, section = EXERCISES[stem]
    method = textwrap.dedent(inspect.getsource(cls.backward))
    lines = method.splitlines()
    body = ast.parse(method).body[0].body  # [docstring, cache unpacking, the computation …]
    keep = lines[: body[2].lineno - 1]  # def line, docstring, cache unpacking
    todo = [
        "    # TODO: compute the gradients above; add the parameter gradients into self.grads",
        "    # (or call self._affine_backward) and return what the docstring says.",
        f'    raise NotImplementedError("backward of My{cls.__name__} is not written yet")',
    ]
    method = "\n".join(lines if solution else keep + todo)
    return f'''"""Exercise: the backward pass of {cls.__name__} (docs/bptt.md, section "{section}").

The forward pass is the reference's: read {cls.__name__}.forward in
poetry_lm/learn/reference/cells.py first, and its cache. Helpers: sigmoid, dsigmoid(y) = y(1 − y)
and dtanh(y) = 1 − y², written through the outputs; self._affine_backward(x, h, dgi, dgh) adds
dW_ih, db_ih, dW_hh, db_hh into self.grads and returns (dx, the dh through gh). Grade with

    python -m poetry_lm exercise grade DIR
"""

import numpy as np  # noqa: F401

from poetry_lm.learn.reference.cells import {cls.__name__}, dsigmoid, dtanh, sigmoid  # noqa: F401


class My{cls.__name__}({cls.__name__}):
{textwrap.indent(method, "    ")}
'''


def init(folder: Path, solution: bool = False) -> list[Path]:
    """Write the three exercise files into ``folder``; never overwrites (FileExistsError)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{stem}.py" for stem in EXERCISES]
    for path in paths:
        if path.exists():
            raise FileExistsError(f"{path} exists already; grade it, or init another folder")
    for stem, path in zip(EXERCISES, paths):
        path.write_text(exercise_source(stem, solution), encoding="utf-8")
    return paths


def load_exercise(path: Path):
    """The class My<Cell> from an exercise file. CellError if the file cannot be loaded."""
    if not path.is_file():
        raise plugin.CellError(f"{path} is missing: run `python -m poetry_lm exercise init` first")
    spec = importlib.util.spec_from_file_location(f"poetry_lm_exercise_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # a student's file can fail in any way; say where
        raise plugin.CellError(f"{path} does not load: {type(err).__name__}: {err}") from None
    name = "My" + EXERCISES[path.stem][0].__name__
    if not hasattr(module, name):
        raise plugin.CellError(f"{path} has no class {name}")
    return getattr(module, name)


def grade_one(path: Path, echo=click.echo) -> bool:
    """Grade one exercise file and print the result; True if it passes."""
    cls = load_exercise(path)
    section = EXERCISES[path.stem][1]
    case, _ = plugin.make_user_case(cls, "sum")
    try:
        errors = plugin.sequence_errors(case)
        failure = plugin.first_failure(case)
    except NotImplementedError:
        echo(f"{path.name}: not written yet (backward raises NotImplementedError)")
        echo(f"  read {anchor(section)}")
        return False
    except Exception as err:  # the student's backward: report it, do not crash the grader
        echo(f"{path.name}: backward fails: {type(err).__name__}: {err}")
        echo(f"  read {anchor(section)}")
        return False
    wrong = [name for name, err in errors.items() if not err <= plugin.TOL_FD]
    echo(f"{path.name}: " + ("PASS" if not wrong and failure is None else "FAIL"))
    for name, err in errors.items():
        echo(f"  {name:<10}{err:>10.2e}  {'ok' if err <= plugin.TOL_FD else 'wrong'}")
    if failure is not None:
        T = case.xs.shape[0]
        echo("  " + plugin.describe(failure, T))
        hint_section, hint = HINTS.get(failure.gradient, (section, ""))
        sections = dict.fromkeys([hint_section, section])  # once each, in order
        echo(f"  hint: {hint}; read " + " and ".join(map(anchor, sections)))
    elif wrong:
        echo(f"  every step is right alone but not over time: read {anchor(BPTT)}")
    return not wrong and failure is None


@click.group()
def exercise():
    """Write the cells' backward passes yourself (init), then check them (grade)."""


@exercise.command("init")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--solution", is_flag=True, help="Write the reference's backward instead of TODOs.")
def init_command(folder, solution):
    """Write rnn_cell.py, lstm_cell.py and gru_cell.py into FOLDER, backward passes left TODO."""
    try:
        paths = init(Path(folder), solution)
    except OSError as err:
        raise click.ClickException(str(err)) from None
    for path in paths:
        click.echo(f"wrote {path}")
    click.echo(f"fill in each backward, then: python -m poetry_lm exercise grade {folder}")


@exercise.command("grade")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--only", type=click.Choice(list(EXERCISES)), help="Grade one file only.")
def grade_command(folder, only):
    """Grade the exercise files in FOLDER; exit status 1 unless all pass."""
    try:
        results = [
            grade_one(Path(folder) / f"{stem}.py") for stem in ([only] if only else EXERCISES)
        ]
    except plugin.CellError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"{sum(results)} of {len(results)} pass")
    sys.exit(0 if all(results) else 1)
