"""exercise init / grade: the skeleton copy of cells.py holds no answer and fails until filled,
the reference solution passes, the RNN is graded with relu as well as tanh, and planted bugs are
caught at the right gradient, with the slip named where it is a known one."""

import ast
import inspect
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from poetry_lm.cli import main
from poetry_lm.learn.exercise import EXERCISES, SLIPS, anchor
from poetry_lm.learn.reference import cells

BPTT_MD = Path(__file__).parents[2] / "docs" / "bptt.md"


def grade(folder, *extra):
    return CliRunner().invoke(main, ["exercise", "grade", str(folder), *extra])


def init(folder, *extra):
    result = CliRunner().invoke(main, ["exercise", "init", *extra, str(folder)])
    assert result.exit_code == 0, result.output
    return folder / "cells.py"


@pytest.fixture
def solution(tmp_path):
    init(tmp_path, "--solution")
    return tmp_path


def answers():
    """{class name: the reference's backward lines after the cache unpacking}."""
    source = inspect.getsource(cells)
    lines = source.splitlines()
    out = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef) and node.name in ("RNNCell", "LSTMCell", "GRUCell"):
            backward = next(f for f in node.body if getattr(f, "name", "") == "backward")
            first, last = backward.body[2].lineno - 1, backward.body[-1].end_lineno
            out[node.name] = lines[first:last]
    return out


def plant(folder, right, wrong):
    path = folder / "cells.py"
    text = path.read_text()
    assert text.count(right) >= 1
    path.write_text(text.replace(right, wrong))


def test_the_copy_has_no_answer_and_fails_until_filled(tmp_path):
    path = init(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["cells.py"]
    text = path.read_text()
    copy_lines = {line.strip() for line in text.splitlines()}
    for name, body in answers().items():
        computed = [line.strip() for line in body if re.search(r"\w", line)]  # not ')'
        assert len(computed) >= 2 and not set(computed) & copy_lines, name
        assert f'raise NotImplementedError("{name}.backward is not written yet")' in text
    assert "# dc' ← dc' + dh' ⊙ o ⊙ (1 - tanh²(c'))      (all of dL/dc')" in text  # equations
    assert "def forward(self, x, h, c):" in text and "h_new = self._phi(gi + gh)" in text
    result = grade(tmp_path)
    assert result.exit_code == 1
    assert result.output.count("not written yet") == 4 and "0 of 4 pass" in result.output
    # the RNN filled in (with the reference's lines) passes, the others still do not
    todo = '        raise NotImplementedError("RNNCell.backward is not written yet")'
    path.write_text(text.replace(todo, "\n".join(answers()["RNNCell"])))
    assert grade(tmp_path, "--only", "rnn").exit_code == 0
    assert grade(tmp_path, "--only", "gru").exit_code == 1


def test_init_never_overwrites(solution):
    result = CliRunner().invoke(main, ["exercise", "init", str(solution)])
    assert result.exit_code == 1 and "exists already" in result.output


def test_the_reference_solution_passes(solution):
    result = grade(solution)
    assert result.exit_code == 0, result.output
    assert "4 of 4 pass" in result.output and "wrong" not in result.output


def test_a_backward_that_hard_codes_dtanh_fails_on_relu(solution):
    plant(solution, "da = dh * self._dphi(h_new)", "da = dh * dtanh(h_new)")
    result = grade(solution, "--only", "rnn")
    assert result.exit_code == 1
    assert "RNNCell (tanh): PASS" in result.output and "RNNCell (relu): FAIL" in result.output
    assert "likely slip: tanh' hard-coded where φ' belongs" in result.output


def test_a_missing_cell_state_term_gets_its_own_hint(solution):
    plant(solution, "        dc = dc + dh * o * dtanh(tanh_c)\n", "")  # the line left out
    result = grade(solution, "--only", "lstm")
    assert result.exit_code == 1
    hint = next(line for line in result.output.splitlines() if "hint:" in line)
    assert "likely slip: the cell-state term through h' left out" in hint
    assert "affine" not in hint and anchor("LSTM (`LSTMCell`)") in hint


@pytest.mark.parametrize(
    "stem, words, right, wrong",
    [(stem, *slip) for stem, slips in SLIPS.items() for slip in slips],
)
def test_every_known_slip_is_named(solution, stem, words, right, wrong):
    plant(solution, right, wrong)
    result = grade(solution, "--only", stem)
    assert result.exit_code == 1
    assert f"likely slip: {words}" in result.output


@pytest.mark.parametrize(
    "stem, bug, fix, gradient",
    [
        # the GRU's direct path dh' ⊙ z dropped
        ("gru", "dh_prev + dh * z", "dh_prev", "dh"),
        # the LSTM's additive cell path dc' ⊙ f dropped
        ("lstm", "dh_prev, dc * f", "dh_prev, dc", "dc"),
        # not a known slip: the GRU's reset gradient without gh_n; the gradient's hint instead
        ("gru", "da_r = da_n * gh_n * dsigmoid(r)", "da_r = da_n * dsigmoid(r)", "weight_ih"),
    ],
)
def test_a_planted_bug_is_named_at_its_gradient(solution, stem, bug, fix, gradient):
    plant(solution, bug, fix)
    result = grade(solution, "--only", stem)
    assert result.exit_code == 1
    assert f"FAIL: {gradient} first goes wrong at time step t = 3" in result.output
    if gradient == "weight_ih":
        assert "hint: dW_ih += dgiᵀ x" in result.output and "likely slip" not in result.output


def test_every_hint_points_to_a_heading_that_exists():
    from poetry_lm.learn.exercise import BPTT, HINTS

    headings = re.findall(r"^#+ (.+)$", BPTT_MD.read_text(encoding="utf-8"), re.M)
    anchors = {anchor(h) for h in headings}
    wanted = {s for *_, s in EXERCISES.values()} | {s for s, _ in HINTS.values()} | {BPTT}
    assert {anchor(s) for s in wanted} <= anchors


def test_a_missing_folder_is_one_sentence(tmp_path):
    result = grade(tmp_path / "none")
    assert result.exit_code == 1 and "exercise init" in result.output
    assert "Traceback" not in result.output
