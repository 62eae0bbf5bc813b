"""Check a recurrent cell of your own: ``python -m poetry_lm gradcheck --cell my_module:MyCell``.

Two conventions are accepted.

1. This project's (poetry_lm/learn/reference/cells.py): a subclass of the reference ``_Cell``, or
   any class with ``parameters()``, a ``grads`` dict, ``forward(x, *state) → (*state', cache)``
   and ``backward(*dstate', cache) → (dx, *dstate)``.

2. The homework's (the course's rnn_cell.py / gru_cell.py), adapted by ``HomeworkCell``:

   - every array attribute P with a gradient attribute dP of the same shape is a parameter:
     ``W_ih``/``dW_ih``, ``b_hh``/``db_hh``, ``Wzh``/``dWzh`` …;
   - ``forward(x, h)`` (or ``forward(x, h, c)``) returns h' (or (h', c')); ``__call__`` is used
     when there is no ``forward``;
   - ``backward(delta, h, h_prev_l, h_prev_t) → (dx, dh)``: delta = ∂L/∂h' (B, H), h = h',
     h_prev_l = the input x (the layer below), h_prev_t = the previous state; or
     ``backward(delta) → (dx, dh)`` (``backward(dh, dc) → (dx, dh, dc)``) for a cell that keeps
     what its last ``forward`` computed: the adapter calls ``forward`` on step t's inputs again
     just before ``backward`` at step t;
   - the parameter gradients are *added* over the calls (``+=``), as BPTT sums them over time,
     and may be batch sums (this project's convention) or batch means (many homework APIs divide
     by the batch size B). ``reduction="auto"`` tries both against finite differences and keeps
     the one that fits; the report says which. dx and dh are never averaged.

The class is built as ``MyCell(input_size, hidden_size)`` after ``np.random.seed(seed)``. All
arrays are float64 with rows as batch items: x (B, I), h (B, H).

What is checked (finite differences are the oracle: your forward defines the function)
--------------------------------------------------------------------------------------
1. The whole sequence: the gradient of L = Σ P_out ⊙ out + Σ P_h ⊙ h_T over T steps (as
   ``gradcheck``) for every parameter, the inputs and the initial state.
2. Step by step, in the order BPTT visits them (t = T−1 down to 0): given the delta that reaches
   step t, your backward must return the gradient of the one-step function Σ delta ⊙ cell(x_t,
   h_{t−1}). The first step and gradient that fail are where the error first appears.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from poetry_lm.learn.gradcheck import (
    TOL_FD,
    Case,
    central_differences,
    finite_difference_grads,
    reference_results,
    rel_error,
)
from poetry_lm.learn.reference.cells import _Cell, forward_sequence, zero_grads


class CellError(ValueError):
    """A user's cell that cannot be loaded, built or checked, with a one-sentence reason."""


def split_spec(spec: str) -> tuple[str, str]:
    """'module:Class' → ('module', 'Class'); CellError for anything else."""
    module_name, sep, class_name = spec.partition(":")
    if not sep or not module_name or not class_name:
        raise CellError(
            f"{spec!r} is not MODULE:CLASS or FILE.py:CLASS (for example my_cells:MyRNNCell)"
        )
    return module_name, class_name


def load_class(spec: str):
    """'module:Class' or 'path/to/file.py:Class' → the class; the current directory is
    importable. CellError otherwise."""
    module_name, class_name = split_spec(spec)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = import_file(module_name) if module_name.endswith(".py") else None
        module = module or importlib.import_module(module_name)
    except ImportError as err:
        raise CellError(f"cannot import {module_name!r}: {err}") from None
    try:
        return getattr(module, class_name)
    except AttributeError:
        raise CellError(f"module {module_name!r} has no class {class_name!r}") from None


def import_file(path: str):
    """The module in the file at ``path`` (a student's cells.py anywhere), run once."""
    if not os.path.isfile(path):
        raise ImportError(f"no file {path}")
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling look a class's module up
    spec.loader.exec_module(module)
    return module


def is_native(obj) -> bool:
    """True for a cell in this project's convention (no adapter needed)."""
    return isinstance(obj, _Cell) or (
        hasattr(obj, "parameters") and isinstance(getattr(obj, "grads", None), dict)
    )


def _positional(fn) -> list[str]:
    return [
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]


class HomeworkCell(_Cell):
    """A homework-convention cell (module docstring) seen through the reference cells' interface,
    so that ``forward_sequence``, ``bptt`` and the checks of gradcheck work on it unchanged.

    ``grads`` multiplies the cell's parameter gradients by ``scale`` (B for batch means, 1 for
    sums). Raises CellError if the class's shape does not fit the convention.
    """

    def __init__(self, user, scale: float = 1.0):
        self.user, self.scale = user, scale
        self.names = [
            name
            for name, value in sorted(vars(user).items())
            if isinstance(value, np.ndarray)
            and not name.startswith("d")
            and isinstance(getattr(user, "d" + name, None), np.ndarray)
            and getattr(user, "d" + name).shape == value.shape
        ]
        if not self.names:
            raise CellError(
                f"{type(user).__name__} has no parameter with a gradient: name them like "
                "W_ih and dW_ih (the same shape)"
            )
        self._forward = getattr(user, "forward", None) or user.__call__
        self.n_states = len(_positional(self._forward)) - 1  # forward(x, h[, c])
        if self.n_states not in (1, 2):
            raise CellError("forward must take (x, h) or (x, h, c)")
        backward_args = _positional(user.backward)
        self.explicit = len(backward_args) == 4  # backward(delta, h, h_prev_l, h_prev_t)
        if not self.explicit and len(backward_args) != self.n_states:
            raise CellError(
                "backward must take (delta, h, h_prev_l, h_prev_t), or one delta per state "
                f"(found {', '.join(backward_args) or 'no arguments'})"
            )
        if self.explicit and self.n_states != 1:
            raise CellError("backward(delta, h, h_prev_l, h_prev_t) is for cells with one state")

    def parameters(self):
        return {name: getattr(self.user, name) for name in self.names}

    def zero_grad(self):
        for name in self.names:
            setattr(self.user, "d" + name, np.zeros_like(getattr(self.user, name)))

    @property
    def grads(self):
        return {"d" + name: self.scale * getattr(self.user, "d" + name) for name in self.names}

    def grad_name(self, name):
        return "d" + name

    def forward(self, x, *state):
        new = self._forward(x, *state)
        new = tuple(new) if self.n_states > 1 else (new,)
        new = tuple(np.asarray(s, dtype=float).reshape(state[0].shape) for s in new)
        return (*new, (x, state, new))

    def backward(self, *args):
        *dstate, (x, state, new) = args
        if self.explicit:
            out = self.user.backward(dstate[0], new[0], x, state[0])
        else:
            self._forward(x, *state)  # the cell keeps only its last step: redo step t
            out = self.user.backward(*dstate)
        dx, *dprev = out
        shapes = (x.shape, *(s.shape for s in state))
        return tuple(np.asarray(a, dtype=float).reshape(s) for a, s in zip((dx, *dprev), shapes))


def make_user_case(cls, reduction="auto", T=4, B=3, input_size=3, hidden_size=5, seed=0, **options):
    """(Case, reduction used) for the user's class; Case is gradcheck's, so its checks apply.

    ``reduction`` "sum", "mean" or "auto" (module docstring); ``options`` go to the constructor
    (nonlinearity="relu", say)."""
    np.random.seed(seed)  # homework classes draw their weights from the global generator
    seeded = {"rng": seed} if "rng" in inspect.signature(cls).parameters else {}  # reference cells
    try:
        user = cls(input_size, hidden_size, **seeded, **options)
    except Exception as err:  # a user's constructor can fail in any way
        raise CellError(f"{cls.__name__}({input_size}, {hidden_size}) failed: {err}") from None
    if is_native(user):
        cell, n_states = user, _native_states(user)
    else:
        cell = HomeworkCell(user)
        n_states = cell.n_states
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal((T, B, input_size))
    state0 = tuple(rng.standard_normal((B, hidden_size)) for _ in range(n_states))
    proj = (
        rng.standard_normal((T, B, hidden_size)),
        *(rng.standard_normal((B, hidden_size)) for _ in range(n_states)),
    )
    case = Case(cls.__name__, cell, xs, state0, proj)
    if isinstance(cell, HomeworkCell):
        reduction = _choose_reduction(case, reduction)
        cell.scale = float(B) if reduction == "mean" else 1.0
    else:
        reduction = "sum"
    return case, reduction


def _native_states(cell) -> int:
    """1 or 2: how many states forward takes after x."""
    return len(_positional(cell.forward)) - 1


def _choose_reduction(case, reduction):
    """The batch reduction, "sum" or "mean": the scaling under which the parameter gradients
    of ONE step match finite differences. One step, because a bug in how the state gradient
    reaches the step before (dc′ ⊙ f forgotten, say) skews every parameter gradient of a longer
    sequence, and could then make the wrong scaling fit better and be blamed on dW."""
    if reduction != "auto":
        return reduction
    case = Case(case.kind, case.cell, case.xs[:1], case.state0, (case.proj[0][:1], *case.proj[1:]))
    fd = finite_difference_grads(case)
    _, grads = reference_results(case)
    B = case.xs.shape[1]
    worst = {}
    for name, scale in (("sum", 1.0), ("mean", float(B))):
        worst[name] = max(rel_error(scale * grads["d" + p], fd[p]) for p in case.cell.parameters())
    return min(worst, key=worst.get)


@dataclass
class Failure:
    """Where a gradient first goes wrong: its name, the time step, and its relative error."""

    gradient: str
    step: int
    error: float


def sequence_errors(case):
    """{gradient name: relative error against finite differences} over the whole sequence."""
    fd = finite_difference_grads(case)
    _, grads = reference_results(case)
    params = case.cell.parameters()
    return {
        name_of(case.cell, key) if key in params else key: rel_error(
            grads[name_of(case.cell, key) if key in params else key], value
        )
        for key, value in fd.items()
    }


def one_step_fd(cell, x, state, upstream, eps=1e-6):
    """Finite differences of φ = Σ_k upstream[k] ⊙ cell(x, *state)[k] → {name: gradient}."""

    def phi():
        *new, _ = cell.forward(x, *state)
        return sum(float((u * s).sum()) for u, s in zip(upstream, new))

    arrays = {**cell.parameters(), "x": x, **{f"s{k}": s for k, s in enumerate(state)}}
    return central_differences(phi, arrays, eps)


def first_failure(case, tol=TOL_FD):
    """The first (step, gradient) in BPTT's order whose one-step gradient is wrong, or None.

    State gradients are named dx, dh and dc (towards the previous step); parameter gradients by
    the cell's own names. The upstream delta at each step is the one the cell's own BPTT passes
    in, so every step is judged on the input it actually received."""
    cell = case.cell
    *_, caches = forward_sequence(cell, case.xs, *case.state0)
    states = _states_along(case)
    dout, *dstate = case.proj
    dstate = [d.copy() for d in dstate]
    zero_grads(cell)
    state_names = ("dh", "dc")[: len(dstate)]
    for t in reversed(range(len(caches))):
        dstate[0] = dstate[0] + dout[t]
        upstream = [d.copy() for d in dstate]
        before = {k: g.copy() for k, g in cell.grads.items()}
        dx, *dstate = cell.backward(*dstate, caches[t])
        after = cell.grads
        fd = one_step_fd(cell, case.xs[t], states[t], upstream)
        ours = {k: after[k] - before[k] for k in after}
        ours.update({"dx": dx, **dict(zip(state_names, dstate))})
        theirs = {name_of(cell, p): fd[p] for p in cell.parameters()}
        theirs.update({"dx": fd["x"], **{n: fd[f"s{k}"] for k, n in enumerate(state_names)}})
        for name, value in theirs.items():
            err = rel_error(ours[name], value)
            if not err <= tol:
                return Failure(name, t, err)
    return None


def name_of(cell, param):
    """The name of a parameter's gradient: dW_ih for a homework cell, weight_ih for a native one."""
    return cell.grad_name(param) if isinstance(cell, HomeworkCell) else param


def _states_along(case):
    """The state entering each step."""
    states, state = [], case.state0
    for x in case.xs:
        states.append(state)
        *state, _ = case.cell.forward(x, *state)
        state = tuple(state)
    return states


def report_user_cell(spec, reduction, T, B, input_size, hidden_size, seed, echo=click.echo):
    """Run both checks on the class ``spec`` and print them; True if every gradient passes.

    Raises CellError, one sentence, when the class cannot be loaded or built, or when its own
    code raises while it is checked."""
    cls = load_class(spec)
    try:
        return _report(cls, spec, reduction, T, B, input_size, hidden_size, seed, echo)
    except CellError:
        raise
    except Exception as err:  # the user's forward or backward: say what it raised
        raise CellError(f"{spec} raised {type(err).__name__} while checked: {err}") from None


def _report(cls, spec, reduction, T, B, input_size, hidden_size, seed, echo):
    case, used = make_user_case(cls, reduction, T, B, input_size, hidden_size, seed)
    kind = "this project's" if not isinstance(case.cell, HomeworkCell) else "homework"
    echo(f"{spec}: {kind} convention, parameter gradients taken as batch {used}s")
    echo(f"whole sequence (T = {T}, B = {B}) against finite differences, tolerance {TOL_FD:g}:")
    errors = sequence_errors(case)
    for name, err in errors.items():
        echo(f"  {name:<12}{err:>10.2e}{'' if err <= TOL_FD else '  FAIL'}")
    failure = first_failure(case)
    if failure is None and all(err <= TOL_FD for err in errors.values()):
        echo("PASS: every gradient matches at every step")
        return True
    if failure is None:
        echo(
            "every single step is right, but the sum over steps is not: check how the time "
            "loop passes dh back and adds dout"
        )
    else:
        echo(describe(failure, T))
    return False


def describe(failure: Failure, T: int) -> str:
    """One sentence naming the gradient and the step where it first goes wrong."""
    visit = T - 1 - failure.step
    where = "the first step BPTT visits" if visit == 0 else f"step {visit + 1} in BPTT's order"
    hint = " (only after the first step: is it added with += over time?)" if visit else ""
    return (
        f"FAIL: {failure.gradient} first goes wrong at time step t = {failure.step} "
        f"({where}, t = {T - 1} … 0), relative error {failure.error:.2e}{hint}"
    )
