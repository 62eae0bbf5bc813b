"""Check the numpy reference cells' BPTT against torch and against finite differences.

    python -m poetry_lm gradcheck [--seed 0] [--T 4] [--B 3] [--input-size 3] [--hidden-size 5]
    python -m poetry_lm gradcheck --cell my_module:MyCell [--reduction auto|sum|mean]

With ``--cell`` it checks a class of your own instead (poetry_lm/learn/plugin.py describes the
conventions it accepts, the homework's included) and names the gradient and the time step where
an error first appears.

Each cell runs over a random sequence in float64. The loss is a fixed random projection of
everything the sequence produces,

    L = Σ P_out ⊙ out + Σ P_h ⊙ h_T  (+ Σ P_c ⊙ c_T for the LSTM),

so the reference's BPTT starts from dout = P_out, dh_T = P_h, dc_T = P_c. Two oracles:
torch.nn.RNN/LSTM/GRU holding the same weights (outputs, final states and every gradient), and
central finite differences of L in numpy (every gradient; the only oracle for rnn-sigmoid,
which torch does not have). The error of a result a against
an oracle b is relative to b's scale:

    err(a, b) = max|a - b| / max(max|b|, tiny)

The command prints one row per quantity and exits with status 1 if any error exceeds
TOL_TORCH (vs torch) or TOL_FD (vs finite differences). The tests reuse these functions.
"""

import sys
from dataclasses import dataclass
from functools import partial

import click
import numpy as np
import torch

from poetry_lm.learn.reference import CourseGRUCell, GRUCell, LSTMCell, RNNCell
from poetry_lm.learn.reference.cells import bptt, forward_sequence
from poetry_lm.options import seed_option

TOL_TORCH = 1e-6
TOL_FD = 1e-5
TINY = np.finfo(np.float64).tiny

# kind -> (numpy reference cell, torch oracle module or None where torch has no such cell)
CELLS = {
    "rnn-tanh": (partial(RNNCell, nonlinearity="tanh"), partial(torch.nn.RNN, nonlinearity="tanh")),
    "rnn-relu": (partial(RNNCell, nonlinearity="relu"), partial(torch.nn.RNN, nonlinearity="relu")),
    "rnn-sigmoid": (partial(RNNCell, nonlinearity="sigmoid"), None),
    "lstm": (LSTMCell, torch.nn.LSTM),
    "gru": (GRUCell, torch.nn.GRU),
    "course-gru": (CourseGRUCell, None),  # the course's GRU: reset before W_h, no biases
}
ORACLE_KINDS = [kind for kind, (_, oracle) in CELLS.items() if oracle is not None]


@dataclass
class Case:
    """A cell with random weights, an input sequence, initial state(s) and the loss projections."""

    kind: str
    cell: object
    xs: np.ndarray  # (T, B, I)
    state0: tuple  # (h0,) or (h0, c0), each (B, H)
    proj: tuple  # (P_out (T, B, H), P_h (B, H)[, P_c (B, H)])

    @property
    def state_names(self):
        return ("h", "c")[: len(self.state0)]


def make_case(kind, T, B, input_size, hidden_size, seed=0):
    rng = np.random.default_rng(seed)
    cell = CELLS[kind][0](input_size, hidden_size, rng=rng)
    n_states = 2 if isinstance(cell, LSTMCell) else 1
    xs = rng.standard_normal((T, B, input_size))
    state0 = tuple(rng.standard_normal((B, hidden_size)) for _ in range(n_states))
    proj = (
        rng.standard_normal((T, B, hidden_size)),
        *(rng.standard_normal((B, hidden_size)) for _ in range(n_states)),
    )
    return Case(kind, cell, xs, state0, proj)


def projected_loss(proj, results):
    """L = Σ_k Σ proj[k] ⊙ results[k]; works for numpy arrays and for torch tensors alike."""
    return sum((p * r).sum() for p, r in zip(proj, results))


def rel_error(a, b):
    """max|a - b| / max(max|b|, tiny): the error of a measured on the scale of the oracle b."""
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), TINY))


def reference_results(case):
    """The reference's forward values and BPTT gradients, keyed like torch_results."""
    out, *final, caches = forward_sequence(case.cell, case.xs, *case.state0)
    grads, dxs, *dstate0 = bptt(case.cell, *case.proj, caches)
    values = {"output": out, **{f"{s}_T": v for s, v in zip(case.state_names, final)}}
    grads = {
        **{name: g.copy() for name, g in grads.items()},
        "input": dxs,
        **{f"{s}0": d for s, d in zip(case.state_names, dstate0)},
    }
    return values, grads


def torch_results(case):
    """The same values and gradients from torch's module holding the same weights (float64)."""
    module = CELLS[case.kind][1](case.cell.input_size, case.cell.hidden_size, dtype=torch.float64)
    params = case.cell.parameters()
    with torch.no_grad():
        for name, p in params.items():
            getattr(module, f"{name}_l0").copy_(torch.from_numpy(p))
    xs = torch.tensor(case.xs, requires_grad=True)
    state0 = [torch.tensor(s, requires_grad=True) for s in case.state0]
    layered = [s.unsqueeze(0) for s in state0]  # torch wants (layers, B, H)
    out, final = module(xs, tuple(layered) if len(layered) > 1 else layered[0])
    final = final if isinstance(final, tuple) else (final,)
    values = {"output": out, **{f"{s}_T": v[0] for s, v in zip(case.state_names, final)}}
    loss = projected_loss([torch.from_numpy(p) for p in case.proj], values.values())
    leaves = [getattr(module, f"{name}_l0") for name in params] + [xs, *state0]
    grads = torch.autograd.grad(loss, leaves)
    names = [*params, "input", *(f"{s}0" for s in case.state_names)]
    return (
        {name: v.detach().numpy() for name, v in values.items()},
        {name: g.numpy() for name, g in zip(names, grads)},
    )


def finite_difference_grads(case, eps=1e-6):
    """Central differences (L(θ + ε) - L(θ - ε)) / 2ε for every entry of every parameter, input and
    initial state, perturbing the arrays in place and restoring them."""

    def loss():
        out, *final, _ = forward_sequence(case.cell, case.xs, *case.state0)
        return projected_loss(case.proj, (out, *final))

    arrays = {
        **case.cell.parameters(),
        "input": case.xs,
        **{f"{s}0": a for s, a in zip(case.state_names, case.state0)},
    }
    return central_differences(loss, arrays, eps)


def central_differences(loss, arrays, eps=1e-6):
    """{name: (loss(a + ε e_i) − loss(a − ε e_i)) / 2ε for every entry i} for each array, which
    ``loss()`` must read; the arrays are perturbed in place and restored."""
    grads = {}
    for name, a in arrays.items():
        grads[name] = g = np.empty_like(a)
        for idx in np.ndindex(a.shape):
            original = a[idx]
            a[idx] = original + eps
            up = loss()
            a[idx] = original - eps
            down = loss()
            a[idx] = original
            g[idx] = (up - down) / (2 * eps)
    return grads


def oracle_errors(case):
    """rel_error of every reference value and gradient against torch."""
    values, grads = reference_results(case)
    t_values, t_grads = torch_results(case)
    return {
        name: rel_error(a, t)
        for name, a, t in _paired({**values, **grads}, {**t_values, **t_grads})
    }


def finite_difference_errors(case, eps=1e-6):
    """rel_error of every reference gradient against central finite differences."""
    _, grads = reference_results(case)
    return {
        name: rel_error(a, fd) for name, a, fd in _paired(grads, finite_difference_grads(case, eps))
    }


def _paired(ours, theirs):
    if ours.keys() != theirs.keys():
        raise ValueError(f"result names differ: {sorted(ours)} vs {sorted(theirs)}")
    return ((name, ours[name], theirs[name]) for name in ours)


def check(kind, T, B, input_size, hidden_size, seed=0):
    """{quantity: (error vs torch, error vs finite differences)} for one cell; None where that
    oracle does not apply (no torch cell for rnn-sigmoid or course-gru; forward values have no
    finite difference)."""
    case = make_case(kind, T, B, input_size, hidden_size, seed)
    torch_err = oracle_errors(case) if kind in ORACLE_KINDS else {}
    fd_err = finite_difference_errors(case)
    return {name: (torch_err.get(name), fd_err.get(name)) for name in {**torch_err, **fd_err}}


def within_tolerance(torch_err, fd_err):
    """True unless an error exceeds its tolerance (NaN counts as exceeding)."""
    return (torch_err is None or torch_err <= TOL_TORCH) and (fd_err is None or fd_err <= TOL_FD)


def cell_spec(ctx, param, value: str | None) -> str | None:
    """--cell's value, checked to be MODULE:CLASS: a usage error (exit status 2) if not."""
    from poetry_lm.learn.plugin import CellError, split_spec

    if value is None:
        return None
    try:
        split_spec(value)
    except CellError as err:
        raise click.BadParameter(str(err)) from None
    return value


@click.command()
@seed_option(0, "Seed of the random weights and inputs.")
@click.option(
    "--T", "T", type=click.IntRange(1), default=4, show_default=True, help="Sequence length."
)
@click.option("--B", "B", type=click.IntRange(1), default=3, show_default=True, help="Batch size.")
@click.option("--input-size", type=click.IntRange(1), default=3, show_default=True)
@click.option("--hidden-size", type=click.IntRange(1), default=5, show_default=True)
@click.option(
    "--cell",
    "cell_spec",
    metavar="MODULE:CLASS",
    callback=cell_spec,
    help="Check your own cell class instead (see poetry_lm/learn/plugin.py).",
)
@click.option(
    "--reduction",
    type=click.Choice(["auto", "sum", "mean"]),
    default="auto",
    show_default=True,
    help="With --cell: are your parameter gradients batch sums or batch means?",
)
def main(seed, T, B, input_size, hidden_size, cell_spec, reduction):
    """Compare the numpy reference cells' BPTT with torch and with finite differences."""
    torch.set_num_threads(1)
    if cell_spec:
        from poetry_lm.learn.plugin import CellError, report_user_cell

        try:
            ok = report_user_cell(cell_spec, reduction, T, B, input_size, hidden_size, seed)
        except CellError as err:
            raise click.ClickException(str(err)) from None
        sys.exit(0 if ok else 1)
    click.echo(
        f"max relative error, err(a, b) = max|a-b| / max|b|; "
        f"tolerances: torch {TOL_TORCH:g}, finite differences {TOL_FD:g}"
    )
    click.echo(f"{'cell':<13}{'quantity':<12}{'vs torch':>12}{'vs fin.diff':>14}")
    failed = []
    for kind in CELLS:
        for name, (torch_err, fd_err) in check(kind, T, B, input_size, hidden_size, seed).items():
            ok = within_tolerance(torch_err, fd_err)
            cells = [f"{e:.2e}" if e is not None else "-" for e in (torch_err, fd_err)]
            click.echo(f"{kind:<13}{name:<12}{cells[0]:>12}{cells[1]:>14}{'' if ok else '  FAIL'}")
            if not ok:
                failed.append(f"{kind} {name}")
    if failed:
        click.echo(f"FAILED: {', '.join(failed)}", err=True)
        sys.exit(1)
    click.echo("all within tolerance")


if __name__ == "__main__":
    main()
