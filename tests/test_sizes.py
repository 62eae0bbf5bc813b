"""Small parts: no function over 60 lines and no class over 300 in the package, outside the
numpy reference cells a student compares against the course (learn/reference)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "poetry_lm"
EXEMPT = PACKAGE / "learn" / "reference"
MAX_FUNCTION, MAX_CLASS = 60, 300


def sizes():
    for path in sorted(PACKAGE.rglob("*.py")):
        if EXEMPT in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                lines = node.end_lineno - node.lineno + 1
                yield f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}", node, lines


def test_no_function_over_60_lines_and_no_class_over_300():
    too_long = [
        f"{where} ({lines} lines)"
        for where, node, lines in sizes()
        if lines > (MAX_CLASS if isinstance(node, ast.ClassDef) else MAX_FUNCTION)
    ]
    assert not too_long, too_long
