import numpy as np
import pytest
import torch

from poetry_lm.model.checkpoint import load_model, save_checkpoint
from poetry_lm.model.lm import ModelConfig, PoetryLM
from poetry_lm.text.batching import make_streams, make_windows, poem_batches, stream_chunks
from poetry_lm.text.vocab import (
    SPECIALS,
    CharTable,
    build_vocabulary,
    vocabulary_from_list,
    vocabulary_to_list,
)

POEMS = [
    "床前明月光，疑是地上霜。",
    "举头望明月，低头思故乡。",
    "春眠不觉晓？处处闻啼鸟！",
    "月落乌啼霜满天；江枫：渔火、对愁眠。",
]


def test_vocabulary_is_frequency_ordered_with_specials():
    tokens = vocabulary_to_list(build_vocabulary(POEMS))
    assert tokens[:2] == ["<pad>", "<unk>"] and set(SPECIALS) <= set(tokens)
    counts = {t: sum(p.count(t) for p in POEMS) for t in tokens[2:] if t not in SPECIALS}
    ordered = [counts[t] for t in tokens if t in counts]
    assert ordered == sorted(ordered, reverse=True)
    assert tokens.index("月") < tokens.index("床")  # 月 appears four times, 床 once


def test_min_freq_maps_rare_characters_to_unk():
    tokens = vocabulary_to_list(build_vocabulary(POEMS, min_freq=2))
    assert "月" in tokens and "床" not in tokens
    table = CharTable(tokens)
    assert table.encode("床月") == [table.unk, table.index["月"]]


def test_vocabulary_round_trips_through_a_checkpoint(tmp_path):
    fnlp = build_vocabulary(POEMS)
    tokens = vocabulary_to_list(fnlp)
    model = PoetryLM(
        ModelConfig(
            vocab_size=len(tokens), embed_dim=4, hidden_dim=4, softmax="full", couplet_input=False
        )
    )
    save_checkpoint(tmp_path / "m.pt", model, tokens)
    _, table, payload = load_model(tmp_path / "m.pt")
    assert table.tokens == tokens
    restored = vocabulary_from_list(payload["vocab"])
    # every token, punctuation and specials included, keeps its index in fastNLP's Vocabulary too
    assert (
        [restored.to_index(t) for t in tokens]
        == [fnlp.to_index(t) for t in tokens]
        == list(range(len(tokens)))
    )
    for mark in "，。？！；：、":
        assert restored.to_word(fnlp.to_index(mark)) == mark


def test_short_poems_are_padded_in_front_and_long_ones_windowed():
    pad = 0
    short, long = [2, 5, 6, 3], list(range(10, 30))  # 4 and 20 tokens
    w = make_windows([short, long], seq_len=8, seq_step=5, pad=pad)
    assert w.shape == (1 + 4, 8)
    assert w[0].tolist() == [0, 0, 0, 0, 2, 5, 6, 3]
    assert (
        w[1].tolist() == long[0:8] and w[2].tolist() == long[5:13] and w[3].tolist() == long[10:18]
    )
    assert w[4].tolist() == long[12:20]  # last window aligned to the end: no token left out
    assert (w[1:] != pad).all()


def test_poem_batches_hold_each_poem_once_padded_at_the_end():
    poems = [[1] * n for n in (3, 9, 4, 7, 5)]
    batches = list(poem_batches(poems, pad=0, max_tokens=16))
    assert all(b.shape[0] * b.shape[1] <= 16 or b.shape[1] == 1 for b in batches)
    lengths = sorted(int((b[:, j] != 0).sum()) for b in batches for j in range(b.shape[1]))
    assert lengths == [3, 4, 5, 7, 9]
    for b in batches:
        for j in range(b.shape[1]):
            col = b[:, j]
            n = int((col != 0).sum())
            assert (col[:n] != 0).all() and (col[n:] == 0).all()
    assert isinstance(batches[0], torch.Tensor) and np.issubdtype(
        batches[0].numpy().dtype, np.integer
    )


def test_streams_hold_each_poem_once_whole_and_balanced():
    pad = 0
    poems = [[1, 100 + i] + [7] * (i % 9) + [2] for i in range(50)]  # begin, a poem id, body, end
    streams = make_streams(poems, batch_size=4, pad=pad, rng=np.random.default_rng(0))
    assert streams.shape[1] == 4
    found, ends = [], []
    for b in range(4):
        column, current = streams[:, b].tolist(), []
        for token in column:  # poems are separated by one pad each; the column ends in pads
            if token == pad:
                found += [current] if current else []
                current = []
            else:
                current.append(token)
        ends.append(len(column) - column[::-1].index(2))  # up to the last end token
    assert sorted(found) == sorted(poems)
    # the columns end within one short poem
    assert max(ends) - min(ends) <= min(map(len, poems)) + 1
    again = make_streams(poems, batch_size=4, pad=pad, rng=np.random.default_rng(1))
    assert not np.array_equal(again, streams)  # another epoch, another order


def test_stream_chunks_with_carried_state_score_every_token_once():
    """Reading the streams chunk by chunk, state carried, gives the NLL of scoring each poem
    whole."""
    tokens = vocabulary_to_list(build_vocabulary(POEMS))
    table = CharTable(tokens)
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=len(tokens), embed_dim=6, hidden_dim=8, softmax="full", couplet_input=False
    )
    model = PoetryLM(config).double().eval()
    encoded = [table.encode_poem(p) for p in POEMS * 3]
    streams = make_streams(encoded, batch_size=2, pad=table.pad, rng=np.random.default_rng(1))
    total, n, state = 0.0, 0, None
    with torch.no_grad():
        for chunk in stream_chunks(streams, seq_len=5):
            nll, k, state = model.sequence_nll(chunk, table.pad, state)
            total, n = total + float(nll), n + k
        whole = [model.sequence_nll(torch.tensor(ids).unsqueeze(1), table.pad) for ids in encoded]
    assert n == sum(k for _, k, _ in whole) == sum(len(ids) - 1 for ids in encoded)
    assert total == pytest.approx(sum(float(nll) for nll, _, _ in whole), rel=1e-10)
    assert (
        len(list(stream_chunks(streams, seq_len=5, start=2)))
        == len(list(stream_chunks(streams, seq_len=5))) - 2
    )


def test_titles_are_context_tokens_and_old_vocabularies_read_none():
    tokens = vocabulary_to_list(build_vocabulary(POEMS))
    table = CharTable(tokens)
    V = len(table)
    ids = table.encode_poem("床前明月光。", title="静夜吟")
    assert ids[0] == table.bos and ids[-1] == table.eos
    assert ids[1:5] == [
        table.unk + V,
        table.unk + V,
        table.unk + V,
        table.sep + V,
    ]  # 静夜思 unknown
    assert ids[5:-1] == table.encode("床前明月光。")
    assert table.encode_poem("床前明月光。", title="") == table.encode_poem("床前明月光。")
    old = CharTable([t for t in tokens if t != "<sep>"])  # a vocabulary from before titles
    assert old.sep is None
    with pytest.raises(ValueError, match="without titles"):
        old.encode_poem("床前明月光。", title="静夜吟")


def test_the_separator_is_never_written():
    from poetry_lm.prosody.forms import token_masks

    table = CharTable(vocabulary_to_list(build_vocabulary(POEMS)))
    masks = token_masks(table)
    assert not masks.ordinary[table.sep] and not masks.ideographs[table.sep]
    assert masks.ordinary[table.index["月"]]
