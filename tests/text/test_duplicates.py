"""The near-duplicate grouping: its rules on constructed poems, and the shipped split."""

from collections import defaultdict

from poetry_lm.text.corpus import load_corpus
from poetry_lm.text.duplicates import (
    UnionFind,
    differences,
    near_duplicate_groups,
    strip_punctuation,
    verbatim_verse_rate,
)
from poetry_lm.text.vocab import LOST_CHAR, CharTable, build_vocabulary, vocabulary_to_list

BASE = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"


def together(texts):
    groups = near_duplicate_groups(texts)
    return [[j for j in range(len(texts)) if groups[j] == groups[i]] for i in range(len(texts))]


def test_union_find_joins_chains_under_the_smallest_index():
    uf = UnionFind(5)
    uf.union(3, 4)
    uf.union(1, 4)
    assert [uf.find(i) for i in range(5)] == [0, 1, 2, 1, 1]


def test_punctuation_only_differences_are_one_poem():
    other = "白日依山尽。黄河入海流！欲穷千里目？更上一层楼"
    assert strip_punctuation(other) == strip_punctuation(BASE)
    assert together([BASE, other, "床前明月光，疑是地上霜。举头望明月，低头思故乡。"]) == [
        [0, 1],
        [0, 1],
        [2],
    ]


def test_up_to_two_differing_characters_in_any_position_are_one_poem():
    for positions in [(0,), (19,), (0, 19), (6, 7), (3, 13)]:
        chars = list(strip_punctuation(BASE))
        for k in positions:
            chars[k] = "花"
        variant = "".join(chars)
        assert differences(strip_punctuation(BASE), variant) == len(positions)
        assert together([BASE, variant]) == [[0, 1], [0, 1]], positions


def test_three_differences_or_another_length_are_different_poems():
    three = "月日依山尽，黄河入海雨。欲穷千里目，更上一层天。"
    couplet = "白日依山尽，黄河入海流。"
    longer = "白日依山远，黄河入大海流。"  # one character more: no verse in common either
    assert together([BASE, three]) == [[0], [1]]
    assert together([couplet, longer]) == [[0], [1]]
    one_verse = "白日依山尽，春风满路花。"  # one shared verse is not enough
    assert together([BASE, one_verse]) == [[0], [1]]


def test_chains_of_variants_are_one_group():
    a = "千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。"
    b = "千峰鸟飞绝，万径人行灭。孤舟蓑笠翁，独钓寒江雪。"  # two from a
    c = "千峰鸟飞尽，万径人行灭。孤舟蓑衣翁，独钓寒江雪。"  # two from b, four from a
    assert together([a, c, b])[0] == [0, 1, 2]


def test_excerpts_and_added_couplets_share_verses():
    whole = BASE + "登临望远处，一醉解千愁。"
    excerpt = "欲穷千里目，更上一层楼。"
    assert together([whole, BASE, excerpt]) == [[0, 1, 2]] * 3
    # two shared verses out of six in each: not half of the shorter poem
    far = "欲穷千里目，更上一层楼。春风吹又生，野火烧不尽。江南好风景，落花时节君。"
    assert together([whole, far])[0] == [0]


def test_stock_verses_do_not_join_poems():
    own = "东西南北中上下左右前后里外远近高低长短多少新旧春夏"  # no character twice
    poems = [f"春风吹又生，明月照高楼。{own[i] * 5}，{own[i + 12] * 5}。" for i in range(12)]
    # each pair shares two verses, half of each poem, but those are in 12 poems: stock phrases
    groups = near_duplicate_groups(poems)
    assert len(set(groups)) == len(poems)


def test_lost_character_is_never_a_token():
    poems = [f"床前明月光，疑是地上{LOST_CHAR}。", "举头望明月，低头思故乡。"]
    tokens = vocabulary_to_list(build_vocabulary(poems))
    assert LOST_CHAR not in tokens
    table = CharTable(tokens)
    assert table.encode(LOST_CHAR) == [table.unk]
    legacy = CharTable([*tokens, LOST_CHAR])  # an older vocabulary that lists it
    assert legacy.encode(LOST_CHAR) == [legacy.unk] and LOST_CHAR in legacy.unknown_chars("月囗")


def test_no_near_duplicate_crosses_the_shipped_split():
    """Checked with another blocking than the grouping's: positions modulo 3. Two texts that
    differ in at most two positions agree on every position of one residue class."""
    splits = load_corpus()
    seen = defaultdict(list)  # (length, residue, characters at it) → stripped train/valid texts
    for name in ("train", "valid"):
        for p in splits[name]:
            s = strip_punctuation(p.text)
            for r in range(3):
                seen[len(s), r, s[r::3]].append(s)
    checked = 0
    for p in splits["test"]:
        s = strip_punctuation(p.text)
        for r in range(3):
            for other in seen.get((len(s), r, s[r::3]), ()):
                assert sum(a != b for a, b in zip(s, other)) > 2, p.text
                checked += 1
    assert checked > 0  # the check did compare candidates
    # rule 3 (shared verses) leaves few test verses that occur word for word in train
    rate = verbatim_verse_rate([p.text for p in splits["test"]], [p.text for p in splits["train"]])
    assert rate < 0.01
