"""Constrained decoding: forms, acrostics, rhyme, tones, no-repeat, best-of, beam, prime, scripts,
score.

Every generated poem is checked by ``check_poem`` below, written from the textbook rules and
the rhyme table file, without the generator's own bookkeeping (``poetry_lm.prosody.forms``).
"""

import json
import random

import pytest
import torch
from click.testing import CliRunner

from poetry_lm.cli.score import score_command
from poetry_lm.cli.write import generate_command
from poetry_lm.decoding.loop import candidates, first_line_rhymes
from poetry_lm.evaluation.perplexity import perplexity
from poetry_lm.model.stepper import Stepper
from poetry_lm.prosody.forms import Constraints, Rules, parse_form
from poetry_lm.prosody.heard import END, INNER, WRITE_END_SHARE, heard_tones
from poetry_lm.prosody.heard import SHARE as HEARD_SHARE
from poetry_lm.prosody.masks import PING_QI, TONE_RULES, ZE_QI, Choice, ToneKeys, token_masks
from poetry_lm.prosody.rhyme import PING, TABLE_PATH, ZE
from poetry_lm.request import PoemRequest
from poetry_lm.text.corpus import is_ideograph, to_traditional
from poetry_lm.text.vocab import SPECIALS, CharTable
from poetry_lm.writing.writer import Writer, poem_seeds

SHAPES = {"五绝": (4, 5), "七绝": (4, 7), "五律": (8, 5), "七律": (8, 7)}
# 五言绝句 tonal patterns as textbooks print them, one per key (the first line's rhyming variant
# apart)
PATTERNS_5 = [
    ["平平平仄仄", "仄仄仄平平", "仄仄平平仄", "平平仄仄平"],
    ["仄仄平平仄", "平平仄仄平", "平平平仄仄", "仄仄仄平平"],
]
RHYMING_FIRST_5 = ["平平仄仄平", "仄仄仄平平"]


def read_table():
    """Rhyme groups {name: chars} of the level tone and each character's tones, from the table
    file."""
    groups, tones = {}, {}
    for row in TABLE_PATH.read_text(encoding="utf-8").splitlines():
        if row.startswith("#"):
            continue
        name, tone, chars = row.split("\t")
        if tone == "平":
            groups[name] = set(chars)
        for ch in chars:
            tones.setdefault(ch, set()).add(tone)
    return groups, tones


LEVEL_GROUPS, TONES = read_table()


def expected_patterns(form, rhyme_first):
    """The two admissible tone patterns (one string per line) of a form."""
    lines, chars = SHAPES[form]
    patterns = []
    for key, quatrain in enumerate(PATTERNS_5):
        five = [RHYMING_FIRST_5[key] if rhyme_first else quatrain[0], *quatrain[1:]]
        five += quatrain if lines == 8 else []  # a 律诗's second half repeats the quatrain
        patterns.append(
            [("仄仄" if p[0] == "平" else "平平") + p if chars == 7 else p for p in five]
        )
    return patterns


def check_poem(
    text, form, acrostic="", rhyme=True, rhyme_first=False, tones=False, no_repeat=False
):
    lines_n, chars = SHAPES[form]
    lines = [text[i : i + chars + 1] for i in range(0, len(text), chars + 1)]
    assert len(text) == lines_n * (chars + 1) and len(lines) == lines_n, text
    for i, line in enumerate(lines):
        assert all(is_ideograph(ch) for ch in line[:-1]), text
        assert line[-1] == ("，" if i % 2 == 0 else "。"), text
        if acrostic:
            assert line[0] == acrostic[i], text
    if rhyme:
        ends = [line[-2] for i, line in enumerate(lines) if i % 2 == 1 or (i == 0 and rhyme_first)]
        assert any(set(ends) <= chars_ for chars_ in LEVEL_GROUPS.values()), (text, ends)
        assert len(set(ends)) == len(ends), (text, ends)  # no 重韵
    if tones:
        checked = [p - 1 for p in (2, 4, 6, chars) if p <= chars]
        assert any(
            all(
                pattern[i][k] in TONES.get(line[k], ())
                for i, line in enumerate(lines)
                for k in checked
            )
            for pattern in expected_patterns(form, rhyme_first)
        ), text
    if no_repeat:
        body = [ch for ch in text if ch not in "，。"]
        assert len(body) == len(set(body)), text


@pytest.fixture(scope="module")
def tiny(tiny_run):
    return Writer(tiny_run / "best.pt")


def invoke(command, *args):
    return CliRunner().invoke(command, [str(a) for a in args])


@pytest.mark.parametrize("heard", [True, False], ids=["heard", "table"])
@pytest.mark.parametrize("form", list(SHAPES))
def test_every_poem_obeys_form_acrostic_rhyme_and_tones(tiny, form, heard):
    """4 forms × 4 settings × 13 poems = 208 poems, each with its own random seed stream, with
    rhymes and tones as heard (the default) and by every reading of the table (``heard=False``);
    a first line the setting leaves open rhymes as its poem's seed drew it."""
    table = tiny.table
    rng = random.Random(form)
    ideographs = [tok for tok in table.tokens if tok not in SPECIALS and is_ideograph(tok)]
    lines = SHAPES[form][0]
    settings = [
        dict(),
        dict(tones=True, rhyme_first=True, no_repeat=True),
        dict(acrostic="".join(rng.sample(ideographs, lines)), tones=True),
        dict(acrostic="".join(rng.sample(ideographs, lines)), no_repeat=True, rhyme_first=True),
    ]
    decoders = [dict(temperature=1.0), dict(best_of=3, top_p=0.9), dict(beam=2), dict(top_k=50)]
    for setting, sampling in zip(settings, decoders):
        fields = dict(form=form, heard=heard, n=13, seed=rng.randrange(2**31), **sampling)
        request = PoemRequest.of(**fields, **{"tones": False, **setting})
        drawn = first_line_rhymes(request, poem_seeds(request.seed, 13))
        for poem, first in zip(tiny.write(request), drawn):
            check_poem(poem.text, form, **{"rhyme_first": first, **setting})
            assert not poem.backoffs and len(poem.logprobs) == len(poem.text)
            second_end = poem.text[2 * SHAPES[form][1]]  # the last character of line 2
            assert poem.rhyme and all(second_end in LEVEL_GROUPS[group] for group in poem.rhyme)


@pytest.mark.parametrize("heard", [True, False], ids=["heard", "table"])
def test_reading_only_the_shortlist_before_a_forced_token_changes_no_poem(tiny, heard):
    """Before a forced mark, end or acrostic head the step may skip the clusters (when the token
    is in the shortlist): poems, log-probabilities and scores are those of scoring every token."""
    model, table = tiny.model, tiny.table
    skipped = []

    class Counting(Stepper):
        def __call__(self, tokens, state=None, only_shortlist=False, context=False):
            skipped.append(only_shortlist)
            return super().__call__(tokens, state, only_shortlist, context)

    class EveryCluster(Stepper):
        def __call__(self, tokens, state=None, only_shortlist=False, context=False):
            return super().__call__(tokens, state, context=context)

    ideographs = [tok for tok in table.tokens if tok not in SPECIALS and is_ideograph(tok)]
    # frequent and rare: in and past the shortlist
    heads = ideographs[0] + ideographs[-1] + ideographs[1] + ideographs[-2]
    for sampling in (dict(best_of=2), dict(beam=3)):
        for fields, starts in [
            (dict(form="七绝", tones=False), ["", ideographs[5]]),
            (dict(form="五绝", acrostic=heads, rhyme=False, tones=True), [""]),
        ]:
            request = PoemRequest.of(heard=heard, **fields, **sampling).check(table)
            seeds = poem_seeds(0, len(starts))
            fast, slow = (
                candidates(step(model, int8=False), table, request, starts, seeds)
                for step in (Counting, EveryCluster)
            )
            assert fast == slow
    assert Stepper(model).shortlist < len(table) and 0 < sum(skipped) < len(skipped)


@pytest.mark.parametrize("best_of", [1, 3])
def test_a_start_text_begins_the_poem_and_leaves_the_shared_masks_alone(tiny, best_of):
    table = tiny.table
    masks = token_masks(table)
    before = [masks.ideographs.clone(), masks.marks.clone(), masks.end.clone()]
    first, second = [tok for tok in table.tokens if tok not in SPECIALS and is_ideograph(tok)][:2]
    for seed in range(3):
        (poem,) = tiny.write(
            PoemRequest.of(
                starts=[first + second], form="五绝", tones=False, best_of=best_of, seed=seed
            )
        )
        check_poem(poem.text, "五绝")
        assert poem.text.startswith(first + second)
    assert all(
        torch.equal(now, then)
        for now, then in zip([masks.ideographs, masks.marks, masks.end], before)
    )


def test_free_acrostic_and_no_rhyme(tiny):
    for seed in range(4):
        (poem,) = tiny.write(PoemRequest.of(acrostic="春夏秋冬山", rhyme=False, seed=seed))
        assert [v[0] for v in poem.lines] == list("春夏秋冬山"), poem.text
        assert all(v[-1] in "，。？！；" for v in poem.lines), poem.text
    poems = tiny.write(PoemRequest.of(form="wulv", rhyme=False, tones=False, n=5, seed=1))
    for poem in poems:
        check_poem(poem.text, "五律", rhyme=False)
        assert poem.rhyme == []


@pytest.mark.parametrize("rhyme_first", [False, True])
def test_best_of_keeps_the_best_candidate_and_plain_beam_1_is_greedy(tiny, rhyme_first):
    """best-of K's candidates for seed s are the poems of seeds s … s + K - 1 where the first
    line's rhyme is given: left open, each poem draws it from its own seed, and the candidates
    all take their poem's draw."""
    fields = dict(form="七绝", tones=False, rhyme_first=rhyme_first)
    samples = tiny.write_rows(tiny.check(PoemRequest.of(**fields)), [""] * 4, [5, 6, 7, 8])
    request = tiny.check(PoemRequest.of(**fields, best_of=4))
    (best_poem,) = tiny.write_rows(request, [""], [5])
    assert best_poem.text == max(samples, key=lambda p: p.score).text
    (greedy,) = tiny.write(PoemRequest.of(form="七绝", tones=False, greedy=True, seed=0))
    # no Gumbel noise: the plain beam search (the same seed: the same first-line draw)
    plain_beam = PoemRequest.of(form="七绝", tones=False, beam=1, greedy=True, seed=0)
    assert tiny.write(plain_beam)[0].text == greedy.text


def test_back_off_drops_tones_then_rhyme_and_says_where():
    # only level-tone characters of one group
    table = CharTable([*SPECIALS, "，", "。", *"东同铜桐童"])
    rules = Rules(table, Constraints(parse_form("五绝"), rhyme=True, tones=True), [[]], 128)
    while not rules.done.all():
        rules.advance(rules.allowed().float().argmax(1))
    assert rules.backoffs[0] and all(event.endswith("dropped tones") for event in rules.backoffs[0])
    assert (
        "line 1 character 2: no candidate, dropped tones" in rules.backoffs[0]
        or "line 1 character 4: no candidate, dropped tones" in rules.backoffs[0]
    )
    oblique = CharTable([*SPECIALS, "，", "。", *"鸟草月"])  # nothing to rhyme with at all
    rules = Rules(oblique, Constraints(parse_form("五绝"), rhyme=True, tones=True), [[]], 128)
    while not rules.done.all():
        rules.advance(rules.allowed().float().argmax(1))
    assert "line 2 character 5: no candidate, dropped tones" in rules.backoffs[0]
    assert (
        rules.backoffs[0][
            rules.backoffs[0].index("line 2 character 5: no candidate, dropped tones") + 1
        ]
        == "line 2 character 5: no candidate, dropped rhyme"
    )


def heard_fits(table: CharTable, rule) -> torch.Tensor:
    """(2, V) the tones a reader hears each token in at the places of a tone rule (a line's end
    for (t, t), else its 2nd, 4th, 6th characters), from prosody/heard.py, indexed by ``rule``:
    what Rules gives a Choice there with ``heard`` on."""
    place, share = (END, WRITE_END_SHARE) if rule[0] == rule[1] else (INNER, HEARD_SHARE)
    heard = [heard_tones(tok, place, share) for tok in table.tokens]
    return torch.tensor([[float(t in h) for h in heard] for t in (PING, ZE)])[list(rule)]


@pytest.mark.parametrize("heard", [True, False], ids=["heard", "table"])
def test_tone_keys_mask_and_settle_as_the_choice_they_replace(heard):
    """ToneKeys' masks, made once per vocabulary, and its settling give what a Choice of the two
    keys gives: for every tone rule, every set of open keys, and characters of each tone, as
    heard and by the table."""
    # 平 only, 仄 only, either (看 思), neither (the marks)
    table = CharTable([*SPECIALS, "，", "。", *"东风明月一丂看思"])
    masks, V = token_masks(table, heard), len(table)
    tokens = torch.arange(V)  # poem v of a batch of V writes token v
    for rule in TONE_RULES:
        # (2, V): what Rules gave a Choice at this rule
        fits = heard_fits(table, rule) if heard else masks.tone_fits[list(rule)]
        for open_keys in ([True, False], [False, True], [True, True]):
            choice = Choice(V, torch.tensor(open_keys))
            keys = ToneKeys(V, masks.tone_allowed, masks.tone_keys)
            keys.code[:] = PING_QI * open_keys[0] + ZE_QI * open_keys[1]
            assert torch.equal(keys.open, choice.open)
            assert torch.equal(keys.allows(rule), choice.allows(fits)), (rule, open_keys)
            choice.settle(fits, tokens, torch.ones(V, dtype=torch.bool))
            keys.settle(rule, tokens)
            assert torch.equal(keys.open, choice.open), (rule, open_keys)
    both = ToneKeys(1, masks.tone_allowed, masks.tone_keys)
    both.settle((0, 1), torch.tensor([table.index["东"]]))  # 平 where 平起 wants 平: 平起
    assert both.open.tolist() == [[True, False]]


def test_cli_json_traditional_prime_and_verbose(tiny_run):
    model = tiny_run / "best.pt"
    args = ["--model", model, "--form", "wujue", "--acrostic", "東南西北", "--seed", 3]
    plain = invoke(generate_command, *args, "--format", "json")
    assert plain.exit_code == 0, plain.output
    record = json.loads(plain.output)
    assert set(record) == {
        "title",
        "text",
        "lines",
        "form",
        "rhyme",
        "score",
        "logprobs",
        "truncated",
    }
    assert record["form"] == "五绝" and len(record["logprobs"]) == len(record["text"]) == 24
    assert "".join(record["lines"]) == record["text"] and [v[0] for v in record["lines"]] == list(
        "东南西北"
    )
    assert record["rhyme"] and all(lp <= 0 for lp in record["logprobs"])
    check_poem(record["text"], "五绝", acrostic="东南西北")
    traditional = invoke(generate_command, *args, "--script", "traditional")
    assert traditional.output.strip().split("\n") == [to_traditional(v) for v in record["lines"]]
    assert [v[0] for v in traditional.output.split("\n")[:4]] == list("東南西北")
    primed = invoke(generate_command, *args, "--prime", "白日依山尽。")
    assert (
        primed.exit_code == 0
        and primed.output != traditional.output
        and "白日依山尽" not in primed.output
    )
    verbose = invoke(
        generate_command,
        "--model",
        model,
        "--form",
        "五绝",
        "--acrostic",
        "春春春春",
        "--no-repeat",
        "--seed",
        1,
        "-v",
    )
    assert verbose.exit_code == 0 and "poem 1: mean log-probability" in verbose.output
    assert "line 2 character 1: no candidate, dropped no-repeat" in verbose.output


def test_cli_errors(tiny_run):
    model = tiny_run / "best.pt"
    # 龘 is a Chinese character, so the acrostic is poem text, but not one the model knows
    unknown = invoke(generate_command, "--model", model, "--form", "五绝", "--acrostic", "春龘秋冬")
    assert unknown.exit_code == 2 and "does not know the character '龘'" in unknown.output
    for args, message, code in [
        # options that do not go together: usage errors
        (["--form", "五绝", "--acrostic", "春夏"], "needs 4 characters", 2),
        (["--tones"], "--tones needs a form", 2),
        (["--rhyme-first"], "--rhyme-first needs a form", 2),
        (["--form", "五绝", "--start", "春，"], "'--start': the start text '春，' does not fit", 2),
        # a sentence that begins with its option names it once, the switch as it was given
        (["春", "--acrostic", "春夏"], "Error: --acrostic sets the first character", 2),
        (["--no-rhyme-first"], "Error: --no-rhyme-first needs a form (--form)", 2),
        (["--form", "五绝", "--no-rhyme", "--rhyme-first"], "--rhyme-first needs --rhyme", 2),
    ]:
        result = invoke(generate_command, "--model", model, *args)
        assert result.exit_code == code and message in result.output, result.output
    assert invoke(generate_command, "--model", model, "--form", "sonnet").exit_code == 2
    assert invoke(generate_command, "--model", model, "--beam", 2, "--best-of", 2).exit_code == 2


def test_tones_are_on_by_default_for_a_form_only():
    qijue = parse_form("七绝")
    default = Constraints.from_options(form=qijue)
    assert default.tones and default.rhyme  # what generate and the API write unless told
    assert not Constraints.from_options(form=qijue, tones=False).tones  # --no-tones
    assert not Constraints.from_options(form=qijue, rhyme=False).rhyme  # --no-rhyme
    free = Constraints.from_options()
    assert not free.tones and free.rhyme  # a free poem has no 平仄 pattern to keep
    assert not Constraints.from_options(tones=False).tones  # --no-tones without a form: harmless
    with pytest.raises(ValueError, match="needs a form"):
        Constraints.from_options(tones=True)


def generated(monkeypatch, model, *args):
    """``generate --format json`` with ``args`` → (its poems' texts, the Constraints it decoded
    with, whether each poem's first line rhymes: as given, else as its seed drew it)."""
    import poetry_lm.writing.writer as writing

    seen = []
    real = writing.candidates  # what the writer decodes each batch with

    def spying(step, table, request, starts, seeds):
        seen.append((request, seeds))
        return real(step, table, request, starts, seeds)

    monkeypatch.setattr(writing, "candidates", spying)
    result = invoke(generate_command, "--model", model, "--format", "json", *args)
    assert result.exit_code == 0, result.output
    request = seen[0][0]
    given = request.constraints().rhyme_first
    drawn = [f for asked, seeds in seen for f in first_line_rhymes(asked, seeds)]
    firsts = drawn if given is None else [given] * len(drawn)
    texts = [json.loads(line)["text"] for line in result.output.splitlines()]
    return texts, request.constraints(), firsts


@pytest.mark.parametrize("form", ["七绝", "五律"])
def test_generate_keeps_the_tones_of_a_form_unless_told_not_to(tiny_run, monkeypatch, form):
    model = tiny_run / "best.pt"
    poems, cons, firsts = generated(monkeypatch, model, "--form", form, "-n", 8, "--seed", 1)
    assert cons.tones and cons.rhyme
    for text, first in zip(poems, firsts):
        check_poem(text, form, tones=True, rhyme_first=first)
    untoned, cons, firsts = generated(
        monkeypatch, model, "--form", form, "--no-tones", "-n", 8, "--seed", 1
    )
    assert not cons.tones and cons.rhyme
    # the tiny model, left to itself, breaks the pattern: the default above is what kept it
    with pytest.raises(AssertionError):
        for text, first in zip(untoned, firsts):
            check_poem(text, form, tones=True, rhyme_first=first)
    _, cons, _ = generated(monkeypatch, model, "-n", 2, "--seed", 1)  # a free poem
    assert not cons.tones
    _, cons, _ = generated(monkeypatch, model, "--no-tones", "-n", 2, "--seed", 1)
    assert not cons.tones


def test_score_reports_surprisal_perplexity_and_the_most_surprising(tiny_run, tiny):
    model, table = tiny.model, tiny.table
    poem = "床前明月光，疑是地上霜。舉頭望明月，低頭思故鄉。"
    result = invoke(score_command, "--model", tiny_run / "best.pt", "--top", 3, poem)
    assert result.exit_code == 0, result.output
    assert (
        "perplexity" in result.output
        and "most surprising" in result.output
        and "<eos>" in result.output
    )
    record = json.loads(
        invoke(score_command, "--model", tiny_run / "best.pt", "--format", "json", poem).output
    )
    simplified = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"
    report = perplexity(model, table, [simplified])
    assert record["text"] == simplified and record["tokens"] == report.tokens == len(simplified) + 1
    assert record["perplexity"] == pytest.approx(report.perplexity, rel=1e-3)
    assert sum(nats for _, nats in record["per_token"]) == pytest.approx(
        record["surprisal"], abs=0.05
    )
    assert record["most_surprising"][0][1] == max(nats for _, nats in record["per_token"])
    assert invoke(score_command, "--model", tiny_run / "best.pt").exit_code == 2


def test_the_lost_character_is_never_written():
    """囗 marks a lost character; older vocabularies (the shipped one) list it as a token."""
    table = CharTable([*SPECIALS, "囗", "月", "，", "。"])
    masks = token_masks(table)
    lost = table.tokens.index("囗")
    assert not masks.ordinary[lost] and not masks.ideographs[lost]
    assert masks.ordinary[table.tokens.index("月")]


def test_a_beam_reorder_between_allowed_and_advance_keeps_each_poems_rhyme_marks():
    """allowed() marks which poems are at a rhyme this step; a beam reorders the poems before
    advance() reads the marks. In a free poem the rows stand at different places, so the marks
    must move with their poems."""
    table = CharTable([*SPECIALS, "，", "。", *"东同铜桐童中空红风月"])
    ids = table.index
    starts = [table.encode("月东风，月月"), table.encode("月风月风月风")]  # rhyme next; mid-verse
    rules = Rules(table, Constraints(rhyme=True), starts, 128)
    for t in range(6):  # write the start texts
        rules.allowed()
        rules.advance(torch.tensor([start[t] for start in starts]))
    mask = rules.allowed()
    assert mask[0, ids["同"]] and not mask[0, ids["风"]]  # poem 0 rhymes: no 风 twice (重韵)
    rules.select(torch.tensor([1, 0]))  # the two poems swap rows
    rules.advance(torch.tensor([ids["月"], ids["同"]]))
    assert rules.state.rhymes_used[1, ids["同"]] and not rules.state.rhymes_used[0, ids["月"]]
    assert rules.state.current[1] == table.encode("月月同")
    assert rules.backoffs == [[], []]
    mask = rules.allowed()  # the mark after poem 0's rhyme (now row 1); row 0 writes on
    assert mask[1, ids["。"]] and mask[0, ids["月"]]
