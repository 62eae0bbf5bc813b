"""Stochastic beam search (Kool et al. 2019): the Gumbel scores of a node's children peak at the
node's own, and a step keeps N different hypotheses, the plain beam's without noise."""

import numpy as np

from poetry_lm.decoding.strategy import beam_step, log_softmax, shift_gumbel


def gumbel(rng, shape):
    return -np.log(-np.log(rng.random(shape)))


def test_children_scores_peak_at_their_parents_and_keep_their_order():
    rng = np.random.default_rng(0)
    parent = np.array([0.5, -2.0, 3.0], dtype=np.float32)
    perturbed = (rng.normal(size=(3, 6)) + gumbel(rng, (3, 6))).astype(np.float32)
    perturbed[1, 4] = -np.inf  # a masked child stays out
    shifted = shift_gumbel(parent, perturbed)
    np.testing.assert_allclose(shifted.max(1), parent, rtol=1e-6, atol=1e-6)
    assert np.isneginf(shifted[1, 4])
    for row in range(3):  # monotone: the children's order is the perturbed order
        finite = np.isfinite(perturbed[row])
        assert (
            np.argsort(perturbed[row][finite]).tolist() == np.argsort(shifted[row][finite]).tolist()
        )
    assert np.isneginf(shift_gumbel(np.array([-np.inf], np.float32), perturbed[:1])).all()


def test_a_step_keeps_n_distinct_hypotheses_and_without_noise_the_likeliest():
    rng = np.random.default_rng(1)
    P, N, V = 2, 3, 5
    logp = log_softmax(rng.normal(size=(P * N, V)).astype(np.float32))
    keys = np.array([[0, -np.inf, -np.inf]] * P, dtype=np.float32)  # one hypothesis per poem
    sums = keys.copy()
    tokens, rows, keys2, sums2 = beam_step(keys, sums, logp, None)
    for p in range(P):  # from the only live row: its N likeliest tokens
        expected = np.argsort(-logp[p * N])[:N]
        assert tokens[p * N : (p + 1) * N].tolist() == expected.tolist()
        assert (rows[p * N : (p + 1) * N] == p * N).all()
        np.testing.assert_allclose(sums2[p], logp[p * N][expected])
    seen = set()
    for seed in range(20):  # with noise: N different tokens, and other draws for other seeds
        noise = gumbel(np.random.default_rng(seed), (P * N, V)).astype(np.float32)
        tokens, rows, keys2, _ = beam_step(keys, sums, logp, noise)
        assert len(set(tokens[:N].tolist())) == N
        np.testing.assert_allclose(keys2[:, 0], 0, atol=1e-6)  # the best child keeps the root's 0
        seen.add(tuple(tokens[:N].tolist()))
    assert len(seen) > 1
