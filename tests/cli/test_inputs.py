"""Every input a user can get wrong: one clear sentence, exit 2 (usage) or 1 (other), never a
traceback, or else the documented behaviour. Kinds follow docs/reliability.md."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from poetry_lm.cli.check import check_command
from poetry_lm.cli.duizhang import duizhang_command
from poetry_lm.cli.evaluate import evaluate_command
from poetry_lm.cli.score import score_command
from poetry_lm.cli.train import train_command
from poetry_lm.cli.write import generate_command
from poetry_lm.model.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def invoke(command, *args):
    return CliRunner().invoke(command, [str(a) for a in args])


def assert_user_error(result, status, *words):
    """Exit ``status``, no traceback, and the message on its last line naming ``words``."""
    assert result.exit_code == status, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    message = result.output.strip().splitlines()[-1]
    assert message.startswith("Error:"), result.output
    for word in words:
        assert word in message, message


def poem_lines(result):
    return result.output.strip().splitlines()


# -- 1. numbers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "option, value",
    [
        ("--temperature", "nan"),
        ("--temperature", "inf"),
        ("--temperature", "-inf"),
        ("--temperature", "1e308"),
        ("--top-p", "nan"),
        ("--top-p", "inf"),
    ],
)
def test_non_finite_or_huge_generation_numbers_are_usage_errors(option, value):
    assert_user_error(invoke(generate_command, "月", option, value), 2, option)


@pytest.mark.parametrize("option", ["--temperature", "--top-p"])
def test_a_number_out_of_range_is_quoted_as_typed(option):
    # 1e-400 reads as 0.0: the message quotes what the user wrote, not 0
    result = invoke(generate_command, "月", option, "1e-400")
    assert_user_error(result, 2, option)
    assert "1e-400 is out of range" in result.output and "'0 is" not in result.output


def test_a_vanishing_temperature_is_greedy():
    greedy = invoke(generate_command, "月", "--greedy", "--seed", 1)
    for tiny in ("1e-45", "1e-7"):
        cold = invoke(generate_command, "月", "--temperature", tiny, "--seed", 1)
        assert cold.exit_code == 0, cold.output
        assert cold.output == greedy.output


@pytest.mark.parametrize(
    "option, value",
    [
        ("--lr", "inf"),
        ("--lr", "nan"),
        ("--lr", "1e10"),
        ("--max-minutes", "nan"),
        ("--dropout", "nan"),
        ("--clip", "inf"),
    ],
)
def test_non_finite_or_huge_training_numbers_are_usage_errors(option, value, tmp_path):
    result = invoke(train_command, "--out", tmp_path / "run", option, value)
    assert_user_error(result, 2, option)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "command, option, words",
    [
        (train_command, "--ema-decay", "'abc' is not a number in [0, 1)"),
        (train_command, "--lr", "'abc' is not a number in (0, 10]"),
        (generate_command, "--temperature", "'abc' is not a number in (0, 100]"),
        (generate_command, "--rerank-weight", "'abc' is not a number ≥ 0"),
        (generate_command, "--top-p", "'abc' is not a number in (0, 1]"),
    ],
)
def test_a_value_that_is_no_number_says_what_it_must_be(command, option, words, tmp_path):
    out = ["--out", tmp_path / "run"] if command is train_command else []
    result = invoke(command, *out, option, "abc")
    assert_user_error(result, 2, option, words)
    assert "float range" not in result.output


@pytest.mark.parametrize(
    "option, value, words",
    [
        ("--temperature", "200", "200 is out of range: it must be in (0, 100]"),
        ("--temperature", "0", "0 is out of range: it must be in (0, 100]"),
        ("--top-p", "1.5", "1.5 is out of range: it must be in (0, 1]"),
        ("--rerank-weight", "-1", "-1 is out of range: it must be ≥ 0"),
    ],
)
def test_a_number_out_of_range_says_the_range(option, value, words):
    result = invoke(generate_command, option, value)
    assert_user_error(result, 2, option, words)
    assert "x<=" not in result.output  # click's own wording


# -- 2. seeds ------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", ["18446744073709551616", "-1", "4294967296", "1.5"])
def test_one_seed_rule_for_every_command(seed, tmp_path):
    assert_user_error(invoke(generate_command, "月", "--seed", seed), 2, "--seed")
    assert_user_error(invoke(train_command, "--out", tmp_path / "r", "--seed", seed), 2, "--seed")


def test_the_largest_seed_is_accepted():
    result = invoke(generate_command, "月", "--seed", 2**32 - 1)
    assert result.exit_code == 0 and result.output.startswith("月"), result.output


# -- 3. bytes that are not UTF-8 -------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        [os.fsdecode(b"\xe6\x9c")],  # 月 cut short
        [os.fsdecode("月".encode("gbk"))],
        ["--start", os.fsdecode(b"\xff\xfe")],
        ["--acrostic", os.fsdecode(b"\xe6\x98")],
        ["--form", os.fsdecode(b"\xe4\xba")],
        ["--prime", os.fsdecode("春".encode("gb18030"))],
    ],
)
def test_arguments_that_are_not_utf8_are_usage_errors(args):
    assert_user_error(invoke(generate_command, *args), 2, "not UTF-8")


def test_score_argument_that_is_not_utf8_is_a_usage_error():
    assert_user_error(invoke(score_command, os.fsdecode(b"\xe6\x9c")), 2, "not UTF-8")


def run_script(*args, env=None, shell=None):
    """A real process, as a user runs it; returns (status, stdout bytes, stderr text)."""
    full_env = {**os.environ, **(env or {})}
    command = shell or [sys.executable, "generate.py", *args]
    proc = subprocess.run(
        command, cwd=ROOT, env=full_env, capture_output=True, timeout=120, shell=bool(shell)
    )
    return proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace")


def test_utf8_arguments_work_under_the_c_locale():
    env = {"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0", "PYTHONIOENCODING": ""}
    status, out, err = run_script("月", "--seed", "1", env=env)
    assert status == 0, err
    assert out.decode("utf-8").startswith("月")


# -- 4. output streams ---------------------------------------------------------------------------


def test_a_full_output_is_one_line_and_status_1():
    status, _, err = run_script(shell=f"{sys.executable} generate.py 月 --seed 1 > /dev/full")
    assert (
        status == 1
        and err.strip() == "Error: cannot write to standard output (No space left on device)"
    )


def test_a_closed_output_is_an_error_not_silence():
    status, _, err = run_script(shell=f"{sys.executable} generate.py 月 --seed 1 >&-")
    assert status == 1 and "standard output is closed" in err and "Traceback" not in err


@pytest.fixture(scope="module")
def lushi_files(tmp_path_factory):
    """A tiny corpus and a file of 律诗 for ``duizhang``, which otherwise reads the whole corpus."""
    import lzma

    folder = tmp_path_factory.mktemp("lushi")
    record = {"id": "1", "author": "杜甫", "title": "春望", "text": CHUNWANG}
    with lzma.open(folder / "corpus.jsonl.xz", "wt", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
    (folder / "poems.txt").write_text(CHUNWANG + "\n", encoding="utf-8")
    return folder


def module_shell(command: str, folder=None) -> str:
    """``check`` or ``duizhang`` as a shell command line (``duizhang`` on the tiny files)."""
    if command == "duizhang":
        return f"{sys.executable} -m poetry_lm duizhang --corpus {folder}/corpus.jsonl.xz" + (
            f" --file {folder}/poems.txt"
        )
    return f"{sys.executable} -m poetry_lm check {DENGGUAN}"


@pytest.mark.parametrize("command", ["check", "duizhang"])
def test_every_command_reports_a_full_output_as_generate_does(command, lushi_files):
    status, _, err = run_script(shell=module_shell(command, lushi_files) + " > /dev/full")
    assert (
        status == 1
        and err.strip() == "Error: cannot write to standard output (No space left on device)"
    ), err


@pytest.mark.parametrize("command", ["check", "duizhang"])
def test_every_command_reports_a_closed_output_as_generate_does(command, lushi_files):
    status, _, err = run_script(shell=module_shell(command, lushi_files) + " >&-")
    assert status == 1 and "standard output is closed" in err and "Traceback" not in err, err


def test_check_reports_a_reader_gone_in_one_sentence(tmp_path):
    # far more than a pipe holds, so the reader is gone while check still writes
    path = tmp_path / "many.txt"
    path.write_text((DENGGUAN + "\n\n") * 2000, encoding="utf-8")
    command = [sys.executable, "-m", "poetry_lm", "check", "--file", str(path)]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.read(1)  # ``| head -c 1``
    proc.stdout.close()
    err = proc.stderr.read().decode("utf-8")
    assert proc.wait(timeout=120) == 1
    assert err.strip() == "Error: standard output was closed by its reader", err


def test_check_reads_its_utf8_poem_under_the_c_locale():
    env = {"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0", "PYTHONIOENCODING": ""}
    status, out, err = run_script(shell=f"{sys.executable} -m poetry_lm check {DENGGUAN}", env=env)
    assert status == 0, err
    assert out.decode("utf-8").startswith("五绝, rhyme 下平声十一尤\n白日依山尽")


def test_a_character_the_output_encoding_lacks_stops_after_the_poems_before_it():
    # 𬬻 (U+2CB3B) is in the vocabulary but not in GBK: the poem before it is already written
    status, out, err = run_script("月𬬻", "--seed", "1", env={"PYTHONIOENCODING": "gbk"})
    assert status == 1 and "Traceback" not in err and err.count("\n") == 1
    assert "cannot write" in err and "PYTHONIOENCODING=utf-8" in err
    assert out.decode("gbk").startswith("月") and len(out.decode("gbk").splitlines()) >= 2


# -- 5. punctuation where a character belongs ------------------------------------------------------


@pytest.mark.parametrize(
    "args, option",
    [
        (["--form", "五绝", "--acrostic", "春夏，冬"], "--acrostic"),
        (["--acrostic", "春。"], "--acrostic"),
        (["，"], "CHARS"),
        (["月，"], "CHARS"),
        (["--start", "，春风"], "--start"),
        (["月", "--prime", "。春风"], "--prime"),
    ],
)
def test_a_mark_cannot_stand_where_a_character_belongs(args, option):
    assert_user_error(invoke(generate_command, *args), 2, option)


@pytest.mark.parametrize("poem", ["，。？！", "。床前明月光", "!?"])
def test_score_refuses_a_poem_that_begins_with_a_mark(poem):
    assert_user_error(invoke(score_command, poem), 2, "begins with")


# -- 6. nothing silently cut or ignored (generation; training in test_runs.py) --------------------


def test_a_long_free_acrostic_gets_every_line():
    acrostic = "春夏秋冬" * 5
    result = invoke(generate_command, "--acrostic", acrostic, "--seed", 1)
    assert result.exit_code == 0, result.output
    lines = poem_lines(result)
    assert "".join(line[0] for line in lines) == acrostic


@pytest.mark.parametrize(
    "args, option",
    [
        (["--acrostic", "春夏秋冬" * 5, "--max-len", 128], "--max-len"),
        (["--start", "春眠不觉晓" * 30], "--start"),
        (["--start", "春眠不觉晓" * 2, "--max-len", 8], "--start"),
        (["--max-len", 7], "--max-len"),  # no room for a couplet of the shortest verses
        (
            ["--form", "五绝", "--start", "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。春"],
            "--start",
        ),
        (["--form", ""], "--form"),
        (["--start", ""], "--start"),
    ],
)
def test_what_cannot_be_honoured_is_refused(args, option):
    assert_user_error(invoke(generate_command, *args), 2, option)


def test_a_form_fixes_the_length_so_max_len_beside_one_is_refused():
    result = invoke(generate_command, "--form", "五绝", "--max-len", 40)
    assert_user_error(result, 2, "'--max-len'", "a 五绝 has a fixed length (4 lines of 5")
    # left at its default, --max-len asks for nothing the form ignores
    result = invoke(generate_command, "月", "--form", "五绝", "--max-len", 128, "--seed", 1)
    assert result.exit_code == 0, result.output


# -- 7. one text rule for every command ----------------------------------------------------------


def test_half_width_marks_and_a_bom_are_read_as_the_corpus_writes_them(tmp_path):
    said = invoke(score_command, "床前明月光,疑是地上霜.", "--format", "json")
    assert said.exit_code == 0, said.output
    record = json.loads(said.output)
    assert record["text"] == "床前明月光，疑是地上霜。" and record["unknown"] == 0
    full_width = json.loads(
        invoke(score_command, "床前明月光，疑是地上霜。", "--format", "json").output
    )
    assert record == full_width  # read exactly as the full-width text
    poems = tmp_path / "bom.txt"
    poems.write_bytes("\ufeff床前明月光,疑是地上霜.\n".encode())
    from_file = invoke(score_command, "--file", poems, "--format", "json")
    assert from_file.exit_code == 0, from_file.output
    assert json.loads(from_file.output) == record
    evaluated = invoke(evaluate_command, "--file", poems)
    expected = f"perplexity {record['perplexity']:.2f} over 13 tokens"
    assert evaluated.exit_code == 0 and expected in evaluated.output, evaluated.output


@pytest.mark.parametrize("text", ["abc", "床前明月光ω", "月 light"])
def test_the_same_text_is_refused_by_every_command(text, tmp_path):
    poems = tmp_path / "poems.txt"
    poems.write_text(text + "\n", encoding="utf-8")
    reason = "which is not a Chinese character or poem punctuation"
    assert_user_error(invoke(score_command, text), 2, reason)
    assert_user_error(invoke(score_command, "--file", poems), 1, "line 1", reason)
    assert_user_error(invoke(evaluate_command, "--file", poems), 1, "line 1", reason)
    assert_user_error(invoke(generate_command, "--start", text), 2, reason)


# -- 5-8. poem files: one reader for check, score, evaluate and duizhang ------------------------

FILE_COMMANDS = [check_command, score_command, evaluate_command, duizhang_command]
CHUNWANG = (
    "国破山河在，城春草木深。感时花溅泪，恨别鸟惊心。"
    + "烽火连三月，家书抵万金。白头搔更短，浑欲不胜簪。"
)
DENGGUAN = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"


@pytest.mark.parametrize(
    "content, words",
    [
        (None, "does not exist"),
        (b"", "holds no poems"),
        (b"\n  \n\r\n", "holds no poems"),
        (b"PK\x03\x04\x80\x81 model weights", "is not UTF-8 text"),  # a checkpoint, say
    ],
)
@pytest.mark.parametrize("command", FILE_COMMANDS, ids=lambda c: c.name)
def test_a_poem_file_at_fault_is_the_same_sentence_and_status_1_for_every_command(
    command, content, words, tmp_path
):
    path = tmp_path / "poems.txt"
    if content is not None:
        path.write_bytes(content)
    assert_user_error(invoke(command, "--file", path), 1, f"poem file {path} {words}")


@pytest.mark.parametrize("command", FILE_COMMANDS[:3], ids=lambda c: c.name)
def test_a_poem_files_fault_names_the_file_and_its_line(command, tmp_path):
    path = tmp_path / "poems.txt"
    path.write_text(f"{DENGGUAN}\nhello\n", encoding="utf-8")
    result = invoke(command, "--file", path)
    assert_user_error(result, 1, f"{path} line 2: ", "holds 'h', which is not a Chinese")
    assert "Usage:" not in result.output  # a file at fault is no usage error


def test_check_reads_a_blank_line_separated_block_as_one_poem_and_names_the_line_at_fault(
    tmp_path,
):
    path = tmp_path / "poems.txt"
    lines = ["白日依山尽，", "黄河入海流。", "欲穷千里目，", "更上一层楼。"]
    path.write_text("\n".join(lines) + "\n\n" + CHUNWANG + "\n", encoding="utf-8")
    rows = invoke(check_command, "--file", path, "--format", "json").output.splitlines()
    assert [json.loads(row)["form"] for row in rows] == ["五绝", "五律"]
    path.write_text("\n".join(lines[:3] + ["更上一层楼。x"]) + "\n", encoding="utf-8")
    assert_user_error(invoke(check_command, "--file", path), 1, f"{path} line 4: ", "'x'")


def generate_text(*poems):
    """Poems as generate prints its text: one verse a line, a blank line between poems."""
    from poetry_lm.decoding.loop import verses

    return "\n\n".join("\n".join(verses(p)) for p in poems) + "\n"


@pytest.mark.parametrize(
    "command, args, each, times",
    [
        (check_command, [], "五律, rhyme", 2),
        (score_command, ["--format", "json"], '{"text": "国破山河在，', 2),
        (evaluate_command, [], "in 2 poems", 1),
        (duizhang_command, [], "2 poems with the 律诗 shape", 1),
    ],
    ids=["check", "score", "evaluate", "duizhang"],
)
def test_dash_reads_poems_from_standard_input_as_from_a_file(command, args, each, times, tmp_path):
    text = generate_text(CHUNWANG, CHUNWANG.replace("烽火", "乾火"))
    path = tmp_path / "poems.txt"
    path.write_text(text, encoding="utf-8")
    from_file = invoke(command, "--file", path, *args)
    from_stdin = CliRunner().invoke(command, ["--file", "-", *args], input=text.encode())
    assert from_file.exit_code == 0 and from_stdin.exit_code == 0, from_stdin.output
    assert from_stdin.output == from_file.output.replace(str(path), "standard input")
    # two poems: generate's verse lines are joined, not read a verse a poem
    assert from_stdin.output.count(each) == times, from_stdin.output


def test_unpunctuated_poems_one_a_line_are_not_read_as_one_poem(tmp_path):
    path = tmp_path / "poems.txt"
    path.write_text("白日依山尽黄河入海流\n床前明月光疑是地上霜\n", encoding="utf-8")
    result = invoke(evaluate_command, "--file", path)
    assert result.exit_code == 0 and "over 22 tokens in 2 poems" in result.output, result.output


@pytest.mark.parametrize("command", FILE_COMMANDS, ids=lambda c: c.name)
def test_a_poem_file_that_is_not_a_regular_file_is_refused_unread(command):
    # /dev/zero never ends: reading it would take all the memory there is
    result = invoke(command, "--file", "/dev/zero")
    assert_user_error(result, 1, "poem file /dev/zero is not a regular file")


def test_a_poem_file_is_read_up_to_a_bound(monkeypatch, tmp_path):
    from poetry_lm.text import normalise

    path = tmp_path / "poems.txt"
    path.write_text(DENGGUAN + "\n", encoding="utf-8")
    size = path.stat().st_size
    monkeypatch.setattr(normalise, "MAX_FILE_BYTES", size)
    assert invoke(check_command, "--file", path).exit_code == 0
    monkeypatch.setattr(normalise, "MAX_FILE_BYTES", size - 1)
    for args, given, name in [
        (["--file", path], None, f"poem file {path}"),
        (["--file", "-"], path.read_bytes(), "standard input"),
    ]:
        result = CliRunner().invoke(check_command, [str(a) for a in args], input=given)
        assert_user_error(result, 1, f"{name} is larger than", "MiB, the most a poem file may hold")


@pytest.mark.parametrize(
    "line",
    [
        '{"text": 5}',
        '{"text": "春", ',
        '{"text": ' + "[" * 100_000 + "]" * 100_000 + "}",  # Python's parser recurses
        '{"text": "春", "score": ' + "9" * 5000 + "}",  # past Python's integer digit limit
    ],
    ids=["not-a-string", "cut", "deep", "long-integer"],
)
@pytest.mark.parametrize("command", [score_command, evaluate_command], ids=lambda c: c.name)
def test_a_bad_json_line_is_one_sentence_naming_the_file_and_line(command, line, tmp_path):
    path = tmp_path / "poems.jsonl"
    path.write_text(json.dumps({"text": DENGGUAN}) + "\n" + line + "\n", encoding="utf-8")
    result = invoke(command, "--file", path)
    assert_user_error(result, 1, f"poem file {path} line 2 is not generate's JSON output")


def test_standard_input_at_fault_is_named_as_such():
    for stdin, words in [(b"\x80\x81", "is not UTF-8 text"), (b"\n", "holds no poems")]:
        result = CliRunner().invoke(check_command, ["--file", "-"], input=stdin)
        assert_user_error(result, 1, f"standard input {words}")
    result = CliRunner().invoke(score_command, ["--file", "-"], input="床前明月光，\nhello\n")
    assert_user_error(result, 1, "standard input line 2: ")


def test_evaluate_takes_the_model_as_model_or_as_its_argument(tmp_path):
    path = tmp_path / "poems.txt"
    path.write_text(DENGGUAN + "\n", encoding="utf-8")
    shipped = ROOT / "models" / "poetry_lm.pt"
    named = invoke(evaluate_command, "--model", shipped, "--file", path)
    assert named.exit_code == 0 and "perplexity" in named.output, named.output
    assert invoke(evaluate_command, shipped, "--file", path).output == named.output
    missing = invoke(evaluate_command, "--model", tmp_path / "none.pt", "--file", path)
    assert_user_error(missing, 1, "none.pt does not exist")  # --model is read, not ignored
    both = invoke(evaluate_command, shipped, "--model", shipped, "--file", path)
    assert_user_error(both, 2, "name the checkpoint once: as --model or as CHECKPOINT")


@pytest.mark.parametrize("char", ["\ufe0f", "\u200b", "\u200d", "\u0301"])
def test_an_invisible_character_is_named_by_its_code_point(char):
    result = invoke(check_command, f"白日依{char}山尽")
    code = f"U+{ord(char):04X}"
    assert_user_error(result, 2, f"'白日依<{code}>山尽' holds {code}, which is not")
    assert char not in result.output


def test_half_width_marks_in_a_start_text_are_read_full_width():
    result = invoke(generate_command, "--start", "春眠不觉晓,", "--seed", 1)
    assert result.exit_code == 0 and result.output.startswith("春眠不觉晓，\n"), result.output


# -- 8. a character the model knows is kept ------------------------------------------------------


@pytest.mark.parametrize("char", ["乾", "於", "徵", "蒐"])
def test_a_known_character_is_not_converted(char):
    result = invoke(generate_command, char, "--greedy", "--max-len", 10)
    assert result.exit_code == 0 and result.output.startswith(char), result.output


def test_an_unknown_traditional_character_is_converted():
    result = invoke(generate_command, "國", "--greedy", "--max-len", 10)
    assert result.exit_code == 0 and result.output.startswith("国"), result.output
    scored = invoke(score_command, "國破山河在", "--format", "json")
    assert json.loads(scored.output)["text"] == "国破山河在"


# -- 9. bounded work -----------------------------------------------------------------------------


def test_requests_are_decoded_in_bounded_batches_and_streamed(monkeypatch):
    import poetry_lm.writing.writer as writer

    args = ["日月山", "-n", 3, "--best-of", 2, "--seed", 3, "--max-len", 12]
    whole = invoke(generate_command, *args)
    sizes = []
    real = writer.candidates  # what the command decodes each batch with

    def counting(step, table, request, starts, seeds):
        sizes.append(len(starts) * request.width)
        return real(step, table, request, starts, seeds)

    monkeypatch.setattr(writer, "candidates", counting)
    monkeypatch.setattr(writer, "BATCH_ROWS", 4)
    chunked = invoke(generate_command, *args)
    assert chunked.exit_code == 0, chunked.output
    assert max(sizes) <= 4 and sum(sizes) == 3 * 3 * 2
    # each poem's seed is drawn before the batching: the same poems, sampled, in any batches
    assert chunked.output == whole.output


@pytest.mark.parametrize(
    "command, args, option",
    [
        (score_command, ["月" * 4001], "POEM"),
        (generate_command, ["月", "--prime", "月" * 4001], "--prime"),
        (generate_command, ["--start", "月" * 4001, "--max-len", 10000], "--start"),
    ],
)
def test_a_text_longer_than_any_poem_is_refused(command, args, option):
    assert_user_error(invoke(command, *args), 2, option, "at most 4000")


# -- 10. checkpoints checked at load --------------------------------------------------------------


@pytest.fixture(scope="module")
def good_checkpoint(tiny_run):
    return read_checkpoint(tiny_run / "best.pt")


def forged(tmp_path, payload, **changes):
    path = tmp_path / "forged.pt"
    torch.save({**payload, **changes}, path)
    return path


def nan_weights(payload):
    weights = dict(payload["model"])
    name = next(iter(weights))
    weights[name] = weights[name].clone()
    weights[name][0, 0] = float("nan")
    return weights


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda p: {"vocab": p["vocab"][:-10]}, ["vocabulary has"]),
        (lambda p: {"vocab": [*p["vocab"][:-1], p["vocab"][5]]}, ["twice"]),
        (lambda p: {"vocab": [*p["vocab"][:-1], 7]}, ["not a list of non-empty strings"]),
        (lambda p: {"vocab": "abc"}, ["not a list"]),
        (lambda p: {"model": nan_weights(p)}, ["NaN"]),
        (lambda p: {"config": {**p["config"], "hidden_dim": 64}}, ["shape"]),
        (lambda p: {"config": {**p["config"], "hidden_dim": 10**9}}, ["does not match"]),
        (lambda p: {"config": {**p["config"], "cell": "transformer"}}, ["cell"]),
        (lambda p: {"model": {}}, ["weights"]),
    ],
)
def test_a_checkpoint_is_validated_once_at_load(change, words, good_checkpoint, tmp_path):
    path = forged(tmp_path, good_checkpoint, **change(good_checkpoint))
    for result in (
        invoke(evaluate_command, path, "--split", "valid"),
        invoke(generate_command, "月", "--model", path),
        invoke(score_command, "床前明月光", "--model", path),
    ):
        assert_user_error(result, 1, "cannot be used", *words)


@pytest.mark.parametrize(
    "model, words", [("", "no checkpoint path"), ("/dev/null", "not a regular file")]
)
def test_a_model_path_that_is_not_a_file_says_so(model, words, tmp_path):
    assert_user_error(invoke(generate_command, "月", "--model", model), 1, words)
    assert_user_error(invoke(generate_command, "月", "--model", tmp_path), 1, "not a regular file")


# -- 11. corpora (evaluation; training in test_runs.py) -------------------------------------------


def write_corpus(path, records):
    import lzma

    with lzma.open(path, "wt", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def test_an_empty_split_is_an_error_not_a_perfect_perplexity(tmp_path):
    # ids whose md5 % 10 is 2..9 all land in train: valid and test are empty
    from poetry_lm.text.corpus import split_of

    ids = [str(i) for i in range(200) if split_of(str(i)) == "train"][:20]
    corpus = write_corpus(
        tmp_path / "c.jsonl.xz",
        [{"id": i, "author": "", "title": "", "text": "床前明月光，疑是地上霜。"} for i in ids],
    )
    result = invoke(evaluate_command, "--split", "valid", "--corpus", corpus)
    assert_user_error(result, 1, "valid split", "no poems")


def test_a_corpus_with_a_number_for_an_id_is_one_clear_error(tmp_path):
    corpus = write_corpus(
        tmp_path / "c.jsonl.xz", [{"id": 7, "author": "", "title": "", "text": "床前明月光，"}]
    )
    result = invoke(evaluate_command, "--corpus", corpus)
    assert_user_error(result, 1, "line 1", "must be strings")


@pytest.mark.parametrize("args", ["--help", "generate --help", "check --help"])
def test_help_to_a_full_output_is_one_sentence(args):
    status, _, err = run_script(shell=f"{sys.executable} -m poetry_lm {args} > /dev/full")
    assert status == 1 and "Traceback" not in err, err
    assert err.strip() == "Error: cannot write to standard output (No space left on device)"


def test_a_prime_that_ends_inside_a_couplet_is_refused():
    """The poem's verses are counted from its own start: after a prime ending on ，, every mark
    and rhyme would fall a verse out of step with what the model read."""
    result = invoke(generate_command, "月", "--prime", "白日依山尽，")
    assert_user_error(result, 2, "--prime", "inside a couplet")
    assert invoke(generate_command, "月", "--prime", "白日依山尽，黄河入海流。").exit_code == 0
