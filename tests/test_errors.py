"""poetry_lm.errors: the project's own errors are the user's (one sentence, exit status 1); any
other exception, numpy's or torch's ValueError included, is a bug and keeps its traceback."""

import click
import numpy as np
import pytest

from poetry_lm.errors import run_or_exit
from poetry_lm.model.checkpoint import CheckpointError
from poetry_lm.settings import SettingError
from poetry_lm.text.corpus import CorpusError


@pytest.mark.parametrize(
    "error",
    [
        CorpusError("poems.txt holds no poem"),
        CheckpointError("x.pt is not a poetry_lm checkpoint"),
        SettingError("{top_k} must be ≥ 0"),
        FileNotFoundError("no such file: poems.txt"),
    ],
)
def test_the_projects_errors_are_one_sentence_and_exit_status_1(error):
    def fails():
        raise error

    with pytest.raises(click.ClickException) as caught:
        run_or_exit(fails)
    assert caught.value.message == str(error)
    assert caught.value.exit_code == 1


def test_numpys_value_error_is_a_bug_and_passes_through():
    with pytest.raises(ValueError, match="could not be broadcast"):
        run_or_exit(np.add, np.zeros(2), np.zeros(3))
