"""``check_poem`` and ``poetry-lm check``: known-good poems pass, known faults are named."""

import json

import pytest
from click.testing import CliRunner

from poetry_lm.cli.check import check_command
from poetry_lm.prosody.check import FAULT_TERMS, check_poem

DENG_GAO = (  # 杜甫《登高》, 七律
    "风急天高猿啸哀，渚清沙白鸟飞回。无边落木萧萧下，不尽长江滚滚来。"
    "万里悲秋常作客，百年多病独登台。艰难苦恨繁霜鬓，潦倒新停浊酒杯。"
)
SHAN_JU = (  # 王维《山居秋暝》, 五律
    "空山新雨后，天气晚来秋。明月松间照，清泉石上流。"
    "竹喧归浣女，莲动下渔舟。随意春芳歇，王孙自可留。"
)
DENG_GUAN_QUE = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"  # 王之涣, 五绝
TAI_QING = (  # 郊庙歌辞《太清宫乐章 序入破第二奏》, 五律 rhyming on 先, its group's name
    "虚极仙宗本，希夷象帝先。百灵朝太上，万法祖重圆。"
    "善贷惟冲德，功成谓自然。云门达和气，思用合钧天。"
)
HUI_CHONG = "竹外桃花三两枝，春江水暖鸭先知。蒌蒿满地芦芽短，正是河豚欲上时。"  # 苏轼, 七绝


@pytest.mark.parametrize(
    "poem, form, group, rhymes",
    [
        (DENG_GAO, "七律", "上平声十灰", "哀回来台杯"),
        (SHAN_JU, "五律", "下平声十一尤", "秋流舟留"),
        (DENG_GUAN_QUE, "五绝", "下平声十一尤", "流楼"),
        (TAI_QING, "五律", "下平声一先", "先圆然天"),
        (HUI_CHONG, "七绝", "上平声四支", "枝知时"),  # 先 may be 平: 水暖鸭先 is no 孤平
    ],
)
def test_well_known_poems_are_clean(poem, form, group, rhymes):
    check = check_poem(poem)
    assert (check.form, check.rhyme_group, check.faults) == (form, group, [])
    assert len(check.chars) == sum(len(v) for v in check.lines)
    assert "".join(c.char for c in check.chars if c.rhyme) == rhymes


def test_traditional_script_and_any_layout_read_the_same():
    traditional = (
        "空山新雨後\n天氣晚來秋\n明月松間照 清泉石上流\n"
        "竹喧歸浣女；蓮動下漁舟。隨意春芳歇，王孫自可留"
    )
    assert check_poem(traditional).to_dict() == check_poem(SHAN_JU).to_dict()


def replace_line(poem, line, new):
    verses = [poem[i : i + len(new) + 1] for i in range(0, len(poem), len(new) + 1)]
    verses[line - 1] = new + verses[line - 1][-1]
    return "".join(verses)


# each known-bad line, put into a known-good poem, and the fault it must be named by
KNOWN_BAD = [
    (DENG_GAO, 6, "百年多病独登天", "出韵", 7),  # 天 is 下平声一先, not 十灰
    (DENG_GAO, 8, "潦倒新停浊酒哀", "重韵", 7),  # 哀 already rhymes line 1
    (SHAN_JU, 2, "天高晚来秋", "失对", 2),  # 高 平 like 山 in line 1
    (SHAN_JU, 3, "明朝松间照", "失粘", 2),  # 朝 平, line 2's 气 仄
    (DENG_GUAN_QUE, 2, "落河入海流", "孤平", 1),  # 仄平仄仄平
    (DENG_GUAN_QUE, 2, "黄河东西流", "三平尾", 3),
    (DENG_GUAN_QUE, 3, "欲穷万里目", "三仄尾", 3),
    (DENG_GAO, 4, "不尽长江滚滚流", "出韵", 7),  # 流 is 十一尤
]


@pytest.mark.parametrize("poem, line, new, term, position", KNOWN_BAD)
def test_each_known_fault_is_named_where_it_is(poem, line, new, term, position):
    bad = replace_line(poem, line, new)
    assert check_poem(poem).faults == []
    faults = check_poem(bad).faults
    assert term in FAULT_TERMS
    assert (term, line, position) in [(f.term, f.line, f.position) for f in faults], faults


def test_an_oblique_rhyme_or_an_irregular_shape_is_free_verse_and_not_judged():
    jiang_xue = check_poem("千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。")  # 仄韵: 古绝
    assert (jiang_xue.form, jiang_xue.regulated, jiang_xue.faults) == ("古体", False, [])
    assert jiang_xue.rhyme_group == "入声九屑"
    mixed = check_poem("君不见黄河之水天上来，奔流到海不复回。")
    assert mixed.form == "古体" and mixed.faults == []


def test_a_free_poem_is_judged_for_a_repeated_rhyme_at_its_even_verses_ends():
    # 柳宗元《江雪》 (仄韵, 古体) with its last rhyme 雪 replaced by its second, 灭
    repeated = check_poem("千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江灭。")
    assert repeated.form == "古体" and not repeated.regulated
    assert [(f.term, f.line, f.position) for f in repeated.faults] == [("重韵", 4, 5)]
    # an odd verse's end is no rhyme position of a free poem: 绝 twice is no fault
    assert check_poem("千山鸟飞绝，万径人踪灭。孤舟蓑笠绝，独钓寒江雪。").faults == []
    out = CliRunner().invoke(check_command, ["千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江灭。"])
    assert "古体 (not regulated)" in out.output and "重韵: line 4 character 5" in out.output
    assert "no faults" not in CliRunner().invoke(check_command, ["千山鸟飞绝，万径人踪灭。"]).output


def test_shi_dui_names_the_character_that_set_the_key_not_an_either_second_one():
    # line 2 of 《山居秋暝》 as 天看晚去秋: 看 reads 平 or 仄, so 去 (仄, 4th) sets the key 平,
    # line 1's key (山, 平): the fault is at 去, not at 看
    bad = replace_line(SHAN_JU, 2, "天看晚去秋")
    (fault,) = [f for f in check_poem(bad).faults if f.term == "失对"]
    assert (fault.line, fault.position) == (2, 4)
    assert "去" in fault.message and "山" in fault.message and "看" not in fault.message


def test_each_character_has_a_tone_and_the_reading_its_place_asks_for():
    chars = {(c.line, c.position): c for c in check_poem(DENG_GAO).chars}
    assert (chars[1, 2].char, chars[1, 2].tone, chars[1, 2].reading) == ("急", "仄", ["入声十四缉"])
    # 回 is read 平 (十灰) and 仄 (十一队): as a rhyme, the 平 reading is the one used
    assert (chars[2, 7].tone, chars[2, 7].reading, chars[2, 7].rhyme) == (
        "either",
        ["上平声十灰"],
        "上平声十灰",
    )
    # 难 (either) at the 2nd place of line 7, whose key is 平: its 平 reading
    assert (chars[7, 2].char, chars[7, 2].tone, chars[7, 2].reading) == (
        "难",
        "either",
        ["上平声十四寒"],
    )


def test_cli_text_json_file_and_errors(tmp_path):
    runner = CliRunner()
    out = runner.invoke(check_command, [replace_line(DENG_GAO, 6, "百年多病独登天")])
    assert out.exit_code == 0 and "七律, rhyme 上平声十灰" in out.output
    assert "出韵: line 6 character 7" in out.output
    path = tmp_path / "poems.txt"
    path.write_text(SHAN_JU.replace("。", "。\n") + "\n" + DENG_GAO, encoding="utf-8")
    out = runner.invoke(check_command, ["--file", str(path), "--format", "json"])
    rows = [json.loads(row) for row in out.output.splitlines()]
    assert [(r["form"], r["clean"]) for r in rows] == [("五律", True), ("七律", True)]
    # a "blank" line holding spaces, and Windows line ends, separate poems too
    path.write_bytes((SHAN_JU.replace("。", "。\r\n") + " \r\n" + DENG_GAO).encode("utf-8"))
    out = runner.invoke(check_command, ["--file", str(path), "--format", "json"])
    assert [json.loads(row)["form"] for row in out.output.splitlines()] == ["五律", "七律"]
    assert rows[0]["chars"][0] == {
        "char": "空",
        "line": 1,
        "position": 1,
        "tone": "either",
        "reading": ["上平声一东", "上声一董", "去声一送"],  # a free place: every reading
        "rhyme": None,
    }
    # text that is not a poem is refused by the one text rule, as score refuses it: exit 2
    for args, code in [
        ([], 2),
        (["abc"], 2),
        ([""], 2),
        (["abc白日依山尽，黄河入海流。"], 2),
        (["--file", str(tmp_path / "none.txt")], 1),
    ]:
        out = runner.invoke(check_command, args)
        assert out.exit_code == code and "Traceback" not in out.output
