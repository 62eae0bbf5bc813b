"""The numpy reference cells (poetry_lm.learn.reference) against torch and finite differences.

Errors are relative to the oracle's scale, as in poetry_lm.learn.gradcheck:
    err(a, b) = max|a - b| / max(max|b|, tiny)
required ≤ 1e-6 against torch and ≤ 1e-5 against central finite differences, all in float64.
"""

import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from poetry_lm.learn import gradcheck
from poetry_lm.learn.gradcheck import (
    CELLS,
    ORACLE_KINDS,
    TOL_FD,
    TOL_TORCH,
    finite_difference_errors,
    make_case,
    oracle_errors,
    rel_error,
)
from poetry_lm.learn.reference import CourseGRUCell, GRUCell, LSTMCell

torch.set_num_threads(1)

_rng = np.random.default_rng(7)
# (T, B, input_size, hidden_size): T = 1 with B = 1, input wider and narrower than hidden, 2 random
SHAPES = [(1, 1, 4, 3), (5, 2, 2, 6)] + [
    tuple(int(n) for n in _rng.integers(1, 7, 4)) for _ in range(2)
]
PARAMS = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]


def expected_names(kind, with_values):
    states = ["h", "c"] if kind == "lstm" else ["h"]
    values = ["output", *(f"{s}_T" for s in states)] if with_values else []
    params = CourseGRUCell.PARAMS if kind == "course-gru" else PARAMS
    return {*values, *params, "input", *(f"{s}0" for s in states)}


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
        "import sys, poetry_lm.learn.reference; assert 'torch' not in sys.modules, 'torch imported'"
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


def test_course_gru_da_z_has_the_opposite_sign_to_torchs_formula():
    """The course's z weighs the candidate: ∂h'/∂z = n − h. Its dW_zh and dW_zx (checked by
    finite differences) are exactly the negatives of what torch's (h − n) would give."""
    case = make_case("course-gru", T=1, B=2, input_size=3, hidden_size=4, seed=5)
    assert max(finite_difference_errors(case).values()) <= TOL_FD
    cell, x, h = case.cell, case.xs[0], case.state0[0]
    *_, cache = cell.forward(x, h)
    dh = case.proj[0][0] + case.proj[1]
    cell.zero_grad()
    cell.backward(dh, cache)
    _, _, z, _, _, n = cache
    da_z_torch_sign = dh * (h - n) * z * (1 - z)
    np.testing.assert_allclose(da_z_torch_sign.T @ h, -cell.grads["W_zh"], rtol=1e-12)
    np.testing.assert_allclose(da_z_torch_sign.T @ x, -cell.grads["W_zx"], rtol=1e-12)


def test_two_stacked_layers_match_torch_two_layer_lstm():
    """The recipe of docs/bptt.md § Two layers: the upper layer's dx is the lower layer's dout."""
    rng = np.random.default_rng(3)
    T, B, I, H = 4, 2, 3, 5
    lower, upper = LSTMCell(I, H, rng=1), LSTMCell(H, H, rng=2)
    xs = rng.standard_normal((T, B, I))
    zeros = np.zeros((B, H))
    out1, h1, c1, caches1 = lower.forward_sequence(xs, zeros, zeros)
    out2, h2, c2, caches2 = upper.forward_sequence(out1, zeros, zeros)
    dout = rng.standard_normal((T, B, H))  # L = Σ dout ⊙ out2
    grads2, dx2, *_ = upper.bptt(dout, zeros, zeros, caches2)
    grads2 = {k: g.copy() for k, g in grads2.items()}
    grads1, dxs, *_ = lower.bptt(dx2, zeros, zeros, caches1)

    lstm = torch.nn.LSTM(I, H, num_layers=2, dtype=torch.float64)
    with torch.no_grad():
        for layer, cell in enumerate((lower, upper)):
            for name, p in cell.parameters().items():
                getattr(lstm, f"{name}_l{layer}").copy_(torch.from_numpy(p))
    t_xs = torch.tensor(xs, requires_grad=True)
    t_out, _ = lstm(t_xs)
    (t_out * torch.from_numpy(dout)).sum().backward()
    assert rel_error(out2, t_out.detach().numpy()) < TOL_TORCH
    assert rel_error(dxs, t_xs.grad.numpy()) < TOL_TORCH
    for layer, grads in enumerate((grads1, grads2)):
        for name, g in grads.items():
            assert rel_error(g, getattr(lstm, f"{name}_l{layer}").grad.numpy()) < TOL_TORCH, name
