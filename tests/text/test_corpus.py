import hashlib
import json
import lzma

import pytest

from poetry_lm.text.corpus import (
    CorpusError,
    clean_text,
    is_ideograph,
    load_corpus,
    normalise_marks,
    split_of,
    strip_annotations,
)
from poetry_lm.text.normalise import poem_entries, read_text_lines
from poetry_lm.text.vocab import LOST_CHAR


def test_notes_markers_and_corrections_are_removed():
    text = "闌風長雨（一作「東風細雨」）秋紛紛，四海八荒同一雲。[爽]節在重九〖1〗，物華新雨餘。"
    assert clean_text(text) == "阑风长雨秋纷纷，四海八荒同一云。爽节在重九，物华新雨余。"


def test_nested_notes_are_removed():
    assert (
        strip_annotations("白日依山盡（〖1〗見《集》（卷一）），黃河入海流。")
        == "白日依山盡，黃河入海流。"
    )


@pytest.mark.parametrize(
    "text", ["冰□已鏤津，花餘凝地雪。春風吹又生。", "簪玉步河堤，妖韶援綠{艹/戍}。春風吹又生。"]
)
def test_lost_characters_drop_the_poem(text):
    assert clean_text(text) is None


def test_supplementary_plane_ideographs_are_kept():
    # OpenCC maps 鑪 to U+2CB3B, outside the BMP; a BMP-only filter would drop this poem
    cleaned = clean_text("紅鑪煮茗松花香，妝成吟罷恣遊後。")
    assert cleaned is not None and "\U0002cb3b" in cleaned
    assert is_ideograph("\U0002cb3b") and is_ideograph("㸌") and not is_ideograph("Ｂ")


def test_foreign_symbols_and_fragments_drop_the_poem():
    assert clean_text("童子解吟《長恨曲》，胡兒能唱琵琶篇。") is None
    assert clean_text("Ｂ亂後碧井廢，時清瑤殿深。") is None
    assert clean_text("楓落吳江冷。") is None  # five characters: a fragment


def test_split_follows_the_md5_rule():
    for poem_id in ["8df2abdf-1b4f-43d5-9bf4-bab1d9debb04", "a", "b", "poem-42"]:
        bucket = int(hashlib.md5(poem_id.encode()).hexdigest(), 16) % 10
        assert split_of(poem_id) == {0: "test", 1: "valid"}.get(bucket, "train")


def test_shipped_corpus_counts_and_split_sizes():
    splits = load_corpus()
    sizes = {k: len(v) for k, v in splits.items()}
    assert sum(sizes.values()) == 55376
    assert sizes == {"train": 44035, "valid": 5613, "test": 5728}
    # each poem goes where its group's smallest id goes
    assert all(split_of(p.group) == name for name, poems in splits.items() for p in poems)
    assert all(p.group <= p.id for poems in splits.values() for p in poems)
    texts = [p.text for poems in splits.values() for p in poems]
    assert not any("。。" in t or "？。" in t for t in texts)
    assert sum(LOST_CHAR in t for t in texts) == 28  # kept, read as <unk>


def test_doubled_marks_collapse_to_the_strongest():
    assert normalise_marks("床前明月光，疑是地上霜。。") == "床前明月光，疑是地上霜。"
    assert normalise_marks("何处是归乎？。江上，。") == "何处是归乎？江上。"
    assert normalise_marks("白日，依山；尽。") == "白日，依山；尽。"
    assert clean_text("床前明月光，疑是地上霜。。") == "床前明月光，疑是地上霜。"


def test_corrupt_corpus_files_are_clear_errors(tmp_path):
    missing = tmp_path / "none.jsonl.xz"
    with pytest.raises(CorpusError, match="does not exist"):
        load_corpus(missing)
    garbage = tmp_path / "garbage.jsonl.xz"
    garbage.write_bytes(b"not xz at all")
    with pytest.raises(CorpusError, match="not a valid"):
        load_corpus(garbage)
    junk = tmp_path / "junk.jsonl.xz"
    with lzma.open(junk, "wt", encoding="utf-8") as f:
        f.write(
            json.dumps({"id": "1", "author": "", "title": "", "text": "床前明月光，疑是地上霜。"})
            + "\n"
        )
        f.write(json.dumps({"id": "2", "author": "", "title": "", "text": "hello world"}) + "\n")
    with pytest.raises(CorpusError, match="line 2"):
        load_corpus(junk)


def read_poem_file(path):
    """The poems of a file of poems one a line, as the commands read it."""
    return [text for _, text in poem_entries(read_text_lines(path), path)]


def test_poem_file_reading(tmp_path):
    good = tmp_path / "poems.txt"
    good.write_text("床前明月光，疑是地上霜。\n\n舉頭望明月，低頭思故鄉。\n", encoding="utf-8")
    assert read_poem_file(good) == ["床前明月光，疑是地上霜。", "举头望明月，低头思故乡。"]
    bad = tmp_path / "bad.txt"
    bad.write_text("床前明月光，疑是地上霜。\nabc\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="line 2"):
        read_poem_file(bad)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("café".encode("latin-1"))
    with pytest.raises(CorpusError, match="not UTF-8"):
        read_poem_file(latin1)
