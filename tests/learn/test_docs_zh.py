"""The Chinese documents stay in step with the English ones: the same commands, and the same
section structure (heading levels in order, with the same `code` names in each heading).

- docs/bptt.zh.md mirrors docs/bptt.md as a whole;
- README.zh.md mirrors README.md as a whole (the two screens: parts, quick start, commands,
  examples, layout), and each stays within 200 lines;
- docs/learning.zh.md mirrors docs/learning.md, the workbench page for the course's students.
"""

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
PREFIXES = ("python -m poetry_lm", "poetry-lm", "python train.py", "python generate.py", "pip ")


def commands(markdown: str) -> list[str]:
    """Command lines of the code blocks (fenced, or indented by 4), continuations joined and
    comments dropped, in order of appearance."""
    lines, out, fenced = markdown.splitlines(), [], False
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif fenced or line.startswith("    "):
            text = line.strip().removeprefix("$ ")
            while text.endswith("\\") and i + 1 < len(lines):
                i += 1
                text = text[:-1].rstrip() + " " + lines[i].strip()
            text = re.sub(r"\s+#.*$", "", text)
            if text.startswith(PREFIXES) or " && pip " in text:
                out.append(" ".join(text.split()))
        i += 1
    return out


def structure(markdown: str) -> list[tuple[int, tuple[str, ...]]]:
    """(level, `code` names) of every heading outside code blocks, in order."""
    out, fenced = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"^(#+) (.*)$", line)):
            out.append((len(m.group(1)), tuple(re.findall(r"`([^`]+)`", m.group(2)))))
    return out


def read(name):
    return (ROOT / name).read_text(encoding="utf-8")


def test_bptt_zh_has_the_commands_and_sections_of_bptt():
    en, zh = read("docs/bptt.md"), read("docs/bptt.zh.md")
    assert commands(zh) == commands(en)
    assert structure(zh) == structure(en)
    assert len(commands(en)) >= 5 and len(structure(en)) >= 15


def test_readme_zh_has_the_commands_and_sections_of_the_readme():
    en, zh = read("README.md"), read("README.zh.md")
    assert commands(zh) == commands(en)
    assert structure(zh) == structure(en)
    assert len(commands(en)) >= 8 and len(structure(en)) >= 5
    # both fit on two screens, and the test command is in the first
    for text in (en, zh):
        assert len(text.splitlines()) <= 200
        assert "```bash\npython -m pytest\n```" in "\n".join(text.splitlines()[:40])


def test_learning_zh_has_the_commands_and_sections_of_learning():
    en, zh = read("docs/learning.md"), read("docs/learning.zh.md")
    assert commands(zh) == commands(en)
    assert structure(zh) == structure(en)
    assert len(commands(en)) >= 6 and len(structure(en)) >= 4


def test_the_extractors_see_what_they_should():
    text = (
        "# T\n\n```bash\npython -m poetry_lm a \\\n  --b 1   # why\n```\n\n"
        "    poetry-lm c\n## `X` y\n"
    )
    assert commands(text) == ["python -m poetry_lm a --b 1", "poetry-lm c"]
    assert structure(text) == [(1, ()), (2, ("X",))]
