"""One entry point: every command is in the group, and the README's layout shows every module."""

import re
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from poetry_lm.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[2]


def test_help_lists_every_command_with_its_summary():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    listed = result.output.split("Commands:\n", 1)[1]
    names = [line.split()[0] for line in listed.splitlines() if line.strip()]
    assert names == list(COMMANDS)
    # every command has a one-line summary beside its name
    assert all(len(line.split()) > 1 for line in listed.splitlines() if line.strip())


def test_every_command_runs_its_help():
    for name in COMMANDS:
        result = CliRunner().invoke(main, [name, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, name
        assert "None" not in result.output, name  # an unset bound or default shown as None


def test_the_readme_layout_names_every_module():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme.split("## Layout", 1)[1]
    named = set(re.findall(r"`([\w/.]+)`", layout))
    package = ROOT / "poetry_lm"
    modules = [
        p.relative_to(package).as_posix()
        for p in sorted(package.rglob("*"))
        if p.suffix in (".py", ".txt") and p.name not in ("__init__.py", "__main__.py")
    ]
    # a row may name a module by its path in the package, or, after the first, by its name
    missing = [m for m in modules if m not in named and f"poetry_lm/{m}" not in named]
    missing = [m for m in missing if Path(m).name not in named]
    assert not missing, f"README layout leaves out {missing}"


def test_the_listing_gives_each_commands_own_first_sentence():
    from poetry_lm.cli import SHORT_HELP

    assert list(SHORT_HELP) == list(COMMANDS)
    for name in COMMANDS:
        command = main.get_command(None, name)
        assert " ".join(command.help.split()).startswith(SHORT_HELP[name]), name


def run_python(script: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """``script`` in a fresh interpreter (what it imports is its own), which must succeed."""
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, out.stderr
    return out


def test_the_groups_help_imports_no_command_and_no_torch():
    # the listing is read from SHORT_HELP: importing the commands cost 2 s of torch's import
    script = (
        "import sys\n"
        "from poetry_lm.cli import main\n"
        "main(['--help'], standalone_mode=False)\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('poetry_lm.cli.')))"
    )
    out = run_python(script)
    assert out.stdout.splitlines()[-1] == "[]", out.stdout


def test_check_reads_no_model_and_imports_no_torch():
    # poetry_lm.errors imported torch for CheckpointError's sake: check took 3 s, now 0.2 s
    script = (
        "import sys\n"
        "from poetry_lm.cli import main\n"
        "poem = '白日依山尽，黄河入海流。欲穷千里目，更上一层楼。'\n"
        "main(['check', poem], standalone_mode=False)\n"
        "print('torch' in sys.modules)"
    )
    out = run_python(script)
    assert "no faults" in out.stdout and out.stdout.splitlines()[-1] == "False", out.stdout


def test_loading_the_model_draws_no_weights_and_imports_no_compiler():
    # a draw on the meta device imported torch's compiler (torch._dynamo, about 3 s)
    script = (
        "import sys, torch\n"
        "from poetry_lm.model.checkpoint import load_model, read_checkpoint\n"
        "from poetry_lm.paths import SHIPPED_MODEL\n"
        "model, _, _ = load_model(SHIPPED_MODEL)\n"
        "saved = read_checkpoint(SHIPPED_MODEL)['model']\n"
        "same = all(torch.equal(t, saved[n]) for n, t in model.state_dict().items())\n"
        "print(same, 'torch._dynamo' in sys.modules, torch.nn.init.uniform_.__module__)"
    )
    out = run_python(script, timeout=300)
    assert out.stdout.split() == ["True", "False", "torch.nn.init"], out.stdout
