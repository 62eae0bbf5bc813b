"""The right-to-left rerank: the backward score is the reader's own perplexity figure, the pick
maximises F + λ·B over a poem's candidates (plain ranking at λ = 0), the command line refuses
what cannot be reranked, and a poem is still the same alone and beside others."""

import json
import math
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from poetry_lm.cli.write import generate_command
from poetry_lm.decoding.loop import best, candidates
from poetry_lm.decoding.rerank import backward_scores, rerank
from poetry_lm.evaluation.perplexity import perplexity
from poetry_lm.model.checkpoint import load_model, read_checkpoint, save_checkpoint
from poetry_lm.model.stepper import INT8_KERNEL
from poetry_lm.request import PoemRequest
from poetry_lm.text.corpus import is_ideograph
from poetry_lm.text.vocab import SPECIALS
from poetry_lm.writing.writer import Writer

pytestmark = pytest.mark.skipif(not INT8_KERNEL, reason="the int8 kernel (fbgemm) is x86-only")
WIDTHS = [dict(best_of=4), dict(beam=3)]
FORM = dict(form="五绝", tones=False)  # rhyme on, no 平仄; rhymes as heard


@pytest.fixture(scope="module")
def models(tiny_run, tiny_backward_run):
    writer = Writer(tiny_run / "best.pt")
    reader, reader_table, _ = load_model(tiny_backward_run / "best.pt")
    assert reader_table.tokens == writer.table.tokens and reader.config.direction == "backward"
    return writer, writer.table, reader


def starts_of(table, n: int) -> list[str]:
    ideographs = [t for t in table.tokens if t not in SPECIALS and is_ideograph(t)]
    return ideographs[:n]


def decoded(models, sampling, starts, seeds):
    """Every candidate of each poem (``sampling``: PoemRequest fields), before any ranking."""
    writer, table, _ = models
    request = writer.check(PoemRequest.of(**FORM, **sampling))
    return candidates(writer.step, table, request, starts, seeds)


def test_the_backward_score_is_the_readers_perplexity_of_the_reversed_poem(models):
    _, table, reader = models
    poems = [
        "山中明月照，江上白云多。",
        "春风，",
        "日暮客人归，花开满地飞。秋来何处去，水远入山微。",
    ]
    scores = backward_scores(reader, table, poems)  # one padded batch of three lengths
    for poem, score in zip(poems, scores):
        report = perplexity(reader, table, [poem])
        assert score == pytest.approx(-math.log(report.perplexity), rel=1e-5, abs=1e-6)
        # by hand: the characters right to left after the begin token, then the end token
        ids = torch.tensor([table.bos, *table.encode(poem[::-1]), table.eos])[:, None]
        with torch.no_grad():
            nll, tokens, _ = reader.sequence_nll(ids, table.pad)
        assert tokens == len(poem) + 1
        assert score == pytest.approx(-float(nll) / tokens, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("sampling", WIDTHS, ids=["best-of", "beam"])
def test_at_weight_zero_the_rerank_keeps_what_plain_ranking_keeps(models, sampling):
    writer, table, reader = models
    starts, seeds = starts_of(table, 6), list(range(6))
    found = decoded(models, sampling, starts, seeds)
    plain = writer.write_rows(writer.check(PoemRequest.of(**FORM, **sampling)), starts, seeds)
    assert [p.text for p in plain] == [best(rows).text for rows in found]
    kept = rerank(found, reader, table, 0.0)
    assert [p.text for p in kept] == [p.text for p in plain]
    assert all(p.backward is not None for p in kept)


@pytest.mark.parametrize("sampling", WIDTHS, ids=["best-of", "beam"])
def test_the_pick_maximises_forward_plus_weighted_backward(models, sampling):
    _, table, reader = models
    starts, seeds = starts_of(table, 12), [7 * i for i in range(12)]
    found = decoded(models, sampling, starts, seeds)
    weight = 2.0
    kept = rerank(found, reader, table, weight)
    changed = 0
    for rows, pick in zip(found, kept):
        # each candidate's B from the reader's perplexity, alone
        formula = [
            p.score - weight * math.log(perplexity(reader, table, [p.text]).perplexity)
            for p in rows
        ]
        assert pick.text in [p.text for p in rows]
        assert pick.score + weight * pick.backward == pytest.approx(max(formula), abs=1e-5)
        changed += pick.text != best(rows).text
    assert changed > 0  # the reader does move picks: the test above is not plain ranking's


def test_one_candidate_per_poem_needs_no_reader_pass(models):
    _, table, _ = models
    found = decoded(models, {}, starts_of(table, 3), [1, 2, 3])

    class NoReader:  # any call of the reader fails
        config = None

    kept = rerank(found, NoReader(), table, 1.0)
    assert [p.text for p in kept] == [rows[0].text for rows in found]
    assert all(p.backward is None for p in kept)


@pytest.mark.parametrize("sampling", WIDTHS, ids=["best-of", "beam"])
def test_a_reranked_poem_is_the_same_alone_and_beside_others(models, sampling):
    _, table, reader = models
    starts, seeds = starts_of(table, 9), [11 * i + 1 for i in range(9)]
    batch = rerank(decoded(models, sampling, starts, seeds), reader, table, 1.0)
    for row in (0, 4, 8):
        one = decoded(models, sampling, [starts[row]], [seeds[row]])
        (alone,) = rerank(one, reader, table, 1.0)
        assert alone.text == batch[row].text and alone.score == batch[row].score
        assert alone.backward == pytest.approx(batch[row].backward, rel=1e-5)


def invoke(*args):
    return CliRunner().invoke(generate_command, [str(a) for a in args])


def test_the_command_reranks_and_reports_the_backward_score(tiny_run, tiny_backward_run):
    fwd, back = tiny_run / "best.pt", tiny_backward_run / "best.pt"
    common = ["春", "-n", 3, "--form", "五绝", "--best-of", 4, "--seed", 5, "--format", "json"]
    plain = invoke("--model", fwd, *common)
    zero = invoke("--model", fwd, *common, "--rerank-with", back, "--rerank-weight", 0)
    heavy = invoke("--model", fwd, *common, "--rerank-with", back, "--rerank-weight", 5)
    assert plain.exit_code == zero.exit_code == heavy.exit_code == 0, heavy.output
    records = [[json.loads(line) for line in r.output.splitlines()] for r in (plain, zero, heavy)]
    assert [r["text"] for r in records[0]] == [r["text"] for r in records[1]]
    assert "backward" not in records[0][0]
    assert all(r["backward"] < 0 for r in records[1] + records[2])


def test_the_command_refuses_what_it_cannot_rerank(tiny_run, tiny_backward_run, tmp_path):
    fwd, back = tiny_run / "best.pt", tiny_backward_run / "best.pt"
    other = tmp_path / "other_vocab.pt"  # a backward model whose characters are in another order
    payload = read_checkpoint(back)
    reader, _, _ = load_model(back)
    vocab = payload["vocab"]
    chars = [i for i, tok in enumerate(vocab) if tok not in SPECIALS]
    swapped = list(vocab)
    swapped[chars[0]], swapped[chars[1]] = vocab[chars[1]], vocab[chars[0]]
    save_checkpoint(other, reader, swapped)
    for args, message in [
        (["--best-of", 4, "--rerank-with", fwd], "needs a model trained with --direction backward"),
        (["--best-of", 4, "--rerank-with", other], "was trained on another vocabulary"),
        (["--rerank-with", back], "give --best-of or --beam of 2 or more"),
        (["--beam", 1, "--rerank-with", back], "give --best-of or --beam of 2 or more"),
        (["--beam", 2, "--rerank-with", back, "--rerank-weight", -1], "--rerank-weight"),
    ]:
        result = invoke("--model", fwd, "--form", "五绝", *args)
        assert result.exit_code == 2 and message in result.output, result.output
        error = result.output[result.output.index("Error") :]
        assert "Traceback" not in result.output and "\n" not in error.strip(), error
    missing = invoke("--model", fwd, "--best-of", 2, "--rerank-with", tmp_path / "none.pt")
    assert missing.exit_code == 1 and "does not exist" in missing.output


def test_reading_a_reader_imports_no_fastnlp(tiny_backward_run):
    code = (
        "import sys; from poetry_lm.model.checkpoint import load_model;"
        "from poetry_lm.decoding.rerank import rerank;"
        f"load_model({str(tiny_backward_run / 'best.pt')!r});"
        "assert not [m for m in sys.modules if m.startswith('fastNLP')]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_decoding_stats_compares_plain_ranking_with_reranking(tiny_run, tiny_backward_run):
    from poetry_lm.tools.decoding_stats import main

    back = str(tiny_backward_run / "best.pt")
    args = ["--no-corpus", "--model", str(tiny_run / "best.pt"), "--rerank-with", back]
    args += ["--setting", "七绝-best-of-8", "--setting", "七绝", "--poems", "6"]
    result = CliRunner().invoke(main, [*args, "--rerank-weight", "0", "--rerank-weight", "100"])
    assert result.exit_code == 0, result.output
    head, _, plain, zero, heavy, single = result.output.strip().splitlines()
    assert "log-p/token fwd | log-p/token bwd" in head
    cells = [line.split("|")[2:-2] for line in (plain, zero, heavy, single)]
    assert "rerank λ=0" in zero and "rerank λ=100" in heavy and "rerank" not in single
    assert cells[0] == cells[1]  # λ = 0: the same poems, rates and log-probabilities
    # both log-probabilities on every row, the one-candidate setting's too (-log V at most)
    assert all(-10 < float(x) < 0 for c in cells for x in c[-2:])


def test_a_backward_model_given_to_write_is_a_usage_error(tiny_backward_run):
    result = CliRunner().invoke(
        generate_command, ["--model", str(tiny_backward_run / "best.pt"), "--form", "五绝"]
    )
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "--rerank-with" in result.output.strip().splitlines()[-1]
