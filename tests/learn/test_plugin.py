"""gradcheck --cell: a user's class in the homework's conventions (tests/learn/homework_cells.py),
batch means and batch sums, and the time step and gradient named where a bug first shows."""

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from poetry_lm.learn import gradcheck
from poetry_lm.learn.plugin import first_failure, load_class, make_user_case, sequence_errors

HERE = Path(__file__).parent


@pytest.fixture(autouse=True)
def importable(monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))


def run(*args):
    return CliRunner().invoke(gradcheck.main, list(args))


@pytest.mark.parametrize(
    "name, reduction",
    [("MeanRNNCell", "mean"), ("SumRNNCell", "sum"), ("CourseGRU", "sum")],
)
def test_homework_cells_pass_and_the_batch_reduction_is_detected(name, reduction):
    result = run("--cell", f"homework_cells:{name}")
    assert result.exit_code == 0, result.output
    assert f"batch {reduction}s" in result.output
    assert "PASS" in result.output and "FAIL" not in result.output
    case, used = make_user_case(load_class(f"homework_cells:{name}"))
    assert used == reduction
    expected = (
        {"dWzh", "dWzx", "dWrh", "dWrx", "dWh", "dWx"}
        if name == "CourseGRU"
        else {"dW_ih", "dW_hh", "db_ih", "db_hh"}
    )
    assert set(sequence_errors(case)) == expected | {"input", "h0"}


def test_the_wrong_reduction_fails_on_the_parameters_only():
    result = run("--cell", "homework_cells:MeanRNNCell", "--reduction", "sum")
    assert result.exit_code == 1
    failed = {line.split()[0] for line in result.output.splitlines() if line.endswith("FAIL")}
    assert failed == {"dW_ih", "dW_hh", "db_ih", "db_hh"}


def test_a_missing_gradient_is_named_with_the_first_time_step():
    case, _ = make_user_case(load_class("homework_cells:ForgetsBiasCell"), "sum", T=5)
    failure = first_failure(case)
    assert (failure.gradient, failure.step) == ("db_hh", 4)  # BPTT visits t = 4 first


def test_a_state_path_bug_is_not_blamed_on_the_batch_reduction():
    """The scaling is judged on one step, so a wrong dc to the step before is named as dc (the
    cell's batch means found), not as every dW off by a factor of B."""
    result = run("--cell", "homework_cells:MeanLSTMForgetsCellPath")
    assert result.exit_code == 1
    assert "batch means" in result.output
    assert "FAIL: dc first goes wrong" in result.output


def test_assigning_instead_of_adding_fails_at_the_second_step_bptt_visits():
    case, _ = make_user_case(load_class("homework_cells:AssignsCell"), "sum", T=4)
    failure = first_failure(case)
    assert (failure.gradient, failure.step) == ("dW_hh", 2)
    result = run("--cell", "homework_cells:AssignsCell", "--T", "4", "--reduction", "sum")
    assert result.exit_code == 1
    assert "dW_hh first goes wrong at time step t = 2" in result.output
    assert "+=" in result.output


@pytest.mark.parametrize(
    "spec, message",
    [
        ("no_such_module_xyz:Cell", "cannot import"),
        ("homework_cells:Nope", "has no class"),
        ("homework_cells:BrokenCell", "raised NotImplementedError while checked: TODO"),
    ],
)
def test_a_bad_spec_is_one_sentence_and_exit_1(spec, message):
    result = run("--cell", spec)
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("spec", ["my_rnn", "my_rnn:", ":MyCell", ""])
def test_a_spec_that_is_not_module_colon_class_is_a_usage_error(spec):
    result = run("--cell", spec)
    assert result.exit_code == 2, result.output
    message = result.output.strip().splitlines()[-1]
    assert message == f"Error: Invalid value for '--cell': '{spec}' is not MODULE:CLASS or " + (
        "FILE.py:CLASS (for example my_cells:MyRNNCell)"
    )


SCRATCH_CELL = '''
import numpy as np


class ScratchRNN:
    """An RNN cell in this project's convention, written from scratch: no _Cell, no
    forward_sequence or bptt of its own, no zero_grad."""

    def __init__(self, input_size, hidden_size):
        self.W = np.random.randn(hidden_size, input_size) * 0.5
        self.U = np.random.randn(hidden_size, hidden_size) * 0.5
        self.b = np.random.randn(hidden_size) * 0.5
        self.grads = {name: np.zeros_like(p) for name, p in self.parameters().items()}

    def parameters(self):
        return {"W": self.W, "U": self.U, "b": self.b}

    def forward(self, x, h):
        h_new = np.tanh(x @ self.W.T + h @ self.U.T + self.b)
        return h_new, (x, h, h_new)

    def backward(self, dh, cache):
        x, h, h_new = cache
        da = dh * (1 - h_new**2)
        self.grads["W"] += da.T @ x
        self.grads["U"] += da.T @ h
        self.grads["b"] += da.sum(axis=0)
        return da @ self.W, da @ self.U
'''


def test_a_cell_in_the_project_convention_without_cell_base_is_checked(tmp_path, monkeypatch):
    """forward_sequence and bptt are the module's, so a class need not subclass _Cell."""
    (tmp_path / "scratch_cells.py").write_text(SCRATCH_CELL, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = run("--cell", "scratch_cells:ScratchRNN")
    assert result.exit_code == 0, result.output
    assert "this project's convention" in result.output and "PASS" in result.output
    for name in ("W", "U", "b", "input", "h0"):
        assert re.search(rf"^  {name} +\d\.\d\de-\d\d$", result.output, re.M), name
    buggy = SCRATCH_CELL.replace('self.grads["U"] += da.T @ h', 'self.grads["U"] += 0.5 * da.T @ h')
    (tmp_path / "scratch_buggy.py").write_text(buggy, encoding="utf-8")
    result = run("--cell", "scratch_buggy:ScratchRNN")
    assert result.exit_code == 1 and "FAIL: U first goes wrong at time step t = 3" in result.output


def test_a_cell_is_loaded_from_a_file_path(tmp_path):
    """FILE.py:Class, the natural thing to type, works from any directory."""
    path = tmp_path / "cells" / "scratch_file_cell.py"
    path.parent.mkdir()
    path.write_text(SCRATCH_CELL, encoding="utf-8")
    result = run("--cell", f"{path}:ScratchRNN")
    assert result.exit_code == 0 and "PASS" in result.output, result.output
    missing = run("--cell", f"{tmp_path}/none.py:ScratchRNN")
    assert (
        missing.exit_code != 0 and "no file" in missing.output and "Traceback" not in missing.output
    )
