"""Which package may import which: the contracts of pyproject.toml (``lint-imports``, run by CI
too), and no import cycle between the packages of poetry_lm."""

from pathlib import Path

import grimp
import importlinter.api  # noqa: F401  (importing it sets up import-linter's output)
from importlinter.application.use_cases import lint_imports

ROOT = Path(__file__).parents[1]


def package_imports(graph: grimp.ImportGraph) -> dict[str, set[str]]:
    """poetry_lm's packages (and top-level modules) → those each imports directly."""
    packages = sorted(graph.find_children("poetry_lm"))

    def imports(a: str, b: str) -> bool:
        return a != b and graph.direct_import_exists(importer=a, imported=b, as_packages=True)

    return {a: {b for b in packages if imports(a, b)} for a in packages}


def reachable(imports: dict[str, set[str]], start: str) -> set[str]:
    """The packages ``start`` imports, directly or through others."""
    seen, todo = set(), [start]
    while todo:
        for b in imports[todo.pop()] - seen:
            seen.add(b)
            todo.append(b)
    return seen


def cycles(imports: dict[str, set[str]]) -> list[list[str]]:
    """The groups of packages that import each other, each group sorted."""
    reach = {a: reachable(imports, a) for a in imports}
    groups = {tuple(sorted({a} | {b for b in reach[a] if a in reach[b]})) for a in imports}
    return sorted(list(g) for g in groups if len(g) > 1)


def test_the_cycle_finder_finds_a_cycle_through_three_packages():
    imports = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(imports) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_package_imports_one_that_imports_it_back():
    graph = grimp.build_graph("poetry_lm", cache_dir=None)
    found = cycles(package_imports(graph))
    assert found == [], f"packages that import each other: {found}"


def test_the_import_contracts_are_kept(capsys):
    config = str(ROOT / "pyproject.toml")
    kept = lint_imports(config_filename=config, cache_dir=None, is_debug_mode=True)
    assert kept, capsys.readouterr().out
