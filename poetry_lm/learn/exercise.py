"""Exercises: write the backward passes of the RNN, LSTM and GRU cells yourself, then grade them.

    python -m poetry_lm exercise init DIR     # DIR/cells.py: the cells, backward passes to write
    python -m poetry_lm exercise grade DIR    # gradient by gradient, with hints into docs/bptt.md

``init`` writes a copy of poetry_lm/learn/reference/cells.py in which the body of each cell's
``backward`` (after its cache is unpacked) is replaced by the docstring's equations as comments
and ``raise NotImplementedError``: the forward pass stays right above, the answer is gone. The
copy is made from the reference's source at every ``init``, so the two never drift apart;
``init --solution`` writes the reference unchanged (what the tests grade).

Grading runs the checks of ``gradcheck --cell`` (poetry_lm/learn/plugin.py) on each class of the
copy, the RNN once with tanh and once with relu: the whole sequence against finite differences,
and the first time step and gradient where the backward goes wrong. If the gradients are exactly
the reference's with one known slip (SLIPS) put in, the hint names that slip.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import inspect
import sys
import textwrap
from pathlib import Path

import click

from poetry_lm.learn import gradcheck, plugin
from poetry_lm.learn.reference import cells

# exercise → (class of cells.py, the constructor options graded, the section of docs/bptt.md)
EXERCISES = {
    "rnn": ("RNNCell", [{"nonlinearity": "tanh"}, {"nonlinearity": "relu"}], "RNN (`RNNCell`)"),
    "lstm": ("LSTMCell", [{}], "LSTM (`LSTMCell`)"),
    "gru": ("GRUCell", [{}], "GRU (`GRUCell`)"),
}
FILE = "cells.py"
AFFINE = "The affine map (shared by all three cells)"
BPTT = "BPTT: the time loop"
GATE_PATHS = "dh sums every gate path"
# gradient name → (the section to read, what to look at there), when no known slip fits
HINTS = {
    "weight_ih": (AFFINE, "dW_ih += dgiᵀ x, the pre-activation gradient times the input"),
    "bias_ih": (AFFINE, "db_ih += Σ_batch dgi, a sum over the rows"),
    "weight_hh": (AFFINE, "dW_hh += dghᵀ h, with h the *previous* state"),
    "bias_hh": (AFFINE, "db_hh += Σ_batch dgh"),
    "dx": (AFFINE, "dx = dgi W_ih, every gate block at once"),
    "dh": (GATE_PATHS, "dh = da W_hh adds the paths through every gate (and the GRU's ⊙ z)"),
    "dc": ("LSTM (`LSTMCell`)", "dc = dc' ⊙ f, the additive cell path"),
}
# exercise → known slips: (the slip in words, the reference's line part, the part with the slip)
SLIPS = {
    "rnn": [
        ("φ'(a) left out (da = dh ⊙ φ'(a))", "da = dh * self._dphi(h_new)", "da = dh"),
        (
            "tanh' hard-coded where φ' belongs (da = dh ⊙ φ'(a) with the cell's own φ)",
            "self._dphi(h_new)",
            "dtanh(h_new)",
        ),
    ],
    "lstm": [
        (
            "the cell-state term through h' left out (dc' ← dc' + dh' ⊙ o ⊙ (1 − tanh²(c')))",
            "dc = dc + dh * o * dtanh(tanh_c)",
            "dc = dc",
        ),
        ("the additive cell path left out (dc = dc' ⊙ f)", "dh_prev, dc * f", "dh_prev, dc"),
    ],
    "gru": [
        ("the direct path left out (dh = dgh W_hh + dh' ⊙ z)", "dh_prev + dh * z", "dh_prev"),
        ("z the course's way round (da_z = dh' ⊙ (h − n) ⊙ z(1 − z))", "(h - n)", "(n - h)"),
        ("r left out of dgh's n block (dgh = [da_r | da_z | da_n ⊙ r])", "da_n * r]", "da_n]"),
    ],
}


def anchor(section: str) -> str:
    """GitHub's anchor of a markdown heading: lower case, spaces to '-', punctuation dropped."""
    kept = "".join(ch for ch in section.lower() if ch.isalnum() or ch in " -_")
    return "docs/bptt.md#" + kept.replace(" ", "-")


def skeleton(source: str) -> str:
    """cells.py's source with each exercise cell's backward body, after the cache unpacking,
    replaced by the docstring's equations (its lines with = or ←) as comments and a raise."""
    lines = source.splitlines()
    names = {name for name, _, _ in EXERCISES.values()}
    cuts = []  # (first line, end line, new lines), 0-based, in source order
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef) and node.name in names:
            backward = next(f for f in node.body if getattr(f, "name", "") == "backward")
            answer = backward.body[2:]  # after the docstring and `... = cache`
            indent = " " * answer[0].col_offset
            equations = [
                line.strip()
                for line in ast.get_docstring(backward).splitlines()
                if "=" in line or "←" in line
            ]
            todo = [f"{indent}# {eq}" for eq in equations] + [
                f"{indent}# TODO: one line per equation above (self._affine_backward adds dW, db)",
                f'{indent}raise NotImplementedError("{node.name}.backward is not written yet")',
            ]
            cuts.append((answer[0].lineno - 1, answer[-1].end_lineno, todo))
    for start, end, todo in reversed(cuts):
        lines[start:end] = todo
    header = (
        "# Exercise: write each cell's backward where it raises NotImplementedError, then run\n"
        "#     python -m poetry_lm exercise grade DIR\n"
        "# (a copy of poetry_lm/learn/reference/cells.py, made by `exercise init`)\n"
    )
    return header + "\n".join(lines) + "\n"


def init(folder: Path, solution: bool = False) -> Path:
    """Write ``folder``/cells.py, the skeleton (or the reference); never overwrites."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / FILE
    if path.exists():
        raise FileExistsError(f"{path} exists already; grade it, or init another folder")
    source = inspect.getsource(cells)
    path.write_text(source if solution else skeleton(source), encoding="utf-8")
    return path


def load_exercise(folder: Path):
    """The module of ``folder``/cells.py. CellError if it is missing or does not load."""
    path = folder / FILE
    if not path.is_file():
        raise plugin.CellError(f"{path} is missing: run `python -m poetry_lm exercise init` first")
    spec = importlib.util.spec_from_file_location("poetry_lm_exercise_cells", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # a student's file can fail in any way; say where
        raise plugin.CellError(f"{path} does not load: {type(err).__name__}: {err}") from None
    for name, _, _ in EXERCISES.values():
        if not hasattr(module, name):
            raise plugin.CellError(f"{path} has no class {name}")
    return module


def slipped(cls, right: str, wrong: str):
    """A subclass of the reference class ``cls`` whose backward has ``right`` replaced by
    ``wrong``: the reference with one slip, made from its own source."""
    source = textwrap.dedent(inspect.getsource(cls.backward))
    if right not in source:
        raise ValueError(f"{cls.__name__}.backward has no {right!r}")
    namespace = {}
    exec(source.replace(right, wrong), dict(vars(cells)), namespace)  # noqa: S102
    return type(f"{cls.__name__}Slip", (cls,), {"backward": namespace["backward"]})


def matching_slip(case, stem: str, options: dict) -> str | None:
    """The slip of SLIPS[stem] whose gradients the student's cell reproduces (to TOL_FD) on the
    same weights and sequence, or None."""
    _, ours = gradcheck.reference_results(case)
    reference = getattr(cells, EXERCISES[stem][0])
    for words, right, wrong in SLIPS[stem]:
        cell = slipped(reference, right, wrong)(
            case.cell.input_size, case.cell.hidden_size, **options
        )
        for name, p in cell.parameters().items():
            p[...] = case.cell.parameters()[name]  # the student's weights
        _, theirs = gradcheck.reference_results(dataclasses.replace(case, cell=cell))
        if ours.keys() == theirs.keys() and all(
            gradcheck.rel_error(ours[k], theirs[k]) <= plugin.TOL_FD for k in theirs
        ):
            return words
    return None


def grade_one(module, stem: str, options: dict, echo=click.echo) -> bool:
    """Grade one class of the student's cells.py with these constructor options; True if it
    passes."""
    name, _, section = EXERCISES[stem]
    label = f"{name} ({options['nonlinearity']})" if options else name
    case, _ = plugin.make_user_case(getattr(module, name), "sum", **options)
    try:
        errors = plugin.sequence_errors(case)
        failure = plugin.first_failure(case)
    except NotImplementedError:
        echo(f"{label}: not written yet (backward raises NotImplementedError)")
        echo(f"  read {anchor(section)}")
        return False
    except Exception as err:  # the student's backward: report it, do not crash the grader
        echo(f"{label}: backward fails: {type(err).__name__}: {err}")
        echo(f"  read {anchor(section)}")
        return False
    wrong = [key for key, err in errors.items() if not err <= plugin.TOL_FD]
    echo(f"{label}: " + ("PASS" if not wrong and failure is None else "FAIL"))
    for key, err in errors.items():
        echo(f"  {key:<10}{err:>10.2e}  {'ok' if err <= plugin.TOL_FD else 'wrong'}")
    if failure is not None:
        echo("  " + plugin.describe(failure, case.xs.shape[0]))
    if failure is not None or wrong:
        echo("  hint: " + hint(case, stem, options, failure))
    return not wrong and failure is None


def hint(case, stem: str, options: dict, failure) -> str:
    """The slip the gradients match, else what to look at for the first wrong gradient."""
    section = EXERCISES[stem][2]
    slip = matching_slip(case, stem, options)
    if slip is not None:
        return f"likely slip: {slip}; read {anchor(section)}"
    if failure is None:
        return f"every step is right alone but not over time: read {anchor(BPTT)}"
    hint_section, words = HINTS.get(failure.gradient, (section, "the equations"))
    sections = dict.fromkeys([hint_section, section])  # once each, in order
    return f"{words}; read " + " and ".join(map(anchor, sections))


@click.group()
def exercise():
    """Write the cells' backward passes yourself (init), then check them (grade)."""


@exercise.command("init")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--solution", is_flag=True, help="Write the reference's backward passes instead.")
def init_command(folder, solution):
    """Write FOLDER/cells.py: the reference cells, each backward left to write."""
    try:
        path = init(Path(folder), solution)
    except OSError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"wrote {path}")
    click.echo(f"fill in each backward, then: python -m poetry_lm exercise grade {folder}")


@exercise.command("grade")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--only", type=click.Choice(list(EXERCISES)), help="Grade one cell only.")
def grade_command(folder, only):
    """Grade the cells of FOLDER/cells.py; exit status 1 unless all pass."""
    try:
        module = load_exercise(Path(folder))
        results = [
            grade_one(module, stem, options)
            for stem in ([only] if only else EXERCISES)
            for options in EXERCISES[stem][1]
        ]
    except plugin.CellError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"{sum(results)} of {len(results)} pass")
    sys.exit(0 if all(results) else 1)
