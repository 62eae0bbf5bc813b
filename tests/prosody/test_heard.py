"""Readings as heard: the table counts what real regulated poems do, and the rule reads it."""

from poetry_lm.prosody.check import check_poem, split_verses
from poetry_lm.prosody.forms import FORMS, rhyme_lines, tone_rule
from poetry_lm.prosody.heard import (
    END,
    INNER,
    count_usage,
    first_line_rhyme_rate,
    heard_groups,
    heard_tones,
    place_tone,
)
from poetry_lm.prosody.rhyme import PING, ZE, tones_of


def test_place_tone_is_the_forms_template():
    for form in FORMS.values():
        for first in (False, True):
            rhymed = rhyme_lines(form, first)
            for line in range(form.lines):
                for col in range(form.chars):
                    rule = tone_rule(form, rhymed, line, col)
                    for key in (0, 1):
                        got = place_tone(form.chars, line, col, key, line in rhymed)
                        want = None if rule is None else (PING, ZE)[rule[key]]
                        assert got == want, (form, line, col, key)


def test_two_reading_line_ends_are_heard_as_real_poems_use_them():
    for ch in "行衣中":  # both tones in the table; real 仄 line ends on them: 2-3%
        assert tones_of(ch) == {PING, ZE}
        assert heard_tones(ch, END) == {PING}
    assert heard_tones("望", END) == {ZE} and heard_tones("望", INNER) == {ZE}
    assert heard_tones("看", INNER) == {PING, ZE}  # kān and kàn both stand
    assert heard_tones("月", END) == {ZE} and heard_tones("风", INNER) == {PING}  # one tone: kept


def test_rare_rhyme_groups_are_not_heard():
    assert [g.name for g in heard_groups("居")] == ["上平声六鱼"]  # never rhymes in 四支
    assert [g.name for g in heard_groups("台")] == ["上平声十灰"]
    assert len(heard_groups("行")) == 2  # háng in 七阳 and xíng in 八庚, both heard


def test_first_line_rhyme_rates_are_the_corpus_rates():
    assert 0.7 < first_line_rhyme_rate("七绝") < 0.8 and 0.7 < first_line_rhyme_rate("七律") < 0.85
    assert first_line_rhyme_rate("五绝") < 0.25 and first_line_rhyme_rate("五律") < 0.25


def test_count_usage_reads_only_regulated_poems():
    poems = [
        "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。",  # 五绝, 十一尤, first line unrhymed
        "朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。",  # 七绝, 十五删
        "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。",  # 仄 rhymes: not regulated
    ]
    usage = count_usage(split_verses(p) for p in poems)
    assert dict(usage.poems) == {"五绝": 1, "七绝": 1}
    assert dict(usage.first) == {"五绝": 0, "七绝": 1}
    assert usage.rhymes["间"]["上平声十五删"] == 1 and "鸟" not in usage.rhymes
    assert usage.tones["过", INNER][ZE] == 1  # 轻舟已过: the 4th of a 平起 line, 仄


def rare(text):
    return [
        (f.line, f.position, f.message.split(" ")[0])
        for f in check_poem(text).faults
        if f.term == "僻读"
    ]


def test_check_flags_rhymes_and_tones_on_readings_real_poems_do_not_give():
    # the first line does not rhyme (尤 poem), yet ends on 行, which every reader hears 平
    assert rare("白日依山万里行，黄河入海向东流。欲穷千里登高目，更上层楼望九州。") == [
        (1, 7, "行")
    ]
    # 居 rhymes in 四支 by the table only: real poems rhyme it in 六鱼
    assert rare("春风吹客老，归鸟向林迟。何处寻高士，山中有旧居。") == [(4, 5, "居")]


def test_famous_regulated_poems_have_no_rare_reading():
    poems = [
        "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。",
        "国破山河在，城春草木深。感时花溅泪，恨别鸟惊心。烽火连三月，家书抵万金。白头搔更短，浑欲不胜簪。",
        "黄河远上白云间，一片孤城万仞山。羌笛何须怨杨柳，春风不度玉门关。",
        "朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。",
        "空山新雨后，天气晚来秋。明月松间照，清泉石上流。竹喧归浣女，莲动下渔舟。随意春芳歇，王孙自可留。",
    ]
    for poem in poems:
        assert check_poem(poem).regulated and rare(poem) == [], poem
