"""The documentation's example outputs are what the commands print now (poetry_lm.tools.readme)."""

from pathlib import Path

import pytest

from poetry_lm.tools.readme import documents, example_blocks, parse_block, render

ROOT = Path(__file__).resolve().parents[2]


def with_examples() -> list[str]:
    """The README and the pages it links to that hold ``$`` examples, relative to the root."""
    return [
        path.relative_to(ROOT).as_posix()
        for path in documents(ROOT)
        if example_blocks(path.read_text(encoding="utf-8").split("\n"))
    ]


@pytest.mark.parametrize("name", with_examples())
def test_every_example_prints_what_it_shows(name):
    from poetry_lm.tools.readme import drift

    diff = drift(ROOT / name)
    assert not diff, (
        f"{name} has drifted from the code; rewrite it with "
        f"`python -m poetry_lm.tools.readme --update {name}` and check the result:\n{diff}"
    )


def test_the_readme_and_the_pages_it_sends_to_are_checked():
    names = [path.relative_to(ROOT).as_posix() for path in documents(ROOT)]
    assert names[0] == "README.md"
    pages = ["docs/forms.md", "docs/api.md", "docs/training.md", "docs/learning.md"]
    assert set(pages) | {"models/README.md", "docs/bptt.md", "README.zh.md"} <= set(names)
    # the pages that show examples have them run, the Chinese ones included
    checked = {"README.md", "README.zh.md", "models/README.md", "docs/forms.md"}
    assert checked | {"docs/learning.md", "docs/learning.zh.md"} <= set(with_examples())


def test_documents_are_found_by_following_links(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "models").mkdir()
    (tmp_path / "README.md").write_text(
        "[a](docs/a.md) [m](models/README.md#results) [again](docs/a.md) [web](https://x.org/y.md)"
        " [img](docs/web.png) [gone](docs/missing.md)\n",
        encoding="utf-8",
    )
    (tmp_path / "docs/a.md").write_text("[b](b.md) [up](../README.md) [out](../../x.md)\n")
    (tmp_path / "docs/b.md").write_text("no links\n")
    (tmp_path / "models/README.md").write_text("[a](../docs/a.md)\n")
    (tmp_path.parent / "x.md").write_text("outside the checkout\n")
    root = tmp_path.resolve()
    assert documents(tmp_path) == [
        root / "README.md",
        root / "docs/a.md",
        root / "models/README.md",
        root / "docs/b.md",
    ]


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
