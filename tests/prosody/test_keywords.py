"""Keywords (prosody/keywords.py): every kept poem holds every keyword, inside one verse, for
sampling, best-of and beam, in free poems, forms and acrostics, with the forms' rules intact
(judged by ``prosody/check.py``); keywords that cannot fit are one clear error (exit 2)."""

import math
import random

import numpy as np
import pytest
from click.testing import CliRunner

from poetry_lm.cli.write import generate_command
from poetry_lm.decoding.loop import verses
from poetry_lm.prosody.check import check_poem
from poetry_lm.prosody.forms import Constraints, Rules, check_keywords, parse_form
from poetry_lm.prosody.keywords import (
    KEYWORD_BONUS,
    KeywordError,
    clean_keywords,
    split_keywords,
)
from poetry_lm.prosody.rhyme import PING, groups_of
from poetry_lm.request import PoemRequest
from poetry_lm.text.corpus import is_ideograph
from poetry_lm.text.vocab import SPECIALS
from poetry_lm.writing.writer import Writer


@pytest.fixture(scope="module")
def tiny(tiny_run):
    return Writer(tiny_run / "best.pt")


def write(writer, start: str, seed: int, **fields):
    """The poem of one start (``""``: the model chooses) and seed, for a request of ``fields``."""
    request = writer.check(PoemRequest.of(starts=[start] if start else [], **fields))
    (poem,) = writer.write_rows(request, [start], [seed])
    return poem


def characters(table):
    """The tiny model's ideographs that have a reading (so that tones and rhymes apply)."""
    return [t for t in table.tokens if t not in SPECIALS and is_ideograph(t) and groups_of(t)]


def draw_keywords(rng, chars, n=3):
    """n keywords of 1 or 2 characters, none inside another."""
    picked = rng.sample(chars, 2 * n)
    return [picked[2 * i] + (picked[2 * i + 1] if rng.random() < 0.4 else "") for i in range(n)]


def assert_covers(poem, keywords):
    """Every keyword inside one verse of the poem."""
    lines = verses(poem.text)
    for word in keywords:
        assert any(word in line for line in lines), (word, poem.text)


def assert_form_rules(poem, form, cons):
    """The form, its rhyme (no 出韵, no 重韵) and, with tones, 粘对 where no keyword overrode
    them, as prosody/check.py judges them."""
    judged = check_poem(poem.text)
    assert judged.form == form.name, poem.text
    faults = {f.term for f in judged.faults}
    assert not faults & {"出韵", "重韵"}, (poem.text, judged.faults)
    if cons.tones and not any("over tones" in b for b in poem.backoffs):
        assert not faults & {"失粘", "失对"}, (poem.text, judged.faults)
    if cons.acrostic:
        assert [line[0] for line in verses(poem.text)] == list(cons.acrostic)


DECODERS = [dict(temperature=1.0), dict(best_of=3), dict(beam=3)]


@pytest.mark.parametrize("heard", [True, False], ids=["heard", "table"])
@pytest.mark.parametrize("form", ["五绝", "七律"])
def test_every_form_poem_holds_every_keyword_and_keeps_its_rules(tiny, form, heard):
    """2 forms × 3 decoders × 3 settings × 8 (五绝) or 4 (七律) poems, each with its own keywords
    and seed; with rhymes and tones as heard (the default, the first line left open rhyming as
    drawn) and by the table, the first line never rhymed (``heard=False, rhyme_first=False``)."""
    table = tiny.table
    rng = random.Random(form)
    chars, form = characters(table), parse_form(form)
    rules = dict(heard=heard) if heard else dict(heard=False, rhyme_first=False)
    for sampling in DECODERS:
        for setting in [
            dict(),
            dict(tones=True, rhyme_first=True),
            dict(acrostic="".join(rng.sample(chars, form.lines)), no_repeat=True),
        ]:
            for _ in range(8 if form.lines == 4 else 4):
                keywords = draw_keywords(rng, chars, rng.choice([1, 2, 3]))
                fields = {**rules, "tones": False, **setting, **sampling}
                fields.update(form=form.name, keywords=keywords)
                cons = PoemRequest.of(**fields).constraints()
                poem = write(tiny, "", rng.randrange(2**31), **fields)
                assert_covers(poem, keywords)
                assert_form_rules(poem, form, cons)
                if cons.no_repeat:  # a keyword over no-repeat is recorded; none was needed
                    body = [ch for ch in poem.text if is_ideograph(ch)]
                    assert len(body) == len(set(body)), poem.text


@pytest.mark.parametrize("sampling", DECODERS, ids=["sample", "best-of", "beam"])
def test_every_free_poem_holds_every_keyword(tiny, sampling):
    """Free poems (their length and verse count open), free acrostics and start texts."""
    rng = random.Random(repr(sampling))
    chars = characters(tiny.table)
    for trial in range(12):
        keywords = draw_keywords(rng, chars, rng.choice([1, 2, 3]))
        acrostic = "".join(rng.sample(chars, 3)) if trial % 3 == 1 else ""
        starts = [rng.choice(chars)] if trial % 3 == 2 else [""]
        max_len = rng.choice([40, 128])
        fields = dict(acrostic=acrostic, keywords=keywords, max_len=max_len, **sampling)
        poem = write(tiny, starts[0], rng.randrange(2**31), **fields)
        assert_covers(poem, keywords)
        lines = verses(poem.text)
        assert poem.text[-1] in "。？！" and len(poem.text) <= max_len
        assert len({len(line) for line in lines}) == 1, poem.text  # one verse length
        if acrostic:
            assert [line[0] for line in lines] == list(acrostic)
        if starts[0]:
            assert poem.text.startswith(starts[0])


def test_a_long_keyword_sets_a_free_poems_verses_long_enough(tiny):
    word = "".join(characters(tiny.table)[10:17])  # 7 characters
    poems = tiny.write(PoemRequest.of(keywords=[word], rhyme=False, n=6, seed=0))
    assert len(poems) == 6
    for poem in poems:
        assert_covers(poem, [word])
        assert all(len(line) >= 8 for line in verses(poem.text))  # 7 and a mark


def test_keywords_in_the_start_text_or_with_an_acrostic_head(tiny):
    chars = characters(tiny.table)
    # already written by the start text: covered, and nothing else is forced
    start = chars[3] + chars[4]
    for seed in range(4):
        poem = write(tiny, start, seed, form="七绝", tones=False, keywords=[start, chars[5]])
        assert poem.text.startswith(start)
        assert_covers(poem, [start, chars[5]])
    # a keyword that begins with a head may stand at the head of that line; one that holds the
    # head elsewhere goes where it fits
    heads = "".join(chars[20:24])
    keywords = [heads[2] + chars[30], chars[31] + heads[0]]
    fields = dict(form="五绝", acrostic=heads, tones=False, keywords=keywords, beam=2)
    cons = PoemRequest.of(**fields).constraints()
    for seed in range(4):
        poem = write(tiny, "", seed, **fields)
        assert_covers(poem, keywords)
        assert_form_rules(poem, parse_form("五绝"), cons)


def test_a_keyword_that_cannot_meet_the_tones_overrides_them_and_says_so(tiny):
    """Five characters read only 仄 fit no line of a 五绝's 平仄: the keyword is written anyway,
    over the tones, and the poem records it."""
    oblique = [t for t in characters(tiny.table) if all(g.tone != PING for g in groups_of(t))]
    word = "".join(oblique[:5])
    poem = write(tiny, "", 1, form="五绝", tones=True, keywords=[word])
    assert_covers(poem, [word])
    assert any("over tones" in b for b in poem.backoffs), poem.backoffs


def test_the_repetition_penalty_spares_a_keyword_and_it_gets_the_bonus(tiny):
    """Where a keyword may begin, its character pays no penalty and gains the bonus, less log R
    for R places left before its deadline; elsewhere the penalties stand."""
    table = tiny.table
    chars = characters(table)
    cons = Constraints(parse_form("七绝"), rhyme=True, keywords=[chars[2]])
    rules = Rules(table, cons, [[]], 128)
    rules.allowed()
    penalty = np.full((1, len(table)), 3.0, dtype=np.float32)
    here, bonus = rules.keyword_terms(penalty)
    token = table.index[chars[2]]
    # its latest place: line 4 (a 七绝's one keyword goes to its last line at the latest),
    # character 6 (the 7th is kept for the rhyme): 27 places from the first
    assert here[0, token] == 0 and bonus[0, token] == pytest.approx(KEYWORD_BONUS - math.log(27))
    assert (np.delete(here[0], token) == 3).all() and (np.delete(bonus[0], token) == 0).all()
    assert (penalty == 3).all()  # the penalties themselves are left alone
    plain = Rules(table, Constraints(parse_form("七绝")), [[]], 128)
    assert plain.keyword_terms(penalty) == (penalty, 0.0)


def test_keywords_are_split_cleaned_and_checked():
    assert split_keywords("春 雨,归、明月，山") == ["春", "雨", "归", "明月", "山"]
    assert split_keywords(["春 雨", "归"]) == ["春", "雨", "归"]
    # repeats, and one inside another (writing 春风 writes 春), are dropped
    assert clean_keywords(["春", "春风", "雨", "雨"]) == ("春风", "雨")
    for empty in ["", " ", "，、", ["春", ""]]:  # a slip, refused with one sentence
        with pytest.raises(KeywordError, match="a keyword is empty"):
            split_keywords(empty)
    assert Constraints(keywords=["春", "雨"]).keywords == ("春", "雨")  # a tuple: hashable
    hash(Constraints(keywords=["春"]))
    for bad, words in [
        (["春。"], "Chinese characters only"),
        (["{0}"], "'{0}' must be Chinese characters only"),  # braces are text, not a placeholder
        (["一二三四五六七八九十百千万"], "a verse holds 12"),
        (list("春夏秋冬风花雪"), "at most 6 keywords"),
    ]:
        with pytest.raises(KeywordError, match=words):
            clean_keywords(bad)
    with pytest.raises(ValueError, match="more than a line of a 五绝"):
        Constraints(parse_form("五绝"), keywords=["春风秋月夜雨"])


INFEASIBLE = [
    # (options, the option the message names first, words of the message)
    (
        ["--form", "五绝", "--keywords", "明月照高楼上"],
        "--keywords",
        "more than a line of a 五绝 (5)",
    ),
    (
        ["--form", "五绝", "--keywords", "春风秋月夜 雨花开山高 水长天地久 日月星辰光"],
        "--keywords",
        "more than the 18 places",
    ),
    (
        ["--form", "五绝", "--keywords", "春风秋 月夜雨 花开山 水长天 日月星"],
        "--keywords",
        "5 keywords need a line each",
    ),
    (
        ["--form", "五绝", "--acrostic", "山水花鸟", "--keywords", "明月清风夜"],
        "--keywords",
        "the acrostic fixes",
    ),
    (["--form", "五绝", "--keywords", "春。"], "--keywords", "Chinese characters only"),
    (["--form", "五绝", "--keywords", "龘"], "--keywords", "does not know the character"),
    (["--form", "五绝", "--keywords", "a"], "--keywords", "'a' must be Chinese characters only"),
    (["--keywords", "一二三四五六七八九十百千万"], "--keywords", "a verse holds 12"),
    (["--keywords", "春 雨", "--keywords", ""], "--keywords", "a keyword is empty"),
    (["--keywords", " 、"], "--keywords", "a keyword is empty"),
    (
        ["--max-len", "12", "--keywords", "一二三 四五六 七八九"],
        "--max-len",
        "at most 12 characters; give at least --max-len 14",
    ),
    (  # the line is short because --max-len is: it binds, not the keyword
        ["--max-len", "8", "--keywords", "春风明月夜"],
        "--max-len",
        "'春风明月夜' has 5 characters, but --max-len 8 leaves room for lines of 3; give at "
        "least --max-len 12",
    ),
    (
        ["--start", "月", "--max-len", "12", "--keywords", "春风明月夜"],
        "--max-len",
        "the start text fixes characters and a rhyming line keeps its last for the rhyme; give "
        "at least --max-len 14",  # with 月 first, the keyword needs the second line, of 6
    ),
]


@pytest.mark.parametrize("args, option, words", INFEASIBLE)
def test_keywords_that_cannot_fit_are_one_sentence_and_exit_2(tiny_run, args, option, words):
    """Each message reads as every usage error does: after the option at fault."""
    result = CliRunner().invoke(generate_command, [*args, "--model", str(tiny_run / "best.pt")])
    assert result.exit_code == 2, result.output
    message = result.output.strip().splitlines()[-1]
    assert message.startswith(f"Error: Invalid value for '{option}': "), result.output
    assert "Traceback" not in result.output and words in message, result.output


def test_the_least_max_len_a_keyword_error_advises_is_the_least_that_works(tiny_run):
    model = ["--model", str(tiny_run / "best.pt"), "--seed", "1"]
    args = ["--start", "月", "--keywords", "春风明月夜", *model]
    assert CliRunner().invoke(generate_command, [*args, "--max-len", "13"]).exit_code == 2
    result = CliRunner().invoke(generate_command, [*args, "--max-len", "14"])
    assert result.exit_code == 0 and "春风明月夜" in result.output, result.output


def test_the_cli_takes_keywords_quoted_or_repeated(tiny_run):
    model = str(tiny_run / "best.pt")
    for args in (["--keywords", "春 雨、归"], ["--keywords", "春", "--keywords", "雨,归"]):
        result = CliRunner().invoke(
            generate_command, ["--form", "七绝", "-n", "3", *args, "--model", model]
        )
        assert result.exit_code == 0, result.output
        for poem in result.output.strip().split("\n\n"):
            assert all(word in poem for word in "春雨归"), poem


def test_check_keywords_is_the_rule_generate_applies(tiny):
    table = tiny.table
    cons = Constraints(parse_form("五绝"), acrostic="山水花鸟", keywords=["明月清风夜"])
    with pytest.raises(KeywordError, match="fits no line"):
        check_keywords(table, cons, [""], 128)
    fields = dict(form="五绝", acrostic="山水花鸟", keywords=["明月清风夜"], rhyme=False)
    with pytest.raises(KeywordError, match="fits no line"):
        tiny.write(PoemRequest.of(**fields, tones=False, seed=0))
    with pytest.raises(KeywordError, match="fits no line"):  # past the request's own check
        tiny.write_rows(PoemRequest.of(**fields, tones=False, max_len=128), [""], [0])
    check_keywords(table, Constraints(parse_form("五绝"), keywords=["明月"]), ["", "山"], 128)
