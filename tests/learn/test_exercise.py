"""exercise init / grade: the TODO files fail, the reference solution passes, and planted bugs
are caught at the right gradient, with a hint into the right section of docs/bptt.md."""

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from poetry_lm.cli import main
from poetry_lm.learn.exercise import EXERCISES, anchor

BPTT_MD = Path(__file__).parents[2] / "docs" / "bptt.md"


def grade(folder, *extra):
    return CliRunner().invoke(main, ["exercise", "grade", str(folder), *extra])


@pytest.fixture
def solution(tmp_path):
    result = CliRunner().invoke(main, ["exercise", "init", "--solution", str(tmp_path)])
    assert result.exit_code == 0, result.output
    return tmp_path


def test_fresh_exercises_are_todos_and_fail(tmp_path):
    result = CliRunner().invoke(main, ["exercise", "init", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{s}.py" for s in EXERCISES)
    assert "raise NotImplementedError" in (tmp_path / "gru_cell.py").read_text()
    result = grade(tmp_path)
    assert result.exit_code == 1
    assert result.output.count("not written yet") == 3 and "0 of 3 pass" in result.output


def test_init_never_overwrites(solution):
    result = CliRunner().invoke(main, ["exercise", "init", str(solution)])
    assert result.exit_code == 1 and "exists already" in result.output


def test_the_reference_solution_passes(solution):
    result = grade(solution)
    assert result.exit_code == 0, result.output
    assert "3 of 3 pass" in result.output and "wrong" not in result.output


@pytest.mark.parametrize(
    "stem, bug, fix, gradient, section",
    [
        # the GRU's direct path dh' ⊙ z to the previous state dropped
        ("gru_cell", "dh_prev + dh * z", "dh_prev", "dh", "GRU (`GRUCell`)"),
        # the LSTM's additive cell path dc' ⊙ f dropped
        ("lstm_cell", "dh_prev, dc * f", "dh_prev, dc", "dc", "LSTM (`LSTMCell`)"),
        # the RNN's φ'(a) forgotten
        ("rnn_cell", "da = dh * self._dphi(h_new)", "da = dh", "weight_ih", None),
    ],
)
def test_a_planted_bug_is_named_at_its_gradient(solution, stem, bug, fix, gradient, section):
    path = solution / f"{stem}.py"
    text = path.read_text()
    assert bug in text
    path.write_text(text.replace(bug, fix))
    result = grade(solution, "--only", stem)
    assert result.exit_code == 1
    assert f"FAIL: {gradient} first goes wrong at time step t = 3" in result.output
    hint = next(line for line in result.output.splitlines() if "hint:" in line)
    if section:
        assert anchor(section) in hint


def test_every_hint_points_to_a_heading_that_exists():
    from poetry_lm.learn.exercise import BPTT, HINTS

    headings = re.findall(r"^#+ (.+)$", BPTT_MD.read_text(encoding="utf-8"), re.M)
    anchors = {anchor(h) for h in headings}
    wanted = {s for _, s in EXERCISES.values()} | {s for s, _ in HINTS.values()} | {BPTT}
    assert {anchor(s) for s in wanted} <= anchors


def test_a_missing_folder_is_one_sentence(tmp_path):
    result = grade(tmp_path / "none")
    assert result.exit_code == 1 and "exercise init" in result.output
    assert "Traceback" not in result.output
