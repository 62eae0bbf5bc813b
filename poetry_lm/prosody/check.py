"""格律 of any poem: the tone (平仄) of each character, the rhyme group of each rhyme, the form,
and each fault named by its standard term, as 搜韵's 格律检测 reports them.

Rules (those of any textbook of 近体诗, e.g. 王力《诗词格律》):

- **Form.** 4 or 8 lines, all of 5 or 7 characters, rhyming in a level (平) group of the 平水韵:
  五绝, 七绝, 五律, 七律. Anything else, an oblique (仄) rhyme included, is 古体 (free): its tones
  and rhymes are reported, and of its faults only 重韵 is judged.
- **Rhyme.** The even lines end in one group, the group most of them share; the first line
  rhymes too when its last character is in it (首句入韵). These are the rhyme positions of any
  poem, 古体 included (a 古体 that changes rhyme keeps the group most even lines share). 出韵: an
  even line's last character outside the group (regulated poems only). 重韵: a character used a
  second time at a rhyme position.
- **粘对.** A line's key is the tone of its 2nd character (of its 4th, reversed, where the 2nd
  may be read either way; of its 6th where both may). 失对: the two lines of a couplet share a
  key. 失粘: a couplet's first line differs from the line before it. Either fault is placed at
  the character that set the second line's key, and names the characters that set both.
- **失替** (the alternation inside a verse broken). 王力《诗词格律》 states the rule, 平仄在本句中
  是交替的, beside 对 and 粘, but names no fault for its breach: this checker names it 失替, after
  替 (alternation), as 失对 and 失粘 are named after 对 and 粘. The 2nd and 4th characters differ in
  tone (二四不同), and in 七言 the 2nd and 6th agree (二六同), so the 4th and 6th differ. The
  fault is placed at the first of the 2nd, 4th, 6th characters whose tone no reading can square
  with an earlier one's, and names both. The one licensed exception (王力's 特定格式): a verse
  that does not rhyme may end 平平仄平仄 (仄仄平平仄平仄 in 七言, 羌笛何须怨杨柳), its last
  inner character 平 like the one before.
- **孤平.** In a line that ends 平 with its 4th-from-last character 仄 (the 平平仄仄平 pattern,
  counted over the last five characters), at most one other character may be read 平.
- **三平尾 / 三仄尾.** The last three characters of a line all 平, or all 仄, each by the reading
  real poems give it there (空 inside a line is heard 平, 不 仄: 黄鹤楼's 空悠悠 and 不复返).
- **僻读** (a rare reading). A regulated poem's rhyme or tone that rests on a reading real
  poems (almost) never give the character at such a place (``prosody/heard.py``, under 5% of
  its uses there): 居 rhyming in 四支; 行 ending a line that does not rhyme, which every reader
  hears 平; a verse that alternates (失替) only by such a reading of its 2nd, 4th or 6th.

A character the table reads both ways counts as either tone, and is a fault only as 僻读; a
character it lacks is unknown and never a fault either. Each character's reading is the group(s)
of :mod:`poetry_lm.prosody.rhyme` that give it the tone its place asks for.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from poetry_lm.prosody.heard import END, INNER, heard_groups, heard_tones
from poetry_lm.prosody.rhyme import PING, ZE, groups_of, tones_of
from poetry_lm.text.corpus import is_ideograph, to_simplified
from poetry_lm.text.normalise import read_poem

EITHER, UNKNOWN = "either", "unknown"
FORM_NAMES = {(4, 5): "五绝", (4, 7): "七绝", (8, 5): "五律", (8, 7): "七律"}
FREE = "古体"
FAULT_TERMS = ("失粘", "失对", "失替", "出韵", "重韵", "孤平", "三平尾", "三仄尾", "僻读")


@dataclass
class CharCheck:
    char: str
    line: int  # 1-based
    position: int  # 1-based, within the line
    tone: str  # 平, 仄, either or unknown
    reading: list[str]  # the rhyme group(s) that give the tone used here ([] if unknown)
    rhyme: str | None = None  # the rhyme group, for a rhyming character


@dataclass
class Fault:
    term: str  # one of FAULT_TERMS
    line: int  # 1-based
    position: int  # 1-based character within the line
    message: str


@dataclass
class PoemCheck:
    text: str  # the poem in simplified script, its verses joined by ，/。
    lines: list[str]  # the verses, without marks
    form: str  # 五绝 七绝 五律 七律, or 古体 (not regulated)
    regulated: bool
    rhyme_group: str | None  # the group the rhymes share
    chars: list[CharCheck] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.faults

    def to_dict(self) -> dict:
        """Plain JSON-ready data: every field, and ``clean``."""
        return {**asdict(self), "clean": self.clean}


def split_verses(text: str) -> list[str]:
    """A poem in either script → its verses (ideographs only): any other character (marks,
    spaces, line breaks, quotes) ends a verse."""
    verses, current = [], ""
    for ch in to_simplified(text):
        if is_ideograph(ch):
            current += ch
        elif current:
            verses.append(current)
            current = ""
    return verses + [current] if current else verses


def tone_class(ch: str) -> str:
    tones = {g.tone for g in groups_of(ch)}
    return UNKNOWN if not tones else EITHER if len(tones) == 2 else tones.pop()


def can_be(ch: str, tone: str) -> bool:
    return any(g.tone == tone for g in groups_of(ch))


def is_only(ch: str, tone: str) -> bool:
    return tone_class(ch) == tone


def opposite(tone: str) -> str:
    return ZE if tone == PING else PING


def choose_group(ends: list[str]):
    """The group that most of the even lines' last characters share: level groups win ties."""
    counts: dict = {}
    for ch in dict.fromkeys(ends):  # a repeated rhyme counts once
        for g in groups_of(ch):
            counts[g] = counts.get(g, 0) + 1
    if not counts:
        return None
    return max(counts, key=lambda g: (counts[g], g.tone == PING))


def line_key(line: str) -> tuple[str, int] | None:
    """(key, 0-based place of the character that sets it): the tone of the 2nd character, or
    the reverse of the 4th's where the 2nd is either (or unknown), or the 6th's; None when no
    such character has one tone."""
    for pos, flip in ((1, False), (3, True), (5, False)):
        if pos < len(line) and tone_class(line[pos]) in (PING, ZE):
            tone = tone_class(line[pos])
            return (opposite(tone) if flip else tone), pos
    return None


def check_poem(text: str) -> PoemCheck:
    """Check a poem (either script; verses split at any mark, space or line break). A 古体 is
    judged for 重韵 only, at the rhyme positions of any poem: the last characters of the even
    verses, and of the first where it is in the rhyme group.

    Raises PoemTextError (a ValueError) for text that is not poem text, by the one rule of every
    command (``read_poem``), and ValueError when the text holds no Chinese character.
    """
    read_poem(text)  # what is not a character or a mark is named, as everywhere
    lines = split_verses(text)
    if not lines:
        raise ValueError("the poem has no Chinese characters")
    group = choose_group([v[-1] for v in lines[1::2]])
    result = poem_form(lines, group)
    rhymes = check_rhymes(lines, group, result.regulated, result.faults)
    wanted: dict[tuple[int, int], str] = {}
    if result.regulated:
        keys = [line_key(v) for v in lines]
        wanted = wanted_tones(lines, keys, rhymes)
        check_tones(lines, keys, rhymes, result.faults)
        check_heard(lines, wanted, rhymes, result.faults)
        check_alternation(lines, rhymes, result.faults)
    result.faults.sort(key=lambda f: (f.line, f.position, FAULT_TERMS.index(f.term)))
    result.chars = char_checks(lines, wanted, rhymes)
    return result


def poem_form(lines: list[str], group) -> PoemCheck:
    """The check of a poem's verses rhyming in ``group``: its text, form and rhyme group, its
    characters and faults not judged yet."""
    marks = ["，" if i % 2 == 0 else "。" for i in range(len(lines))]
    shape = (len(lines), len(lines[0])) if len({len(v) for v in lines}) == 1 else None
    regulated = shape in FORM_NAMES and group is not None and group.tone == PING
    return PoemCheck(
        text="".join(v + m for v, m in zip(lines, marks)),
        lines=lines,
        form=FORM_NAMES[shape] if regulated else FREE,
        regulated=regulated,
        rhyme_group=group.name if group else None,
    )


def check_rhymes(
    lines: list[str], group, regulated: bool, faults: list[Fault]
) -> dict[int, str | None]:
    """The rhyme positions (0-based lines) → the group of their rhyme (None: out of it): the
    even lines, and the first where its last character is in the group. Appends the faults of
    出韵 (a regulated poem's) and 重韵 (any poem's)."""
    rhyme_lines = [i for i in range(len(lines)) if i % 2 == 1]
    if group and len(lines) > 1 and lines[0][-1] in group.chars:
        rhyme_lines.insert(0, 0)
    rhymes: dict[int, str | None] = {}
    seen: dict[str, int] = {}
    for i in rhyme_lines:
        ch, pos = lines[i][-1], len(lines[i])
        rhymes[i] = group.name if group and ch in group.chars else None
        if regulated and rhymes[i] is None:  # a 古体 may change rhyme: no 出韵 there
            found = "/".join(g.name for g in groups_of(ch)) or "no group in the table"
            faults.append(Fault("出韵", i + 1, pos, f"{ch} is in {found}, not {group.name}"))
        if ch in seen:  # in any poem, 古体 included
            faults.append(Fault("重韵", i + 1, pos, f"{ch} already rhymes line {seen[ch] + 1}"))
        seen.setdefault(ch, i)
    return rhymes


def wanted_tones(lines: list[str], keys: list, rhymes: dict) -> dict[tuple[int, int], str]:
    """The tone each place of a regulated poem asks for, by (line, column): the template of the
    poem's key, with 粘 and 对, and each line's last character (平 where it rhymes)."""
    wanted: dict[tuple[int, int], str] = {}
    first = next((i for i, k in enumerate(keys) if k), None)
    if first is not None:
        flips = lambda i: i % 4 in (1, 2)  # noqa: E731 — lines 2, 3, 6, 7 reverse line 1's key
        key = keys[first][0]
        base = key if flips(first) == flips(0) else opposite(key)
        for i, v in enumerate(lines):
            key = opposite(base) if flips(i) else base
            for pos in range(1, len(v) - 1, 2):  # the 2nd, 4th, 6th characters
                wanted[i, pos] = key if pos % 4 == 1 else opposite(key)
    for i, v in enumerate(lines):
        wanted[i, len(v) - 1] = PING if i in rhymes else ZE
    return wanted


def check_heard(lines: list[str], wanted: dict, rhymes: dict, faults: list[Fault]) -> None:
    """Append 僻读 (a rare reading) where a regulated poem's rhyme or tone rests on a reading
    real poems (almost) never give the character at such a place (:mod:`poetry_lm.prosody.heard`):
    居 rhyming in 四支, or 行 ending a line that does not rhyme, where every reader hears 平."""
    for i, group in rhymes.items():
        ch = lines[i][-1]
        heard = [g.name for g in heard_groups(ch)]
        if group and group not in heard:
            message = f"{ch} rhymes in {group} only by a reading real poems do not rhyme it in"
            faults.append(Fault("僻读", i + 1, len(lines[i]), f"{message} ({'/'.join(heard)})"))
    for (i, pos), tone in sorted(wanted.items()):
        ch, place = lines[i][pos], END if pos == len(lines[i]) - 1 else INNER
        if tone_class(ch) == EITHER and tone not in heard_tones(ch, place):
            faults.append(rare_reading(ch, tone, place, i, pos))


def rare_reading(ch: str, tone: str, place: str, line: int, pos: int) -> Fault:
    """僻读 of ``ch`` read ``tone`` at 0-based (line, pos), a place of kind ``place``."""
    where = "a line's end" if place == END else "the 2nd, 4th or 6th place"
    message = f"{ch} is {tone} here only by a reading real poems seldom give it at {where}"
    return Fault("僻读", line + 1, pos + 1, message)


BOTH = frozenset((PING, ZE))
ORDINALS = {1: "2nd", 3: "4th", 5: "6th"}


def inner_tones(ch: str, heard: bool) -> frozenset[str]:
    """The tones ``ch`` may take at a 2nd, 4th or 6th place: as real poems hear it there
    (``heard``), else every reading of the table; both for a character the table lacks."""
    return (heard_tones(ch, INNER) if heard else tones_of(ch)) or BOTH


def end_tones(ch: str) -> frozenset[str]:
    """The tones a reader hears in ``ch`` ending a line (both for a character the table lacks)."""
    return heard_tones(ch, END) or BOTH


def alternation_break(verse: str, rhymes_here: bool, heard: bool) -> tuple[int, int] | None:
    """The first two 0-based inner places of ``verse`` whose tones cannot alternate (二四不同,
    二六同: one tone each, alike where they must differ or unlike where they must agree), or
    None. A verse that does not rhyme may end 平平仄平仄 (the 特定格式): its last inner place
    is free."""
    places = [pos for pos in (1, 3, 5) if pos < len(verse) - 1]
    tones = {pos: inner_tones(verse[pos], heard) for pos in places}
    tail = verse[-5:]
    licensed = (
        not rhymes_here
        and len(tail) == 5
        and can_be(tail[0], PING)
        and can_be(tail[2], ZE)
        and can_be(tail[4], ZE)
        and PING in tones[len(verse) - 4]
        and PING in tones[len(verse) - 2]
    )
    if licensed:
        places.pop()
    for b in places:
        for a in (pos for pos in places if pos < b):
            agree = (b - a) % 4 == 0  # the 2nd and 6th agree; the 4th differs from both
            if len(tones[a]) == len(tones[b]) == 1 and (tones[a] == tones[b]) != agree:
                return a, b
    return None


def check_alternation(lines: list[str], rhymes: dict, faults: list[Fault]) -> None:
    """Append 失替 where a verse's 2nd, 4th and 6th characters cannot alternate under any
    reading of the table, placed at the later of the two that break it; and 僻读 where they
    alternate only by a reading real poems seldom give a character there (at that character,
    unless a 僻读 is named there already)."""
    named = {(f.line, f.position) for f in faults if f.term == "僻读"}
    for i, v in enumerate(lines):
        found = alternation_break(v, i in rhymes, heard=False)
        if found:
            a, b = found
            rule = "must agree (二六同)" if (b - a) % 4 == 0 else "must differ (二四不同)"
            (ta,), (tb,) = tones_of(v[a]), tones_of(v[b])
            message = f"{v[a]} {ta} and {v[b]} {tb}: the {ORDINALS[a]} and {ORDINALS[b]} {rule}"
            faults.append(Fault("失替", i + 1, b + 1, message))
        elif found := alternation_break(v, i in rhymes, heard=True):
            pos = next((p for p in found if len(inner_tones(v[p], False)) == 2), found[1])
            (tone,) = BOTH - inner_tones(v[pos], True)
            if (i + 1, pos + 1) not in named:
                faults.append(rare_reading(v[pos], tone, INNER, i, pos))


def char_checks(lines: list[str], wanted: dict, rhymes: dict) -> list[CharCheck]:
    """Each character's tone, and its reading: the rhyme group at a rhyme, else the groups that
    give it the tone its place asks for (all of its groups where none does or none is asked)."""
    out = []
    for i, v in enumerate(lines):
        for pos, ch in enumerate(v):
            groups = groups_of(ch)
            tone = wanted.get((i, pos))
            if i in rhymes and pos == len(v) - 1 and rhymes[i]:
                reading = [rhymes[i]]
            else:
                reading = [g.name for g in groups if tone is None or g.tone == tone]
                reading = reading or [g.name for g in groups]
            rhyme = rhymes.get(i) if pos == len(v) - 1 else None
            out.append(CharCheck(ch, i + 1, pos + 1, tone_class(ch), reading, rhyme))
    return out


def check_tones(lines: list[str], keys: list, rhymes: dict, faults: list[Fault]) -> None:
    """Append the faults of 粘对, 孤平 and the three-tone tails (a regulated poem's lines)."""
    for i in range(1, len(lines)):
        if keys[i - 1] is None or keys[i] is None:
            continue
        (a, pos_a), (b, pos_b) = keys[i - 1], keys[i]
        # name the characters that set the keys: a 2nd character read either way sets none
        mine = f"line {i + 1}'s key {b} (set by {lines[i][pos_b]}, character {pos_b + 1})"
        theirs = f"line {i}'s ({a}, set by {lines[i - 1][pos_a]}, character {pos_a + 1})"
        if i % 2 == 1 and a == b:
            faults.append(Fault("失对", i + 1, pos_b + 1, f"{mine} is {theirs}"))
        if i % 2 == 0 and a != b:
            faults.append(Fault("失粘", i + 1, pos_b + 1, f"{mine} is not {theirs}"))
    for i, v in enumerate(lines):
        n = len(v)
        tail = v[-5:]  # the last five characters: the 五言 core of a 七言 line
        ends_ping = i in rhymes or is_only(v[-1], PING)
        if ends_ping and is_only(tail[3], ZE):
            level = sum(can_be(ch, PING) for ch in tail[:4])
            if level <= 1:
                pos = n - 4  # 1-based place of the tail's first character, the one owed a 平
                faults.append(
                    Fault("孤平", i + 1, pos, f"{v}: one 平 besides the rhyme in {tail[:4]}")
                )
        # the tails by the readings heard there: 不 inside a line is 仄, 空 平 (黄鹤楼)
        last3, heard = v[-3:], [inner_tones(ch, heard=True) for ch in v[-3:-1]]
        if ends_ping and heard == [{PING}] * 2 and can_be(v[-1], PING):
            faults.append(Fault("三平尾", i + 1, n - 2, f"{last3}: the last three all 平"))
        if not ends_ping and heard == [{ZE}] * 2 and end_tones(v[-1]) == {ZE}:
            faults.append(Fault("三仄尾", i + 1, n - 2, f"{last3}: the last three all 仄"))


TONE_MARKS = {PING: "平", ZE: "仄", EITHER: "◎", UNKNOWN: "？"}


def format_check(check: PoemCheck) -> str:
    """A report for people: the form and rhyme, each verse with its tones (◎ either, ？ unknown)
    and rhyme group, then the faults, or 'no faults'."""
    head = check.form + ("" if check.regulated else " (not regulated)")
    if check.rhyme_group:
        head += f", rhyme {check.rhyme_group}"
    out = [head]
    for i, verse in enumerate(check.lines, 1):
        chars = [c for c in check.chars if c.line == i]
        tones = "".join(TONE_MARKS[c.tone] for c in chars)
        rhyme = chars[-1].rhyme
        out.append(f"{verse}  {tones}" + (f"  {chars[-1].char} {rhyme}" if rhyme else ""))
    out += [f"{f.term}: line {f.line} character {f.position}: {f.message}" for f in check.faults]
    if check.regulated and not check.faults:
        out.append("no faults")  # a 古体 is judged for 重韵 only: it is not called faultless
    return "\n".join(out)
