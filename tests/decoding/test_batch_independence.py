"""A poem depends on its start, its seed and the options only: decoded alone or in a batch of 20
others it has the same tokens and the same log-probabilities, bit for bit (int8 weights). So
does a poem written for a title by a couplet-input model."""

import dataclasses
import random
from pathlib import Path

import pytest
import torch

from poetry_lm.decoding.generate import SampleOptions, generate
from poetry_lm.model.checkpoint import load_model
from poetry_lm.model.stepper import INT8_KERNEL, Stepper
from poetry_lm.prosody.forms import Constraints, parse_form
from poetry_lm.text.corpus import is_ideograph
from poetry_lm.text.vocab import SPECIALS

MODEL = Path(__file__).resolve().parents[2] / "models" / "poetry_lm.pt"
pytestmark = pytest.mark.skipif(not INT8_KERNEL, reason="the int8 kernel (fbgemm) is x86-only")


@pytest.fixture(scope="module")
def shipped():
    model, table, _ = load_model(MODEL)
    return model, table, Stepper(model)


@pytest.fixture(scope="module")
def theme(tiny_theme_run):
    """A tiny model trained with titles and the couplet input."""
    model, table, _ = load_model(tiny_theme_run / "best.pt")
    assert model.config.couplet_input and table.sep is not None
    return model, table, Stepper(model)


@torch.inference_mode()
def test_a_row_of_a_step_is_the_same_alone_and_in_any_batch(shipped, tiny_run, theme):
    tiny = load_model(tiny_run / "best.pt")[0]
    for model, step in [shipped[::2], (tiny, Stepper(tiny)), theme[::2]]:
        V = model.config.vocab_size
        gen = torch.Generator().manual_seed(0)
        # the vocabulary's first tokens, marks among them, so that verses end and counterparts
        # are read, and a title's context tokens (index + V)
        tokens = torch.randint(0, 30, (12, 21), generator=gen)
        tokens[:2] += V
        state = None
        for t in range(12):
            batch, new_state = step(tokens[t], state, context=True)
            for row in (0, 10, 20) if t >= 1 else ():
                one = state.select(torch.tensor([row]))
                alone, _ = step(tokens[t, row : row + 1], one, context=True)
                assert torch.equal(alone[0], batch[row])
            state = new_state
        if model.config.couplet_input:  # rows stood beside others with counterparts
            assert (model.tracker(21).sequence(tokens) >= 0).any()


SETTINGS = [
    (SampleOptions(temperature=0.8, top_p=0.95, max_len=40), Constraints()),
    (SampleOptions(temperature=0.8, top_p=0.95), Constraints(parse_form("七绝"), rhyme=True)),
    (SampleOptions(best_of=3), Constraints(parse_form("五绝"), rhyme=True, tones=True)),
    (SampleOptions(beam=3), Constraints(parse_form("五律"), rhyme=True)),
    # keywords: each poem's plan, bonus and forced characters are its own
    (SampleOptions(best_of=2), Constraints(parse_form("七绝"), rhyme=True, keywords=["春", "雨"])),
    (SampleOptions(beam=2, max_len=48), Constraints(keywords=["春风", "归"])),
]


@pytest.mark.parametrize("opts, cons", SETTINGS)
def test_a_poem_is_the_same_alone_and_beside_20_others(shipped, opts, cons):
    alone_and_beside_20_others(*shipped, opts, cons)


@pytest.mark.parametrize("opts, cons", SETTINGS)
def test_a_titled_poem_of_a_couplet_model_is_the_same_alone_and_beside_20_others(theme, opts, cons):
    alone_and_beside_20_others(*theme, dataclasses.replace(opts, title="春望"), cons)


def alone_and_beside_20_others(model, table, step, opts, cons):
    """21 poems of random starts and seeds in one batch: three of them, each decoded alone,
    are the same, bit for bit."""
    rng = random.Random(repr(opts))
    ideographs = [t for t in table.tokens[:800] if t not in SPECIALS and is_ideograph(t)]
    starts = [rng.choice(ideographs) for _ in range(21)]
    seeds = [rng.randrange(2**31) for _ in range(21)]
    batch = generate(model, table, starts, opts, None, cons, step, seeds)
    assert len({p.text for p in batch}) > 15  # 21 different poems around it
    for row in (0, 7, 20):
        (alone,) = generate(model, table, [starts[row]], opts, None, cons, step, [seeds[row]])
        assert alone.text == batch[row].text
        assert alone.logprobs == batch[row].logprobs and alone.score == batch[row].score


def test_seeds_are_drawn_from_the_generator_one_per_poem(shipped):
    """So poem 1 of `generate 登 --seed 3` is poem 1 of `generate 登天 --seed 3`."""
    model, table, step = shipped
    opts, cons = SampleOptions(beam=4), Constraints(parse_form("五律"), rhyme=True)
    one = generate(model, table, ["登"], opts, torch.Generator().manual_seed(3), cons, step)
    two = generate(model, table, ["登", "天"], opts, torch.Generator().manual_seed(3), cons, step)
    assert one[0] == two[0] and two[1].text.startswith("天")
    with pytest.raises(ValueError, match="2 seeds for 1 poems"):
        generate(model, table, ["登"], opts, None, cons, step, [1, 2])
