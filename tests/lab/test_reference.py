"""The numpy reference cells (poetry_lm.lab.reference) against torch and finite differences.

Errors are relative to the oracle's scale, as in poetry_lm.lab.gradcheck:
    err(a, b) = max|a - b| / max(max|b|, tiny)
required ≤ 1e-6 against torch and ≤ 1e-5 against central finite differences, all in float64.
"""

import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from poetry_lm.lab import gradcheck
from poetry_lm.lab.gradcheck import (
    CELLS,
    ORACLE_KINDS,
    TOL_FD,
    TOL_TORCH,
    finite_difference_errors,
    make_case,
    oracle_errors,
    rel_error,
)
from poetry_lm.lab.reference import GRUCell, LSTMCell

torch.set_num_threads(1)

_rng = np.random.default_rng(7)
# (T, B, input_size, hidden_size): T = 1 with B = 1, input wider and narrower than hidden,
# two random
SHAPES = [(1, 1, 4, 3), (5, 2, 2, 6)] + [
    tuple(int(n) for n in _rng.integers(1, 7, 4)) for _ in range(2)
]
PARAMS = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]


def expected_names(kind, with_values):
    states = ["h", "c"] if kind == "lstm" else ["h"]
    values = ["output", *(f"{s}_T" for s in states)] if with_values else []
    return {*values, *PARAMS, "input", *(f"{s}0" for s in states)}


def break_gru_backward(monkeypatch):
    """Make GRUCell.backward drop its direct path dh' ⊙ z to the previous state."""
    original = GRUCell.backward

    def broken(self, dh, cache):
        dx, dh_prev = original(self, dh, cache)
        z = cache[3]
        return dx, dh_prev - dh * z

    monkeypatch.setattr(GRUCell, "backward", broken)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}-B{}-I{}-H{}".format(*s))
@pytest.mark.parametrize("kind", ORACLE_KINDS)
def test_values_and_gradients_match_torch(kind, shape):
    errors = oracle_errors(make_case(kind, *shape, seed=sum(shape)))
    assert set(errors) == expected_names(kind, with_values=True)
    assert {k: e for k, e in errors.items() if not e <= TOL_TORCH} == {}


@pytest.mark.parametrize("kind", list(CELLS))
def test_gradients_match_finite_differences(kind):
    errors = finite_difference_errors(
        make_case(kind, T=3, B=2, input_size=3, hidden_size=4, seed=1)
    )
    assert set(errors) == expected_names(kind, with_values=False)
    assert {k: e for k, e in errors.items() if not e <= TOL_FD} == {}


def test_rel_error_is_relative_to_the_oracle_scale():
    assert rel_error([1.0, 2.5], [1.0, 2.0]) == pytest.approx(0.25)
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
    assert rel_error([1e-3], [0.0]) > 1e100


def test_both_oracles_catch_a_wrong_gradient(monkeypatch):
    break_gru_backward(monkeypatch)
    case = make_case("gru", T=3, B=2, input_size=3, hidden_size=4, seed=2)
    errors = oracle_errors(case)
    assert errors["h0"] > 1e-2 and errors["weight_hh"] > 1e-2
    assert finite_difference_errors(case)["h0"] > 1e-2


def test_backward_accumulates_and_bptt_resets():
    cell = LSTMCell(3, 4, rng=0)
    rng = np.random.default_rng(0)
    x, h, c, dh, dc = (rng.standard_normal((2, n)) for n in (3, 4, 4, 4, 4))
    *_, cache = cell.forward(x, h, c)
    cell.backward(dh, dc, cache)
    once = {k: g.copy() for k, g in cell.grads.items()}
    cell.backward(dh, dc, cache)
    for k in once:
        np.testing.assert_allclose(cell.grads[k], 2 * once[k])

    xs = rng.standard_normal((3, 2, 3))
    out, h_T, c_T, caches = cell.forward_sequence(xs, h, c)
    first = {k: g.copy() for k, g in cell.bptt(np.ones_like(out), dh, dc, caches)[0].items()}
    second = cell.bptt(np.ones_like(out), dh, dc, caches)[0]
    for k in first:
        np.testing.assert_array_equal(second[k], first[k])


def test_reference_package_does_not_import_torch():
    code = (
        "import sys, poetry_lm.lab.reference; assert 'torch' not in sys.modules, 'torch imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_gradcheck_command_passes_and_names_every_cell():
    result = CliRunner().invoke(gradcheck.main, ["--seed", "3"])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines()]
    assert {row[0] for row in rows if len(row) == 4} >= set(CELLS)
    assert "FAIL" not in result.output and "all within tolerance" in result.output


def test_gradcheck_command_exits_1_on_a_wrong_gradient(monkeypatch):
    break_gru_backward(monkeypatch)
    result = CliRunner().invoke(gradcheck.main, ["--seed", "3"])
    assert result.exit_code == 1
    assert {line.split()[0] for line in result.output.splitlines() if line.endswith("FAIL")} == {
        "gru"
    }
