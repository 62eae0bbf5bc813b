"""The coherence scorer's negatives (one verse swapped, same length and place; season and time
clashes) and the committed scorer's held-out ranking of real poems above their swapped
versions."""

import json
from pathlib import Path

import numpy as np
import pytest

from poetry_lm.evaluation.coherence import Scorer, encode
from poetry_lm.evaluation.swaps import Donors, clashes, markers, verse_parts
from poetry_lm.text.corpus import load_corpus
from poetry_lm.text.vocab import CharTable
from poetry_lm.tools.coherence import held_out, metrics, regulated

ROOT = Path(__file__).resolve().parents[2]
SCORER = ROOT / "models" / "coherence.pt"


@pytest.fixture(scope="module")
def valid():
    return regulated(load_corpus()["valid"])


def test_a_negative_differs_in_exactly_one_verse_of_the_same_length_and_place(valid):
    donors, rng = Donors(valid), np.random.default_rng(0)
    places = {(len(p), i, v) for p in map(verse_parts, valid) for i, (v, _) in enumerate(p)}
    lines = set()
    for text in valid[:300]:
        negative = donors.negative(text, rng, rng.random() < 0.5)
        before, after = verse_parts(text), verse_parts(negative.text)
        assert len(after) == len(before)
        changed = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
        assert changed == [negative.line]
        (old, mark), (new, new_mark) = before[negative.line], after[negative.line]
        assert len(new) == len(old) and new_mark == mark and new != old
        assert (len(before), negative.line, new) in places  # another poem's, at that place
        lines.add(negative.line)
    assert lines == set(range(8))  # every place is drawn


def test_the_markers_and_their_clashes():
    assert markers("春风吹柳绿") == {("season", "春")}
    assert markers("霜落雁南飞") == {("season", "秋")}
    assert markers("日暮江边") == {("time", "暮")}
    assert clashes(markers("菊花开满径"), markers("春草绿江南"))  # spring grass, chrysanthemums
    assert clashes(markers("晓来风急"), markers("夜深人静"))
    assert not clashes(markers("桃花流水"), markers("春风"))  # the same season
    assert not clashes(markers("白云千里"), markers("春风"))  # no marker: no clash
    assert not clashes(markers("春残夏至"), markers("荷塘"))  # shares 夏: a clash needs none shared


def test_negatives_asked_to_clash_do_clash(valid):
    donors, rng = Donors(valid), np.random.default_rng(1)
    marked = [t for t in valid if markers(t)][:300]
    negatives = [donors.negative(t, rng, clash=True) for t in marked]
    clashing = [n for n in negatives if n.clash]
    assert len(clashing) > 0.6 * len(marked)
    for negative in clashing:
        parts, line = verse_parts(negative.text), negative.line
        rest = "".join(v for i, (v, _) in enumerate(parts) if i != line)
        assert clashes(markers(parts[line][0]), markers(rest))
    plain = [donors.negative(t, rng, clash=False) for t in marked]
    assert not any(n.clash for n in plain)


def test_the_committed_scorer_ranks_real_poems_above_swapped_ones(valid):
    scorer = Scorer(SCORER)
    measured = json.loads(SCORER.with_suffix(".json").read_text())
    assert scorer.metrics == measured
    found = metrics(scorer.scores, *held_out(valid, limit=300))
    # 300 pairs of the committed figure's 3,884: a sample's share within 0.06 of it
    assert found["pair_wins"] >= measured["pair_wins"] - 0.06
    assert found["roc_auc"] >= measured["roc_auc"] - 0.06
    assert SCORER.stat().st_size <= 3_000_000


def test_encoding_splits_verses_and_pads():
    table = CharTable(["<pad>", "<unk>", "<bos>", "<eos>", "春", "风", "，", "。"])
    ids, chars, verses = encode(table, ["春风，风春风。", "春。"])
    assert ids.shape == (2, 2, 3)
    assert chars.tolist() == [[2, 3], [1, 0]] and verses.tolist() == [2, 1]
    assert ids[1, 1].tolist() == [table.pad] * 3
