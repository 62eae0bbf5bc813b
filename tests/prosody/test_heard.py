"""Readings as heard: the table counts what real regulated poems do, and the rule reads it."""

from poetry_lm.prosody.check import split_verses
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
