"""Start-up time of the commands: ``python -m poetry_lm.tools.startup [TREE ...]``.

Each command (``generate.py 月``, ``poetry-lm --help``, ``check`` of a poem, and ``import torch``
as the floor) is run as a fresh process from each source tree given (a checkout or a ``git
archive`` of another commit: "before" and "after"), the trees taken in turn within each round so
that a machine whose load changes slows them alike. It prints the CPU model beside a markdown
table of the median and fastest wall times and each tree's ratio to the first; on a shared,
loaded machine read the ratios, not the seconds (docs/performance.md).
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[2]

# what is timed: a name, and the arguments after the interpreter (run in the tree's root)
COMMANDS = [
    ("import torch", ["-c", "import torch"]),
    ("poetry-lm --help", ["-m", "poetry_lm", "--help"]),
    (
        "poetry-lm check 登鹳雀楼",
        ["-m", "poetry_lm", "check", "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"],
    ),
    ("generate.py 月 --seed 1", ["generate.py", "月", "--seed", "1"]),
]


def cpu_model() -> str:
    """The processor's name as /proc/cpuinfo gives it (else platform's), and the core count."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores"


def run_once(tree: Path, args: list[str]) -> float:
    """Wall seconds of one fresh process running ``args`` with ``tree``'s poetry_lm."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, *args], cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL
    )
    return time.perf_counter() - start


def measure(trees: list[Path], repeat: int) -> dict[tuple[str, Path], list[float]]:
    """Every command from every tree, ``repeat`` rounds, trees and commands interleaved."""
    times: dict[tuple[str, Path], list[float]] = {}
    for _ in range(repeat):
        for name, args in COMMANDS:
            for tree in trees:
                times.setdefault((name, tree), []).append(run_once(tree, args))
    return times


def table(trees: list[Path], times: dict[tuple[str, Path], list[float]]) -> list[str]:
    """The markdown rows: command, tree, median, fastest, median over the first tree's."""
    rows = ["| command | tree | median s | fastest s | ratio to the first tree |", "|---" * 5 + "|"]
    for name, _ in COMMANDS:
        first = statistics.median(times[name, trees[0]])
        for tree in trees:
            median = statistics.median(times[name, tree])
            rows.append(
                f"| {name} | {tree} | {median:.2f} | {min(times[name, tree]):.2f} "
                f"| {median / first:.2f} |"
            )
    return rows


@click.command("startup")
@click.argument("trees", nargs=-1, type=click.Path(file_okay=False, exists=True))
@click.option("--repeat", type=click.IntRange(1, 50), default=5, show_default=True)
def main(trees, repeat):
    """Start-up time of generate, --help and torch's import from each source tree (default:
    this one), interleaved; the CPU model and the machine's load beside the table."""
    chosen = [Path(t).resolve() for t in trees] or [ROOT]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    times = measure(chosen, repeat)
    print(f"{cpu_model()}; load average {load:.2f} at the start; {repeat} rounds\n")
    print("\n".join(table(chosen, times)))


if __name__ == "__main__":
    main()
