"""The product path through the command line: train → evaluate → generate, and user errors."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import TINY_TRAIN

from poetry_lm.cli.evaluate import evaluate_command
from poetry_lm.cli.train import train_command
from poetry_lm.cli.write import generate_command
from poetry_lm.model.checkpoint import read_checkpoint
from poetry_lm.prosody.forms import VERSE_ENDS

ROOT = Path(__file__).resolve().parents[2]


def invoke(command, *args):
    return CliRunner().invoke(command, [str(a) for a in args])


def test_training_writes_checkpoints_metrics_and_plot(tiny_run):
    for name in ("best.pt", "last.pt", "metrics.json", "training.png"):
        assert (tiny_run / name).is_file()
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    # test split untouched
    assert metrics["result"]["best_val_ppl"] > 1 and "test_ppl" not in metrics["result"]
    assert metrics["history"][1]["train_loss"] < metrics["history"][0]["train_loss"]
    ckpt = read_checkpoint(tiny_run / "last.pt")  # weights_only load: plain data only
    assert {"config", "vocab", "model", "optimizer", "progress", "history", "train"} <= set(ckpt)
    assert ckpt["progress"]["epoch"] == 2


def test_evaluate_reports_perplexity_tokens_and_unk_rate(tiny_run, tmp_path):
    result = invoke(
        evaluate_command,
        tiny_run / "best.pt",
        "--split",
        "valid",
        "--corpus",
        ROOT / "corpus/tang.jsonl.xz",
    )
    assert result.exit_code == 0, result.output
    assert (
        "perplexity" in result.output
        and "tokens" in result.output
        and "<unk> rate" in result.output
    )
    poems = tmp_path / "poems.txt"
    poems.write_text("床前明月光，疑是地上霜。\n舉頭望明月，低頭思故鄉。\n", encoding="utf-8")
    result = invoke(evaluate_command, tiny_run / "best.pt", "--file", poems)
    assert result.exit_code == 0, result.output
    assert "over 26 tokens in 2 poems" in result.output  # 2 × (12 characters + end)
    as_generated = invoke(evaluate_command, tiny_run / "best.pt", "--file", poems, "--as-generated")
    whole, stepped = (
        float(r.output.split("perplexity ")[1].split()[0]) for r in (result, as_generated)
    )
    assert as_generated.exit_code == 0 and abs(stepped - whole) < 0.01 * whole, as_generated.output


def test_generate_starts_each_poem_with_its_character_and_is_seeded(tiny_run):
    args = ["日月", "--model", tiny_run / "best.pt", "--seed", 7, "--max-len", 40]
    first, second = invoke(generate_command, *args), invoke(generate_command, *args)
    assert first.exit_code == 0, first.output
    assert first.output == second.output
    poems = first.output.strip().split("\n\n")
    assert [p[0] for p in poems] == ["日", "月"]
    for poem in poems:
        for line in poem.splitlines()[:-1]:
            assert line[-1] in VERSE_ENDS
        assert "<" not in poem and len(poem.replace("\n", "")) <= 40
    other = invoke(generate_command, *args[:-4], "--seed", 8, "--max-len", 40)
    assert other.output != first.output


def test_generate_accepts_traditional_script_and_start_texts(tiny_run):
    result = invoke(
        generate_command,
        "--start",
        "國破",
        "--model",
        tiny_run / "best.pt",
        "--seed",
        1,
        "--greedy",
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("国破")


def test_resume_continues_an_interrupted_run(tmp_path):
    out = tmp_path / "run"
    first = invoke(train_command, "--out", out, *TINY_TRAIN, "--epochs", 1)
    assert first.exit_code == 0, first.output
    again = invoke(train_command, "--out", out, *TINY_TRAIN, "--epochs", 1)
    assert again.exit_code == 1 and "--resume" in again.output
    resumed = invoke(train_command, "--out", out, "--resume", "--epochs", 2)
    assert resumed.exit_code == 0, resumed.output
    ckpt = read_checkpoint(out / "last.pt")
    assert ckpt["progress"]["epoch"] == 2 and len(ckpt["history"]) == 2
    assert ckpt["train"]["model"]["hidden_dim"] == 32  # the run's own settings, not the defaults


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_other_cells_train_evaluate_and_generate(cell, tmp_path):
    out = tmp_path / cell
    trained = invoke(train_command, "--out", out, *TINY_TRAIN, "--epochs", 1, "--cell", cell)
    assert trained.exit_code == 0, trained.output
    assert read_checkpoint(out / "best.pt")["config"]["cell"] == cell
    evaluated = invoke(evaluate_command, out / "best.pt", "--split", "valid")
    assert evaluated.exit_code == 0 and "perplexity" in evaluated.output, evaluated.output
    written = invoke(
        generate_command, "春", "--model", out / "best.pt", "--seed", 1, "--max-len", 20
    )
    assert written.exit_code == 0 and written.output.startswith("春"), written.output


def test_user_errors_are_one_sentence_and_nonzero(tiny_run, tmp_path):
    model = tiny_run / "best.pt"
    unknown = invoke(generate_command, "龘", "--model", model)
    assert unknown.exit_code == 2 and "does not know the character '龘'" in unknown.output
    missing = invoke(generate_command, "月", "--model", tmp_path / "none.pt")
    assert missing.exit_code == 1 and "does not exist" in missing.output
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage" * 10)
    damaged = invoke(evaluate_command, corrupt)
    assert damaged.exit_code == 1 and "damaged or not a poetry_lm checkpoint" in damaged.output
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    assert "not a poetry_lm checkpoint" in invoke(evaluate_command, foreign).output
    junk = tmp_path / "junk.txt"
    junk.write_text("床前明月光。\nnot a poem\n", encoding="utf-8")
    bad_file = invoke(evaluate_command, model, "--file", junk)
    assert bad_file.exit_code == 1 and "line 2" in bad_file.output
    bad_option = invoke(generate_command, "月", "--model", model, "--temperature", -1)
    assert bad_option.exit_code == 2
    bad_window = invoke(train_command, "--out", tmp_path / "x", "--seq-len", 8, "--seq-step", 9)
    assert bad_window.exit_code == 2 and "--seq-step" in bad_window.output
    bf16_on_cpu = invoke(train_command, "--out", tmp_path / "x", "--bf16")
    assert bf16_on_cpu.exit_code == 2 and "--bf16 needs --device cuda" in bf16_on_cpu.output
    for result in (unknown, missing, damaged, bad_file, bad_option, bad_window, bf16_on_cpu):
        assert (
            "Traceback" not in result.output
            and result.exception is None
            or isinstance(result.exception, SystemExit)
        )


def test_scripts_run_as_a_user_would(tiny_run):
    """The real entry points in a subprocess: output on stdout, errors without traceback."""
    ok = subprocess.run(
        [sys.executable, "generate.py", "山", "--model", str(tiny_run / "best.pt"), "--seed", "3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0 and ok.stdout.startswith("山"), ok.stderr
    bad = subprocess.run(  # a checkpoint that is not there: exit 1, one line
        [sys.executable, "generate.py", "山", "--model", str(tiny_run / "none.pt")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 1 and "Traceback" not in bad.stderr and bad.stderr.count("\n") == 1


def test_ctrl_c_saves_and_the_run_resumes(tmp_path):
    out = tmp_path / "run"
    args = [
        sys.executable,
        "train.py",
        "--out",
        str(out),
        *TINY_TRAIN,
        "--limit-poems",
        "3000",
        "--epochs",
        "1",
    ]
    proc = subprocess.Popen(args, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # wait until the training loop has started
        if "steps/epoch" in line:
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 130
    assert "interrupted: saved" in rest and "Traceback" not in rest
    ckpt = read_checkpoint(out / "last.pt")
    assert 0 < ckpt["progress"]["step_in_epoch"] and ckpt["progress"]["epoch"] == 0
    resumed = invoke(train_command, "--out", out, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert read_checkpoint(out / "last.pt")["progress"]["epoch"] == 1


def test_stream_batching_trains_and_resumes(tmp_path):
    out = tmp_path / "streams"
    first = invoke(train_command, "--out", out, *TINY_TRAIN, "--epochs", 1, "--batching", "streams")
    assert first.exit_code == 0, first.output
    resumed = invoke(train_command, "--out", out, "--resume", "--epochs", 2)
    assert resumed.exit_code == 0, resumed.output
    ckpt = read_checkpoint(out / "last.pt")
    assert ckpt["train"]["batching"] == "streams" and ckpt["progress"]["epoch"] == 2
    first_epoch, second_epoch = ckpt["history"]
    assert second_epoch["val_ppl"] < first_epoch["val_ppl"]


def test_verbose_output_puts_each_header_above_its_own_poem_and_shows_the_title():
    result = invoke(generate_command, "月山", "--seed", 1, "-v", "--title", "春望")
    assert result.exit_code == 0, result.output
    first, second = result.output.rstrip("\n").split("\n\n")  # a blank line between poems only
    for number, poem in enumerate([first, second], 1):
        header, title, *verses = poem.split("\n")
        assert header.startswith(f"poem {number}: mean log-probability"), result.output
        assert title == "《春望》" and verses[0][0] == "月山"[number - 1], result.output
    # the JSON already names it; the text is read back by the commands without its title line
    record = json.loads(
        invoke(generate_command, "月", "--seed", 1, "--title", "春望", "--format", "json").output
    )
    assert record["title"] == "春望"


def test_titled_text_output_reads_back_as_the_poems_alone(tmp_path):
    from poetry_lm.cli.check import check_command
    from poetry_lm.cli.score import score_command

    path = tmp_path / "poems.txt"
    titled = invoke(generate_command, "月山", "--seed", 1, "--title", "春望").output
    path.write_text(titled, encoding="utf-8")
    plain = invoke(generate_command, "月山", "--seed", 1, "--title", "春望", "--format", "json")
    texts = [json.loads(line)["text"] for line in plain.output.splitlines()]
    scored = invoke(score_command, "--file", path, "--format", "json")
    assert [json.loads(line)["text"] for line in scored.output.splitlines()] == texts
    checked = invoke(check_command, "--file", path, "--format", "json")
    assert checked.exit_code == 0 and len(checked.output.splitlines()) == 2, checked.output
