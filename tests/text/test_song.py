"""The Song corpus: no poem in it is a near duplicate of a Tang valid or test poem."""

from poetry_lm.paths import SONG_CORPUS
from poetry_lm.text.corpus import load_corpus, read_poems
from poetry_lm.text.duplicates import leaking_poems

BASE = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"


def test_a_variant_or_a_chain_to_a_held_out_poem_leaks():
    variant = "白日依山尽，黄河入海流。欲穷千里眼，更上一层台。"  # 2 characters apart
    chained = "白日依山尽，黄河向海流。欲穷千里眼，更上一层台。"  # 1 from the variant, 3 from BASE
    excerpt_plus = "欲穷千里目，更上一层楼。春风吹客袖，落日满江头。"  # half its verses shared
    unrelated = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"
    one_verse = "白日依山尽，春风满路花。秋声连远树，寒色入高楼。"  # one shared verse only
    texts = [variant, chained, excerpt_plus, unrelated, one_verse]
    assert leaking_poems(texts, [BASE]) == {0, 1, 2}
    assert leaking_poems(texts, []) == set()


def test_no_song_poem_near_duplicates_a_tang_valid_or_test_poem():
    tang = load_corpus()
    held_out = [p.text for split in ("valid", "test") for p in tang[split]]
    tang_texts = {p.text for split in tang.values() for p in split}
    song = [p.text for p in read_poems(SONG_CORPUS)]  # the file as it is, ungrouped
    assert len(song) > 200_000
    assert not tang_texts.intersection(song)
    assert leaking_poems(song, held_out) == set()
