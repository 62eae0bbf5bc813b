"""Generation's one-token step: float32 weights give the model's own log-probabilities, and
int8 weights move them little. (Its sampler: tests/decoding/test_sampling.py.)"""

import math
import random

import pytest
import torch

from poetry_lm.evaluation.perplexity import perplexity
from poetry_lm.model.lm import ModelConfig, PoetryLM
from poetry_lm.model.stepper import INT8_KERNEL, Stepper
from poetry_lm.text.vocab import SPECIALS, CharTable

V, T, B = 50, 9, 3
# couplet input in the toy vocabulary: tokens 4 and 5 end a verse; 0, 2, 3 start afresh
COUPLET = dict(couplet_input=True, verse_marks=[4, 5], verse_resets=[0, 2, 3])


def model_of(
    cell="lstm", layers=1, softmax="adaptive", tie=False, embed=12, hidden=16, **config
) -> PoetryLM:
    torch.manual_seed(0)
    return PoetryLM(
        ModelConfig(
            vocab_size=V,
            embed_dim=embed,
            hidden_dim=hidden,
            num_layers=layers,
            softmax=softmax,
            cutoffs=[10, 30] if softmax == "adaptive" else [],
            tie_weights=tie,
            cell=cell,
            **{"couplet_input": False, **config},
        )
    ).eval()


def titled_verses(length: int, rows: int) -> torch.Tensor:
    """(length, rows) token rows as a titled poem reads: begin, a title of context tokens
    (index + V) and its separator, then verses of 3 to 5 characters, each closed by a mark."""
    rng = random.Random(length * rows)
    columns = []
    for _ in range(rows):
        ids = [2, *(V + rng.randrange(6, V) for _ in range(rng.randrange(1, 4))), V + 3]
        while len(ids) < length:
            ids += [rng.randrange(6, V) for _ in range(rng.choice([3, 4, 5, 5, 5]))]
            ids.append(rng.choice([4, 5]))
        columns.append(ids[:length])
    return torch.tensor(columns).T


def stepped(step: Stepper, tokens: torch.Tensor) -> torch.Tensor:
    """tokens (T, B), context tokens among them, fed one step at a time → log-probabilities
    after each (T, B, V)."""
    state, out = None, []
    for t in range(len(tokens)):
        logp, state = step(tokens[t], state, context=True)
        out.append(logp)
    return torch.stack(out)


@pytest.mark.parametrize(
    "cell, layers, softmax, tie",
    [
        ("lstm", 2, "adaptive", False),
        ("lstm", 1, "full", True),
        ("gru", 2, "full", False),
        ("rnn", 1, "adaptive", False),
    ],
)
@torch.inference_mode()
def test_float32_step_is_the_model(cell, layers, softmax, tie):
    model = model_of(cell, layers, softmax, tie)
    tokens = torch.randint(0, V, (T, B), generator=torch.Generator().manual_seed(1))
    hidden, _ = model(tokens)  # (T, B, H), whole sequences
    expected = model.log_probs(hidden.reshape(T * B, -1)).reshape(T, B, V)
    torch.testing.assert_close(
        stepped(Stepper(model, int8=False), tokens), expected, atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("layers, softmax", [(1, "adaptive"), (2, "full")])
@torch.inference_mode()
def test_float32_step_is_the_couplet_model_reading_a_title(layers, softmax):
    model = model_of("lstm", layers, softmax, **COUPLET)
    tokens = titled_verses(30, 4)
    assert (model.tracker(4).sequence(tokens) >= 0).sum() > 20  # counterparts are read
    hidden, _ = model(tokens)  # (T, B, H), whole sequences
    expected = model.log_probs(hidden.reshape(30 * 4, -1)).reshape(30, 4, V)
    torch.testing.assert_close(
        stepped(Stepper(model, int8=False), tokens), expected, atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("couplet", [False, True])
def test_perplexity_read_step_by_step_is_the_perplexity(couplet):
    table = CharTable([*SPECIALS, *"，。春眠不觉晓处闻啼鸟夜来风雨声花落知多少"])
    marks = dict(verse_marks=[table.index["，"], table.index["。"]])
    marks.update(verse_resets=[table.pad, table.bos, table.eos, table.sep])
    torch.manual_seed(0)
    model = PoetryLM(
        ModelConfig(
            vocab_size=len(table),
            embed_dim=8,
            hidden_dim=12,
            num_layers=2,
            softmax="full",
            couplet_input=couplet,
            **(marks if couplet else {}),
        )
    ).eval()
    poems = ["春眠不觉晓，处处闻啼鸟。", "夜来风雨声，花落知多少。", "春眠。", "花落知多少"]
    titles = ["春晓", "", "夜雨声", "花"]
    step = Stepper(model, int8=False)
    for given in (None, titles):  # without titles, then each poem after its own
        whole = perplexity(model, table, poems, max_tokens=40, titles=given)  # several batches
        stepped = perplexity(model, table, poems, max_tokens=40, step=step, titles=given)
        assert stepped.tokens == whole.tokens == 13 + 13 + 4 + 6  # characters and the ends
        assert math.isclose(stepped.perplexity, whole.perplexity, rel_tol=1e-5)
    assert whole.nll != perplexity(model, table, poems).nll  # the titles were read


@torch.inference_mode()
def test_only_shortlist_scores_the_shortlist_alike_and_nothing_past_it():
    model = model_of()  # adaptive, cutoffs 10 and 30
    step = Stepper(model, int8=False)
    every, state = step(torch.tensor([3, 7, 11]))
    short, short_state = step(torch.tensor([3, 7, 11]), only_shortlist=True)
    assert step.shortlist == 10 and every[:, 10:].isfinite().all()
    assert torch.equal(short[:, :10], every[:, :10]) and short[:, 10:].isneginf().all()
    # the state does not depend on it
    assert all(torch.equal(a, b) for a, b in zip(state.layers[0], short_state.layers[0]))


@torch.inference_mode()
def test_read_gives_every_row_the_prefix_state():
    model = model_of()
    step = Stepper(model, int8=False)
    prefix = [3, 7, 11]
    logp, state = step.read(prefix, rows=4)
    alone = stepped(step, torch.tensor(prefix)[:, None])[-1]  # (1, V)
    h, c, hw = state.layers[0]  # the top layer's: hw = W_hh h + b
    assert logp.shape == (4, V) and h.shape == c.shape == (4, 16) and hw.shape == (4, 4 * 16)
    torch.testing.assert_close(logp, alone.expand(4, -1))


@pytest.mark.skipif(not INT8_KERNEL, reason="no fbgemm on this machine: the step stays float32")
@torch.inference_mode()
def test_int8_step_stays_close_to_float32():
    model = model_of("lstm", 2, "adaptive", embed=32, hidden=64)
    # larger weights than the initialisation, so that the distributions are peaked
    for p in model.parameters():
        p.mul_(2)
    quantised = Stepper(model)
    # int8 is really in use
    assert all(
        linear.packed is not None
        for linear in [*quantised.recurrent, *quantised.input, quantised.top]
    )  # int8 is really in use (the clusters' inputs have no fixed range: float32, row by row)
    assert all(linear.rowwise is not None for linear in quantised.tails)
    tokens = torch.randint(0, V, (T, B), generator=torch.Generator().manual_seed(2))
    exact, approx = stepped(Stepper(model, int8=False), tokens), stepped(quantised, tokens)
    assert (
        exact.exp().sum(-1).sub(1).abs().max() < 1e-5
        and approx.exp().sum(-1).sub(1).abs().max() < 1e-5
    )
    gap = (exact - approx).abs()
    # different, but only just (h is quantised over the fixed range [-1, 1], coarser for this
    # small model's small h than for the shipped model's, whose perplexity moves < 0.1%)
    assert 0 < gap.max() < 0.05 and gap.mean() < 0.01
    nll = [-lp[:-1].gather(-1, tokens[1:, :, None]).mean() for lp in (exact, approx)]
    assert abs(nll[0] - nll[1]) < 0.005
