"""--select: worst-verse keeps the candidate of the best worst verse, coherence the scorer's
best; each poem the same alone or in a batch, by the CLI or the API; errors one sentence."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from poetry_lm.cli import main
from poetry_lm.decoding.loop import GeneratedPoem, best
from poetry_lm.decoding.select import select, worst_verse
from poetry_lm.request import PoemRequest

ROOT = Path(__file__).resolve().parents[2]
# starlette's test client asks for httpx2; httpx, which the project installs, still works
pytestmark = pytest.mark.filterwarnings("ignore:.*httpx2")
MODEL = ROOT / "models" / "poetry_lm.pt"


def poem(text: str, logprobs: list[float]) -> GeneratedPoem:
    score = sum(logprobs) / len(logprobs)
    return GeneratedPoem(text, logprobs, score, [], [])


def test_worst_verse_keeps_the_best_worst_verse_not_the_best_mean():
    # even: two verses of -1.0 per character; spiky: one easy verse, one garbled
    even = poem("山高，水长。", [-1.0, -1.0, -9.0, -1.0, -1.0, -9.0])
    spiky = poem("月明，风乱。", [-0.1, -0.1, -9.0, -1.5, -1.5, -9.0])
    assert worst_verse(even) == -1.0 and worst_verse(spiky) == -1.5  # the marks left out
    assert best([spiky, even]) is spiky  # the mean prefers the easy verse
    (picked,) = select([[spiky, even]], "worst-verse")
    assert picked.text == even.text and picked.selected == -1.0
    (tie,) = select([[even, even]], "worst-verse")  # ties: the first in row order
    assert tie.text == even.text


class FakeScorer:
    def __init__(self):
        self.batches = []

    def scores(self, texts):
        self.batches.append(texts)
        return [float(len(set(t))) for t in texts]


def test_coherence_scores_each_poems_candidates_by_themselves():
    scorer = FakeScorer()
    rows = [
        [poem("春春，春。", [-1] * 5), poem("春风，花。", [-2] * 5)],
        [poem("月。", [-1] * 2)] * 2,
    ]
    picked = select(rows, "coherence", scorer)
    assert [p.text for p in picked] == ["春风，花。", "月。"]
    assert scorer.batches == [[p.text for p in r] for r in rows]  # one batch per poem


@pytest.fixture(scope="module")
def writer():
    from poetry_lm.writing.writer import Writer

    return Writer(MODEL)


@pytest.mark.parametrize("how", ["worst-verse", "coherence"])
def test_a_poem_is_the_same_alone_or_in_a_batch(writer, how):
    request = writer.check(PoemRequest.of(form="七绝", best_of=4, select=how))
    alone = writer.write_rows(request, ["山"], [7])
    batched = writer.write_rows(request, ["月", "山", "花"], [5, 7, 9])
    assert batched[1] == alone[0] and alone[0].selected is not None
    plain = writer.write_rows(writer.check(PoemRequest.of(form="七绝", best_of=4)), ["山"], [7])
    assert plain[0].selected is None


def generate(*args):
    return CliRunner().invoke(main, ["generate", "--model", str(MODEL), *map(str, args)])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--select", "best"], "--select must be score, worst-verse or coherence, not 'best'"),
        (["--select", "worst-verse"], "give --best-of or --beam of 2 or more"),
        (["--select", "coherence", "--best-of", 1], "give --best-of or --beam of 2 or more"),
        (["--coherence-model", "x.pt"], "--coherence-model is read only with --select coherence"),
        (
            ["--select", "coherence", "--best-of", 2, "--coherence-model", "/none/c.pt"],
            "--select coherence needs a coherence scorer, but /none/c.pt does not exist",
        ),
        (
            ["--select", "coherence", "--best-of", 2, "--coherence-model", MODEL],
            "is damaged or not a coherence scorer",
        ),
        (
            ["--select", "worst-verse", "--best-of", 2, "--rerank-with", MODEL],
            "choose --select or --rerank-with, not both",
        ),
    ],
)
def test_select_errors_are_one_sentence_and_exit_2(args, message):
    result = generate("月", *args)
    assert result.exit_code == 2, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: ") and message in last, result.output
    assert "Traceback" not in result.output and last.count(". ") == 0


@pytest.fixture(scope="module")
def client():
    from fastapi.testclient import TestClient

    from poetry_lm.serve.app import create_app

    return TestClient(create_app(MODEL))


@pytest.mark.parametrize("how", ["worst-verse", "coherence"])
def test_the_command_line_and_the_api_write_the_same_poem(client, how):
    cli = generate("--start", "江", "--form", "七绝", "--best-of", 4, "--select", how,
                   "--seed", 21, "--format", "json")  # fmt: skip
    assert cli.exit_code == 0, cli.output
    body = {"starts": ["江"], "form": "七绝", "best_of": 4, "select": how, "seed": 21}
    reply = client.post("/api/generate", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.json()["poems"][0]["text"] == json.loads(cli.output)["text"]


def test_the_api_refuses_an_unknown_selection(client):
    reply = client.post("/api/generate", json={"select": "x", "best_of": 2})
    assert reply.status_code == 422 and "select must be score" in reply.text
