"""Generation's one-token step and its sampler: float32 weights give the model's own
log-probabilities, int8 weights move them little, and the sampler keeps exactly the top-k /
top-p candidates and draws by the inverse CDF."""

import math
import random

import numpy as np
import pytest
import torch

from poetry_lm.decoding.strategy import sample_row, sample_step
from poetry_lm.evaluation.perplexity import perplexity
from poetry_lm.model.lm import ModelConfig, PoetryLM
from poetry_lm.model.stepper import INT8_KERNEL, Stepper
from poetry_lm.request import Sampling
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


def untempered(**options) -> Sampling:
    """Sampling options that leave the model's distribution as it is unless told otherwise
    (temperature 1, top-p 1), rather than the generate command's defaults."""
    return Sampling(**{"temperature": 1.0, "top_p": 1.0, **options})


def reachable(probs: list[float], **options) -> set[int]:
    """The tokens a row yields over a fine grid of uniform draws in (0, 1)."""
    with np.errstate(divide="ignore"):  # log 0 = -inf: a masked token
        logp = np.log(np.array(probs, dtype=np.float32))
    return {sample_row(logp, u, untempered(**options)) for u in np.linspace(0, 1, 1002)[1:-1]}


def test_sampling_keeps_top_k_then_top_p_of_what_it_keeps():
    probs = [0.1, 0.5, 0.15, 0.25]  # ranks: token 1, 3, 2, 0
    assert reachable(probs) == {0, 1, 2, 3}
    assert reachable(probs, top_p=0.7) == {1, 3}  # 0.5 + 0.25 ≥ 0.7
    assert reachable(probs, top_k=2) == {1, 3}
    assert reachable(probs, top_k=3, top_p=0.9) == {1, 2, 3}  # 0.9 of the 0.9 kept needs all three
    assert reachable(probs, top_k=3, top_p=0.8) == {1, 3}  # 0.75 ≥ 0.8 × 0.9
    assert reachable([0.25, 0.25, 0.5], top_k=2) == {0, 1, 2}  # a tie at the cut is kept
    assert reachable(probs, temperature=0.05) == {1}  # a low temperature leaves only the likeliest
    assert reachable([0.5, 0.0, 0.5]) == {0, 2}  # masked (-inf) is never drawn


def plain_sample_row(logp: np.ndarray, u: float, opts: Sampling) -> int:
    """The definition, without shortcuts: sort every token, cut, draw by inverse CDF in
    vocabulary order."""
    weight = np.exp((logp.astype(np.float64) - logp.max()) / opts.temperature)
    ranked = np.sort(weight)[::-1]
    k = opts.top_k or len(logp)
    mass = np.cumsum(ranked)
    floor = ranked[min(np.searchsorted(mass, mass[k - 1] * opts.top_p), k - 1)]
    kept = np.flatnonzero((weight >= floor) & (weight > 0))
    cdf = np.cumsum(weight[kept])
    return int(kept[min(np.searchsorted(cdf, u * cdf[-1], "right"), len(kept) - 1)])


def test_sampling_shortcuts_draw_what_the_definition_draws():
    """sample_row sorts only the tokens that can reach the nucleus; on peaked and flat rows with
    masked tokens it draws the same tokens as sorting everything."""
    rng = np.random.default_rng(0)
    draws = differ = 0
    for spread in (0.5, 3.0, 8.0):
        for _ in range(20):
            logp = rng.normal(0, spread, 300).astype(np.float32)
            logp[rng.random(300) < 0.2] = -np.inf
            for options in (
                dict(),
                dict(top_p=0.9),
                dict(temperature=0.7, top_p=0.95),
                dict(top_k=15, top_p=0.8),
                dict(temperature=1.5, top_p=0.5),
            ):
                opts = untempered(**options)
                for u in rng.random(10):
                    draws += 1
                    differ += sample_row(logp, u, opts) != plain_sample_row(logp, u, opts)
    # float32 against float64 sums may split a rare tie
    assert draws == 3 * 20 * 5 * 10 and differ <= draws // 1000


def test_sample_step_draws_by_inverse_cdf_in_vocabulary_order():
    logp = np.log(np.array([[0.45, 0.27, 0.18, 0.1]] * 4, dtype=np.float32))
    mask = np.array([[True, True, True, False]] * 4)  # 0.5, 0.3, 0.2 … after renormalising
    opts = untempered(top_p=0.7)  # keeps tokens 0 and 1: cdf 0.625, 1.0 after renormalising
    tokens = sample_step(logp, mask, np.array([0.0, 0.6, 0.7, 1.0]), opts)
    assert tokens.tolist() == [0, 0, 1, 1]
    everything = sample_step(logp, mask, np.array([0.79, 0.81, 0.99, 1.0]), untempered())
    assert everything.tolist() == [1, 2, 2, 2]  # cdf 0.5, 0.8, 1.0; u = 1 takes the last possible
    greedy = sample_step(logp, ~mask, np.zeros(4), untempered(greedy=True))
    assert greedy.tolist() == [3] * 4  # the likeliest allowed token
    only_2 = mask & np.array([False, False, True, False])
    assert sample_step(logp, only_2, np.full(4, 0.5), opts, forced=True).tolist() == [2] * 4
