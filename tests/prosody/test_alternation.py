"""失替: the alternation inside a verse (二四不同, 二六同 in 七言), judged by ``check_poem``."""

import pytest
from click.testing import CliRunner

from poetry_lm.cli.check import check_command
from poetry_lm.prosody.check import FAULT_TERMS, check_poem

CHUN_WANG = (  # 杜甫《春望》, 五律: 更 and 胜 (either) at the 4th place
    "国破山河在，城春草木深。感时花溅泪，恨别鸟惊心。"
    "烽火连三月，家书抵万金。白头搔更短，浑欲不胜簪。"
)
SHAN_JU = (  # 王维《山居秋暝》, 五律
    "空山新雨后，天气晚来秋。明月松间照，清泉石上流。"
    "竹喧归浣女，莲动下渔舟。随意春芳歇，王孙自可留。"
)
BAI_DI = "朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。"  # 李白, 七绝
# 王之涣《凉州词》, 七绝: 羌笛何须怨杨柳 (平仄平平仄平仄) is 王力's 特定格式, no 失替
LIANG_ZHOU = "黄河远上白云间，一片孤城万仞山。羌笛何须怨杨柳，春风不度玉门关。"
DENG_GUAN_QUE = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"  # 王之涣, 五绝
DENG_GAO = (  # 杜甫《登高》, 七律
    "风急天高猿啸哀，渚清沙白鸟飞回。无边落木萧萧下，不尽长江滚滚来。"
    "万里悲秋常作客，百年多病独登台。艰难苦恨繁霜鬓，潦倒新停浊酒杯。"
)
HUANG_HE_LOU = (  # 崔颢《黄鹤楼》, 七律 famous for breaking the rules
    "昔人已乘黄鹤去，此地空余黄鹤楼。黄鹤一去不复返，白云千载空悠悠。"
    "晴川历历汉阳树，芳草萋萋鹦鹉洲。日暮乡关何处是，烟波江上使人愁。"
)


def faults(poem):
    return [(f.term, f.line, f.position) for f in check_poem(poem).faults]


@pytest.mark.parametrize("poem", [CHUN_WANG, SHAN_JU, BAI_DI, LIANG_ZHOU, DENG_GUAN_QUE, DENG_GAO])
def test_famous_regular_poems_alternate(poem):
    check = check_poem(poem)
    assert check.regulated and check.faults == []


def test_huang_he_lou_breaks_the_alternation_twice_and_its_tails():
    # line 1 昔人已乘黄鹤去: 人 平 at the 2nd, 鹤 仄 at the 6th (乘 at the 4th reads either way);
    # line 3 黄鹤一去不复返: 鹤 and 去 仄 at the 2nd and 4th (复 仄 at the 6th); its tail 不复返
    # and line 4's 空悠悠 by the readings heard there (不 仄, 空 平 inside a line), not any reading
    assert faults(HUANG_HE_LOU) == [
        ("失替", 1, 6),
        ("失替", 3, 4),
        ("三仄尾", 3, 5),
        ("三平尾", 4, 5),
    ]
    (first, third, *_) = check_poem(HUANG_HE_LOU).faults
    assert "人 平 and 鹤 仄" in first.message and "二六同" in first.message
    assert "鹤 仄 and 去 仄" in third.message and "二四不同" in third.message
    assert "失替" in FAULT_TERMS


def test_a_line_of_three_level_tones_inside_is_named():
    # 欲穷千山目 (仄平平平仄): 穷 and 山 both 平
    assert faults(DENG_GUAN_QUE.replace("千里目", "千山目")) == [("失替", 3, 4)]
    out = CliRunner().invoke(check_command, [DENG_GUAN_QUE.replace("千里目", "千山目")])
    assert out.exit_code == 0 and "失替: line 3 character 4" in out.output
    assert "no faults" not in out.output


def test_the_4th_and_6th_differ_where_the_2nd_reads_either_way():
    # 不尽长江滚滚来 as 不看长江滚滚来 keeps its key; as 不看长江滚江来, 江 平 at the 4th and
    # the 6th: 看 (either) squares with each, but they cannot both alternate with it
    assert faults(DENG_GAO.replace("不尽长江", "不看长江")) == []
    assert ("失替", 4, 6) in faults(DENG_GAO.replace("不尽长江滚滚来", "不看长江滚江来"))


def test_the_licensed_form_needs_its_third_from_last_oblique_and_an_unrhymed_line():
    # 羌笛何须飞杨柳: 飞 平 where the 特定格式 asks 仄, so 杨 平 at the 6th breaks 二六同
    assert faults(LIANG_ZHOU.replace("怨杨柳", "飞杨柳")) == [("失替", 3, 6)]


def test_an_alternation_resting_on_a_reading_real_poems_seldom_give_is_pi_du():
    # line 2 黄中入山流: 中 at the 2nd is 仄 in the table, but real poems hear it 平 there (2520
    # uses to 55), like 山 at the 4th: the line alternates only by the rare reading. Its key,
    # set by 山 (the 2nd reads either way), breaks 对 and 粘 too
    assert faults(DENG_GUAN_QUE.replace("黄河入海流", "黄中入山流")) == [
        ("僻读", 2, 2),
        ("失对", 2, 4),
        ("失粘", 3, 2),
    ]
    # where the pattern's own place names the rare reading already, it is named once
    assert faults(DENG_GUAN_QUE.replace("千里目", "千中目")) == [("僻读", 3, 4)]
