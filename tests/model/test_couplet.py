"""Titles as unscored context, and the couplet input (the previous verse's aligned character)."""

import random

import pytest
import torch

from poetry_lm.model.checkpoint import load_model, save_checkpoint
from poetry_lm.model.lm import CHAR, MARK, RESET, CoupletTracker, ModelConfig, PoetryLM
from poetry_lm.text.duplicates import PUNCTUATION
from poetry_lm.text.vocab import CharTable, build_vocabulary, vocabulary_to_list

POEMS = ["床前明月光，疑是地上霜。举头望明月，低头思故乡。", "春眠不觉晓，处处闻啼鸟。"]


@pytest.fixture(scope="module")
def table():
    return CharTable(vocabulary_to_list(build_vocabulary(POEMS)))


def couplet_config(table, **kw):
    return ModelConfig(
        vocab_size=len(table),
        embed_dim=6,
        hidden_dim=8,
        softmax="full",
        couplet_input=True,
        verse_marks=[table.index[m] for m in PUNCTUATION if m in table.index],
        verse_resets=[table.pad, table.bos, table.eos, table.sep],
        **kw,
    )


def test_counterparts_are_the_previous_verse_at_the_next_position(table):
    model = PoetryLM(couplet_config(table))
    ids = table.encode_poem(POEMS[0])
    got = model.tracker(1).sequence(torch.tensor(ids)[:, None])[:, 0].tolist()
    # row t answers the token after ids[t]: none in the first verse, 床前明月光 under 疑是地上霜 …;
    # after the last 。 the end token would start a verse (低), and <eos> resets
    expected = [None] * 6 + list("床前明月光") + [None] + list("疑是地上霜") + [None]
    expected += list("举头望明月") + [None, "低", None]
    assert len(got) == len(ids) == len(expected)
    assert [table.tokens[i] if i >= 0 else None for i in got] == expected


def test_titles_and_batch_starts_have_no_counterpart(table):
    model = PoetryLM(couplet_config(table))
    ids = table.encode_poem("疑是地上霜，举头望明月。", title="床前明月光")
    got = model.tracker(1).sequence(torch.tensor(ids)[:, None])[:, 0].tolist()
    title_end = ids.index(table.sep + len(table))
    # the title, <sep> and the first verse: none; from the ， on, the first verse answers
    assert all(c == -1 for c in got[: title_end + 6])
    assert [table.tokens[c] for c in got[title_end + 6 : title_end + 11]] == list("疑是地上霜")
    # a chunk that starts inside a verse: its partial verse is not a previous verse
    inside = torch.tensor(table.encode("上霜，举头望明月"))[:, None]
    assert (model.tracker(1).sequence(inside) == -1).all()


def test_title_tokens_are_read_but_never_scored(table):
    torch.manual_seed(0)
    model = PoetryLM(
        ModelConfig(
            vocab_size=len(table), embed_dim=6, hidden_dim=8, softmax="full", couplet_input=False
        )
    ).eval()
    plain = torch.tensor(table.encode_poem(POEMS[1]))[:, None]
    titled = torch.tensor(table.encode_poem(POEMS[1], title="春晓"))[:, None]
    with torch.no_grad():
        nll_plain, n_plain, _ = model.sequence_nll(plain, table.pad)
        nll_titled, n_titled, _ = model.sequence_nll(titled, table.pad)
    assert n_plain == n_titled == len(POEMS[1]) + 1  # the characters and the end token
    assert float(nll_plain) != pytest.approx(float(nll_titled))  # the title is read
    assert table.decode(titled[:, 0].tolist()) == "<bos>春晓<sep>" + POEMS[1] + "<eos>"


def test_couplet_model_is_causal_and_steps_like_its_sequence_path(table):
    torch.manual_seed(1)
    model = PoetryLM(couplet_config(table)).double().eval()
    ids = torch.tensor(table.encode_poem(POEMS[0]))[:, None]
    changed = ids.clone()
    changed[-3] = table.index["春"]
    with torch.no_grad():
        hidden, _ = model(ids)
        other, _ = model(changed)
        assert torch.equal(hidden[:-3], other[:-3])  # nothing later leaks into earlier steps
        # one token at a time, the tracker carried: what a generation stepper does
        tracker, state, steps = model.tracker(1), None, []
        for x in ids:
            inp = torch.cat([model.embedding(x), model.counterpart_embedding(tracker.step(x))], -1)
            out, state = model.rnn(inp[None], state)
            steps.append(out[0])
    torch.testing.assert_close(torch.stack(steps), hidden, rtol=1e-12, atol=1e-12)


def test_couplet_model_trains_and_round_trips(table, tmp_path):
    torch.manual_seed(2)
    model = PoetryLM(couplet_config(table))
    assert model.rnn.layers[0].weight_ih.shape == (4 * 8, 2 * 6)
    batch = torch.tensor(table.encode_poem(POEMS[0]))[:, None]
    nll, _, _ = model.sequence_nll(batch, table.pad)
    nll.backward()
    assert model.no_counterpart.grad.abs().sum() > 0
    assert model.rnn.layers[0].weight_ih.grad[:, 6:].abs().sum() > 0  # the second input is used
    save_checkpoint(tmp_path / "c.pt", model, table.tokens)
    loaded, _, _ = load_model(tmp_path / "c.pt")
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch)[0], model(batch)[0])


def test_couplet_input_needs_the_marks_to_build_the_model():
    config = ModelConfig(
        vocab_size=10, softmax="full", couplet_input=True
    )  # the trainer fills them
    with pytest.raises(ValueError, match="couplet_input needs verse_marks"):
        PoetryLM(config)


def test_awd_options_forget_bias_weight_drop_and_locked_dropout(table):
    torch.manual_seed(3)
    cfg = dict(
        vocab_size=len(table), embed_dim=6, hidden_dim=8, softmax="full", couplet_input=False
    )
    plain = PoetryLM(ModelConfig(**cfg))
    torch.manual_seed(3)
    biased = PoetryLM(ModelConfig(**cfg, forget_bias=1.0))
    diff = biased.rnn.layers[0].bias_ih - plain.rnn.layers[0].bias_ih
    assert torch.allclose(diff[8:16], torch.ones(8)) and not diff[:8].any() and not diff[16:].any()
    batch = torch.tensor(table.encode_poem(POEMS[0]))[:, None]
    dropped = PoetryLM(ModelConfig(**cfg, weight_drop=0.5, dropout=0.0))
    dropped.eval()
    with torch.no_grad():  # no weight drop in evaluation: the same output twice
        assert torch.equal(dropped(batch)[0], dropped(batch)[0])
        dropped.train()
        assert not torch.equal(dropped(batch)[0], dropped(batch)[0])
    locked = PoetryLM(ModelConfig(**cfg, dropout=0.5, locked_dropout=True)).train()
    x = torch.ones(5, 3, 4)
    y = locked.drop(x)
    assert torch.equal(y[0], y[4]) and set(y.unique().tolist()) <= {0.0, 2.0}
    with pytest.raises(ValueError, match="need cell lstm"):
        ModelConfig(**cfg, cell="gru", weight_drop=0.1)


def test_generation_refuses_a_backward_model(table):
    from poetry_lm.model.stepper import Stepper

    backward = ModelConfig(
        vocab_size=len(table),
        embed_dim=6,
        hidden_dim=8,
        softmax="full",
        direction="backward",
        couplet_input=False,
    )
    with pytest.raises(ValueError, match="does not write"):
        Stepper(PoetryLM(backward))


def plain_counterparts(kinds: list[int], tokens: list[int]) -> list[int]:
    """The tracker's rule read plainly, for one row: after each token, the character of the
    previous verse at the next token's position in its verse, or -1."""
    V = len(kinds)
    out, verse, previous = [], None, []  # verse None: it began before the row did
    for x in tokens:
        kind = RESET if x >= V else kinds[x]  # a context token starts afresh
        if kind == MARK:
            previous, verse = verse or [], []
        elif kind == RESET:
            previous, verse = [], []
        elif verse is not None:
            verse.append(x)
        k = None if verse is None else len(verse)  # the next token's place in its verse
        out.append(previous[k] if k is not None and k < len(previous) else -1)
    return out


def random_rows(rng: random.Random, kinds: list[int], rows: int, length: int) -> list[list[int]]:
    """Rows of characters with marks, resets and context tokens (index + V) among them."""
    V = len(kinds)
    weights = [{CHAR: 1.0, MARK: 6.0, RESET: 2.0}[k] for k in kinds] + [0.3] * V
    return [rng.choices(range(2 * V), weights, k=length) for _ in range(rows)]


def test_the_tracker_follows_its_rule_and_a_beam_reordering():
    rng = random.Random(0)
    kinds = [RESET, RESET, MARK, MARK] + [CHAR] * 8  # V = 12
    tracker = CoupletTracker(torch.tensor(kinds), 6)
    rows = random_rows(rng, kinds, 6, 40)
    got = tracker.sequence(torch.tensor(rows).T)  # (40, 6)
    assert (got >= 0).float().mean() > 0.1  # the rows really have counterparts
    for b, row in enumerate(rows):
        assert got[:, b].tolist() == plain_counterparts(kinds, row)
    # a beam keeps rows 3, 3 and 0, then goes on: each as if it had been read whole
    tracker.select(torch.tensor([3, 3, 0]))
    more = random_rows(rng, kinds, 3, 20)
    got = tracker.sequence(torch.tensor(more).T)
    for b, (kept, row) in enumerate(zip([3, 3, 0], more)):
        assert got[:, b].tolist() == plain_counterparts(kinds, rows[kept] + row)[40:]
