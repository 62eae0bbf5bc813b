"""A poem depends on its start, its seed and the options only: decoded alone or in a batch of 20
others it has the same tokens and the same log-probabilities, bit for bit (int8 weights). So
does a poem written for a title by a couplet-input model."""

import random
from pathlib import Path

import pytest
import torch

from poetry_lm.decoding.loop import candidates
from poetry_lm.model.checkpoint import load_model
from poetry_lm.model.stepper import INT8_KERNEL, Stepper
from poetry_lm.request import PoemRequest
from poetry_lm.text.corpus import is_ideograph
from poetry_lm.text.vocab import SPECIALS
from poetry_lm.writing.writer import Writer

MODEL = Path(__file__).resolve().parents[2] / "models" / "poetry_lm.pt"
pytestmark = pytest.mark.skipif(not INT8_KERNEL, reason="the int8 kernel (fbgemm) is x86-only")


@pytest.fixture(scope="module")
def shipped():
    return Writer(MODEL)


@pytest.fixture(scope="module")
def theme(tiny_theme_run):
    """A tiny model trained with titles and the couplet input."""
    writer = Writer(tiny_theme_run / "best.pt")
    assert writer.model.config.couplet_input and writer.table.sep is not None
    return writer


@torch.inference_mode()
def test_a_row_of_a_step_is_the_same_alone_and_in_any_batch(shipped, tiny_run, theme):
    tiny = load_model(tiny_run / "best.pt")[0]
    for model, step in [(w.model, w.step) for w in (shipped, theme)] + [(tiny, Stepper(tiny))]:
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


# PoemRequest fields; rhymes and tones as heard and the first line's rhyme drawn per poem (the
# defaults), or by the table with the first line never rhymed (OLD_RULES)
SETTINGS = [
    dict(max_len=40, rhyme=False),
    dict(form="七绝", tones=False),
    dict(form="五绝", best_of=3),
    dict(form="五律", tones=False, beam=3),
    # keywords: each poem's plan, bonus and forced characters are its own
    dict(form="七绝", tones=False, best_of=2, keywords=["春", "雨"]),
    dict(beam=2, max_len=48, rhyme=False, keywords=["春风", "归"]),
]
OLD_RULES = dict(heard=False, rhyme_first=False)
FORMS_BY_THE_TABLE = [{**fields, **OLD_RULES} for fields in SETTINGS if "form" in fields]


@pytest.mark.parametrize("fields", SETTINGS + FORMS_BY_THE_TABLE)
def test_a_poem_is_the_same_alone_and_beside_20_others(shipped, fields):
    alone_and_beside_20_others(shipped, fields)


@pytest.mark.parametrize("fields", SETTINGS)
def test_a_titled_poem_of_a_couplet_model_is_the_same_alone_and_beside_20_others(theme, fields):
    alone_and_beside_20_others(theme, {**fields, "title": "春望"})


def alone_and_beside_20_others(writer, fields):
    """21 poems of random starts and seeds in one batch: three of them, each decoded alone,
    are the same, bit for bit."""
    rng = random.Random(repr(fields))
    ideographs = [t for t in writer.table.tokens[:800] if t not in SPECIALS and is_ideograph(t)]
    starts = [rng.choice(ideographs) for _ in range(21)]
    seeds = [rng.randrange(2**31) for _ in range(21)]
    request = writer.check(PoemRequest.of(**fields))
    batch = writer.write_rows(request, starts, seeds)
    assert len({p.text for p in batch}) > 15  # 21 different poems around it
    for row in (0, 7, 20):
        (alone,) = writer.write_rows(request, [starts[row]], [seeds[row]])
        assert alone.text == batch[row].text
        assert alone.logprobs == batch[row].logprobs and alone.score == batch[row].score


def test_seeds_are_drawn_from_the_requests_seed_one_per_poem(shipped):
    """So poem 1 of `generate 登 --seed 3` is poem 1 of `generate 登天 --seed 3`."""
    fields = dict(beam=4, form="五律", tones=False, seed=3)
    one = shipped.write(PoemRequest.of(starts=["登"], **fields))
    two = shipped.write(PoemRequest.of(starts=["登", "天"], **fields))
    assert one[0] == two[0] and two[1].text.startswith("天")
    request = shipped.check(PoemRequest.of(starts=["登"], **fields))
    with pytest.raises(ValueError, match="2 seeds for 1 poems"):
        candidates(shipped.step, shipped.table, request, ["登"], [1, 2])
