"""The 对仗 measure: shape detection, pair statistics, tones, and the command."""

import json

import pytest
from click.testing import CliRunner

from poetry_lm.cli import main as cli
from poetry_lm.evaluation.duizhang import (
    PairTable,
    couplets,
    lushi_lines,
    measure,
    tones_opposed,
)

# 杜甫《春望》: its middle couplets are textbook 对仗
CHUNWANG = (
    "国破山河在，城春草木深。感时花溅泪，恨别鸟惊心。"
    + "烽火连三月，家书抵万金。白头搔更短，浑欲不胜簪。"
)


def test_lushi_shape():
    assert lushi_lines(CHUNWANG)[2:4] == ["感时花溅泪", "恨别鸟惊心"]
    assert lushi_lines(CHUNWANG.replace("深。", "深，")) is None  # marks out of place
    assert lushi_lines(CHUNWANG[:24]) is None  # a 绝句
    assert lushi_lines(CHUNWANG.replace("城春草木深", "城春草木深深")) is None  # uneven lines


def test_couplets_take_equal_length_verse_pairs_of_any_poem():
    assert list(couplets("白日依山尽，黄河入海流。欲穷千里，更上一层楼。")) == [
        ("白日依山尽", "黄河入海流")
    ]


def test_pair_statistics_against_chance():
    train = ["花溅泪，鸟惊心。", "花开早，鸟来迟。", "山青青，水长长。", "花落地，鸟归巢。"] * 2
    train += ["云一二，月三四。"]
    train = [t.replace("，", "一二，").replace("。", "三四。") for t in train]  # 5 characters
    table = PairTable(train)
    assert table.pairs["花", "鸟"] == 6 and table.chars["花"] == 6 and table.total == 45
    # observed 6 against 6 * 6 / (2 * 45) = 0.4 expected
    assert table.ratio("花", "鸟") == pytest.approx(6 / 0.4)
    assert table.opposite("花", "鸟") and table.opposite("鸟", "花")
    assert not table.opposite("花", "山")  # never seen opposite
    assert not table.opposite("云", "月")  # seen once: too rare to count
    assert not table.opposite("一", "一")  # the same character is no 对仗


def test_measure_counts_only_middle_couplets_and_tones():
    table = PairTable([CHUNWANG] * 3)
    report = measure(table, [CHUNWANG, "床前明月光，疑是地上霜。"])
    assert (report.poems, report.couplets) == (1, 2)
    assert report.pair_share == 1.0  # every aligned pair was seen opposite three times
    # 时/别, 溅/惊, 火/书, 三/万: 平仄 in the 平水韵 table (别 and 溅 entering or oblique)
    assert tones_opposed("时", "别") and not tones_opposed("时", "心")
    assert 0.5 <= report.tone_share <= 1.0


def test_command_on_split_and_generated_json(tmp_path):
    poems = tmp_path / "gen.jsonl"
    poems.write_text(json.dumps({"text": CHUNWANG, "lines": []}, ensure_ascii=False) + "\n")
    result = CliRunner().invoke(cli, ["duizhang", "--file", str(poems)])
    assert result.exit_code == 0, result.output
    assert "1 poem with the 律诗 shape, 2 middle couplets" in result.output
    short = tmp_path / "short.txt"
    short.write_text("床前明月光，疑是地上霜。\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["duizhang", "--file", str(short)])
    assert result.exit_code == 1 and "no poem with the 律诗 shape" in result.output


def test_the_margin_is_1_96_standard_errors_over_poems():
    from poetry_lm.evaluation.duizhang import margin_95

    # three poems of two couplets: poem means 0.5, 0.25, 0.75 (sd 0.25)
    scores = [0.4, 0.6, 0.0, 0.5, 1.0, 0.5]
    assert margin_95(scores) == pytest.approx(1.96 * 0.25 / 3**0.5)
    assert margin_95([0.2, 0.4]) is None  # one poem: no spread to estimate
    assert margin_95([0.5] * 8) == 0.0
    # a report carries it, and more poems of the same spread give a narrower one
    table = PairTable([CHUNWANG] * 3)
    other = CHUNWANG.replace("感时花溅泪", "感时花溅泪".translate(str.maketrans("感时", "白日")))
    few, many = measure(table, [CHUNWANG, other]), measure(table, [CHUNWANG, other] * 10)
    assert few.pair_share == pytest.approx(many.pair_share) and 0 < many.margin < few.margin


@pytest.mark.parametrize("line", ['{"text": 5}', '{"poem": "x"}', '{"text": "春", '])
def test_a_file_that_is_not_generates_json_is_one_sentence(tmp_path, line):
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["duizhang", "--file", str(path)])
    assert result.exit_code != 0 and "not generate's JSON output" in result.output
    assert (
        "Traceback" not in result.output
        and result.exception is None
        or isinstance(result.exception, SystemExit)
    )


def test_a_file_without_a_lushi_says_how_it_was_read(tmp_path):
    path = tmp_path / "verses.txt"
    path.write_text("国破山河在，\n城春草木深。\n", encoding="utf-8")  # a poem over lines
    result = CliRunner().invoke(cli, ["duizhang", "--file", str(path)])
    assert result.exit_code == 1 and "read as generate's text" in result.output
    path.write_text("国破山河在，城春草木深。\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["duizhang", "--file", str(path)])
    assert result.exit_code == 1 and "read as one poem a line" in result.output


def test_generates_text_output_is_read_a_poem_per_blank_line_separated_block(tmp_path):
    from poetry_lm.decoding.loop import verses

    other = CHUNWANG.replace("烽火连三月，家书", "乾火连三月，日书")  # 乾 is not read as 干
    # as generate prints its text: one verse a line, a blank line before every poem but the first
    path = tmp_path / "gen.txt"
    path.write_text("\n\n".join("\n".join(verses(p)) for p in [CHUNWANG, other]) + "\n")
    result = CliRunner().invoke(cli, ["duizhang", "--file", str(path)])
    assert result.exit_code == 0, result.output
    assert "2 poems with the 律诗 shape, 4 middle couplets" in result.output
    assert "n/a" not in result.output
    # the same poems as JSON lines give the same figures
    lines = tmp_path / "gen.jsonl"
    lines.write_text("".join(json.dumps({"text": p}) + "\n" for p in [CHUNWANG, other]))
    as_json = CliRunner().invoke(cli, ["duizhang", "--file", str(lines)])
    assert as_json.output.splitlines()[1:] == result.output.splitlines()[1:]


def test_one_poem_has_no_margin_and_no_control():
    table = PairTable([CHUNWANG] * 3)
    report = measure(table, [CHUNWANG])
    assert report.margin is None and report.control is None
    two = measure(table, [CHUNWANG, CHUNWANG.replace("国破山河在", "国破山河远")])
    assert two.margin is not None and two.control is not None


def test_command_on_one_poem_prints_n_a_not_a_zero_margin(tmp_path):
    path = tmp_path / "one.txt"
    path.write_text(CHUNWANG + "\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["duizhang", "--file", str(path)])
    assert result.exit_code == 0, result.output
    assert "± n/a (mismatched couplets n/a)" in result.output
    assert "± 0.0" not in result.output and "couplets 0.0%" not in result.output


def test_the_train_split_is_measured_with_a_warning():
    result = CliRunner().invoke(cli, ["duizhang", "--split", "train"])
    assert result.exit_code == 0, result.output
    assert "inflated" in result.stderr and "inflated" not in result.stdout
    assert "train split:" in result.stdout
