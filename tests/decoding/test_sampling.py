"""Generation's sampler (decoding/strategy.py): it keeps exactly the top-k / top-p candidates
and draws by the inverse CDF."""

import numpy as np

from poetry_lm.decoding.strategy import sample_row, sample_step
from poetry_lm.request import Sampling


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
