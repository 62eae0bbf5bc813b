"""decoding-stats --rhymes: rhymes as heard per form, the test split against written poems."""

import pytest
from click.testing import CliRunner

from poetry_lm.evaluation.rhyme_rates import rhyme_rates
from poetry_lm.text.corpus import load_corpus
from poetry_lm.tools.decoding_stats import main

FORMS = ["五绝", "七绝", "五律", "七律"]


def rows(output: str) -> dict[str, list[str]]:
    """{form: its cells after the form} of the table's body rows."""
    lines = [line for line in output.splitlines() if line.startswith("| ")][1:]
    return {
        cells[0]: cells[1:]
        for cells in ([c.strip() for c in x.strip("|").split("|")] for x in lines)
    }


@pytest.fixture(scope="module")
def table():
    result = CliRunner().invoke(main, ["--rhymes", "-n", "12", "--seed", "2"])
    assert result.exit_code == 0, result.output
    return rows(result.output)


def test_a_row_per_form_with_real_and_generated_percentages(table):
    assert list(table) == FORMS
    for cells in table.values():
        rates, (real, written, _) = [float(c) for c in cells[:6]], cells[6:]
        assert all(0 <= x <= 100 for x in rates), cells
        assert int(real) > 300 and 0 < int(written) <= 12  # regulated poems counted
    assert table["七绝"][-1] == "`--form 七绝`"


def test_real_seven_character_poems_mostly_rhyme_their_first_line(table):
    """七言 poets rhyme the first line in three poems of four, 五言 poets in under one of four."""
    for form in ("七绝", "七律"):
        assert float(table[form][0]) > 60
    for form in ("五绝", "五律"):
        assert float(table[form][0]) < 25
    test = rhyme_rates(p.text for p in load_corpus()["test"])
    assert float(table["七律"][0]) == round(test["七律"].shares()["first_rhymes"], 1)


def test_the_old_rules_never_rhyme_a_first_line():
    args = ["--rhymes", "-n", "6", "--setting", "七绝", "--extra", "--no-heard --no-rhyme-first"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    (cells,) = rows(result.output).values()
    assert float(cells[1]) == 0 and cells[-1] == "`--form 七绝 --no-heard --no-rhyme-first`"


@pytest.mark.parametrize(
    "args, words",
    [
        (["--setting", "free"], "free writes no form"),
        (["--keywords", "2"], "without --file, --keywords or --rerank-with"),
    ],
)
def test_what_rhymes_cannot_measure_is_a_usage_error(args, words):
    result = CliRunner().invoke(main, ["--rhymes", "-n", "1", *args])
    assert result.exit_code == 2 and words in result.output and "Traceback" not in result.output
