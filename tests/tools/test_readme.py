"""The documentation's example outputs are what the commands print now (poetry_lm.tools.readme)."""

from pathlib import Path

import pytest

from poetry_lm.tools.readme import example_blocks, parse_block, render

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["README.md", "models/README.md"])
def test_every_example_prints_what_it_shows(name):
    from poetry_lm.tools.readme import drift

    diff = drift(ROOT / name)
    assert not diff, (
        f"{name} has drifted from the code; rewrite it with "
        f"`python -m poetry_lm.tools.readme --update {name}` and check the result:\n{diff}"
    )


def test_examples_are_parsed_with_their_cut_outputs():
    doc = "text\n```\n$ a --x  # note\none\ntwo\n\n$ b\nthree\n  ...\n```\n```bash\n$ not\n```\n"
    lines = doc.split("\n")
    [(first, last)] = example_blocks(lines)
    a, b = parse_block(lines[first:last])
    assert (a.command, a.shown, a.cut) == ("a --x  # note", ["one", "two"], None)
    assert (b.command, b.shown, b.cut) == ("b", ["three"], "  ...")
    # a cut example keeps as many lines as it showed, then its "..."
    assert render(b, ["new", "more", "lines"]) == ["$ b", "new", "  ..."]
    assert render(a, ["x", "y", "z"]) == ["$ a --x  # note", "x", "y", "z"]
