import math
import random

import pytest
from click.testing import CliRunner

from poetry_lm.tools.ngram import KneserNey, main

PAD, BOS, EOS, V = 0, 1, 2, 12


def toy_poems(n=60, seed=0):
    rng = random.Random(seed)
    return [
        [BOS, *(rng.randrange(3, V) for _ in range(rng.randrange(3, 9))), EOS] for _ in range(n)
    ]


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_kneser_ney_is_a_distribution_over_the_predictable_tokens(order):
    model = KneserNey(toy_poems(), order, BOS, V - 2)
    rng = random.Random(1)
    for _ in range(20):  # seen and unseen histories alike
        history = tuple(rng.choice([BOS, *range(3, V)]) for _ in range(order - 1))
        assert sum(model.prob(history, w) for w in range(2, V)) == pytest.approx(1.0, abs=1e-9)


def test_higher_orders_fit_their_training_data_better_and_counts_match_evaluate():
    poems = toy_poems(200)
    ppl = []
    for order in (1, 3):
        model = KneserNey(poems, order, BOS, V - 2)
        nll, n = map(sum, zip(*(model.nll(ids) for ids in poems)))
        assert n == sum(len(ids) - 1 for ids in poems)  # every token after the begin token, once
        ppl.append(math.exp(nll / n))
    assert ppl[1] < ppl[0] < V - 2


def test_command_reports_perplexity_on_the_real_split():
    result = CliRunner().invoke(main, ["--order", "2", "--split", "valid"])
    assert result.exit_code == 0, result.output
    assert (
        "2-gram Kneser-Ney, valid split: perplexity" in result.output
        and "over 339691 tokens" in result.output  # the grouped split
    )
