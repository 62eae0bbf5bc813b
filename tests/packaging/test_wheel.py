"""The wheel works when installed: ``pip install`` (not editable) into a fresh virtual
environment, then ``poetry-lm generate 月`` from another folder writes the checkout's poem.

The environment reuses this one's installed dependencies (torch is ~1 GB; nothing may be
downloaded): a ``.pth`` file adds this environment's site-packages after its own, and only
the wheel itself is installed, with ``--no-deps``. Marked ``wheel``; about 20–40 s.
"""

import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from click.testing import CliRunner

from poetry_lm.cli.write import generate_command
from poetry_lm.paths import ENV_VAR, RULE

ROOT = Path(__file__).resolve().parents[2]
# what the wheel is built from; the rest of a checkout (runs, caches) stays behind
SOURCES = ["setup.cfg", "pyproject.toml", "README.md", "poetry_lm", "models", "corpus"]

pytestmark = [
    pytest.mark.wheel,
    pytest.mark.skipif(not (ROOT / "setup.cfg").is_file(), reason="needs the source checkout"),
]


def run(args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kwargs)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The bin folder of a fresh virtual environment with the wheel installed."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / name)
    dist = tmp / "dist"
    built = run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + ["--no-index", "-w", str(dist), str(src)]
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob("poetry_lm-*.whl")

    venv = tmp / "venv"
    made = run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    venv_site = run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
    # this environment's packages (pip and torch among them) after the new one's own
    ours = [sysconfig.get_path("purelib"), *site.getsitepackages()]
    Path(venv_site.stdout.strip(), "borrowed.pth").write_text("\n".join(dict.fromkeys(ours)))
    pip = run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)])
    assert pip.returncode == 0, pip.stderr
    return venv / "bin"


def clean_env() -> dict:
    """The environment without the lookup variable or this checkout on the path."""
    return {k: v for k, v in os.environ.items() if k not in (ENV_VAR, "PYTHONPATH")}


def test_the_installed_command_writes_the_checkouts_poem(installed, tmp_path):
    where = run(
        [installed / "python", "-c", "import poetry_lm; print(poetry_lm.__file__)"],
        cwd=tmp_path,
        env=clean_env(),
    )
    # the wheel's copy, not this checkout (nor the editable install)
    assert where.stdout.startswith(str(installed.parent)), where.stdout + where.stderr
    poem = run(
        [installed / "poetry-lm", "generate", "月", "--seed", "1"], cwd=tmp_path, env=clean_env()
    )
    assert poem.returncode == 0, poem.stderr
    checkout = CliRunner().invoke(generate_command, ["月", "--seed", "1"])
    assert checkout.exit_code == 0 and poem.stdout == checkout.output
    verses = poem.stdout.splitlines()
    assert poem.stdout.startswith("月") and len(verses) >= 2 and len(verses) % 2 == 0
    assert all(verse[-1] in "，。？！；" for verse in verses)  # whole couplets


def test_missing_data_is_one_sentence_naming_the_lookup_rule(installed, tmp_path):
    """Without the installed model, the error says where the default is looked for."""
    shared = installed.parent / "share" / "poetry_lm"
    model = shared / "models" / "poetry_lm.pt"
    model.rename(shared / "moved.pt")
    try:
        result = run([installed / "poetry-lm", "generate", "月"], cwd=tmp_path, env=clean_env())
    finally:
        (shared / "moved.pt").rename(model)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    # paths.RULE as the installed package states it
    rule = RULE.replace(str(Path(sys.prefix) / "share" / "poetry_lm"), str(shared))
    assert result.stderr.count("\n") == 1 and f"looked up in {rule})" in result.stderr
