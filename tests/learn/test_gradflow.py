"""poetry_lm.learn.gradflow: g(d) = batch mean of ‖∂L_b/∂h_{t−d}‖, L = NLL of the last target only.

The recurrences that the weight settings below make exact (d = distance back from t):
  RNN, ‖W_hh‖₂ = 1, sigmoid:  ∂L/∂h_{k−1} = W_hhᵀ diag(σ'(a_k)) ∂L/∂h_k, σ' ≤ 1/4 → g(d) ≤ 4⁻ᵈ g(0)
  RNN, W_hh = 2I, relu, every pre-activation > 0:  J = 2I                     →  g(d) = 2ᵈ g(0)
  LSTM, all weights 0 but b_f and W_hg = w·I: h = c = 0 at every step, i = o = ½, g' = tanh' = 1, so
      ∂L/∂c_t = ½ ∂L/∂h_t,  ∂L/∂h_{k−1} = (w/2) ∂L/∂c_k,  ∂L/∂c_{k−1} = (f + w/4) ∂L/∂c_k
      →  g(d) = (w/4) (f + w/4)^{d−1} g(0) for d ≥ 1, f = σ(b_f): flat if f ≈ 1, gone if f ≈ 0
"""

import copy
import csv
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from poetry_lm.learn import gradflow
from poetry_lm.learn.gradflow import hidden_grad_norms, poem_batch, untrained_model
from poetry_lm.model.checkpoint import load_model, save_checkpoint
from poetry_lm.model.lm import ModelConfig, PoetryLM
from poetry_lm.text.corpus import CorpusError, load_corpus
from poetry_lm.text.vocab import SPECIALS, CharTable

torch.set_num_threads(1)
E, H, T, B = 8, 16, 20, 4


@pytest.fixture(scope="module")
def texts():
    return [poem.text for poem in load_corpus()["valid"][:200]]


@pytest.fixture(scope="module")
def table(texts):
    return CharTable([*SPECIALS, *sorted({ch for text in texts for ch in text})])


@pytest.fixture(scope="module")
def tokens(texts, table):
    return poem_batch(texts, table, T, B)


def ratios(model, tokens):
    norms = hidden_grad_norms(model, tokens).double()
    return norms / norms[0]


def test_batch_is_real_poem_starts(texts, table, tokens):
    assert tokens.shape == (T + 1, B)
    assert (tokens[0] == table.bos).all()
    first = next(text for text in texts if len(text) + 2 > T)
    assert tokens[:, 0].tolist() == table.encode_poem(first)[: T + 1]


def test_steps_longer_than_every_poem_is_the_corpus_error_of_one_sentence(texts, table):
    with pytest.raises(CorpusError, match="no poem has 10001 tokens"):
        poem_batch(texts, table, 10_000, B)


@pytest.mark.parametrize("name", list(gradflow.UNTRAINED))
def test_one_norm_per_distance_and_distance_zero_is_the_output_gradient(name, table, tokens):
    model = untrained_model(name, len(table), E, H)
    norms = hidden_grad_norms(model, tokens)
    assert norms.shape == (T,)
    assert torch.isfinite(norms).all() and (norms > 0).all()
    # d = 0 independently: the model's own forward, gradient of the summed last-step NLL
    hidden, _ = model(tokens[:-1])
    hidden.retain_grad()
    model.target_nll(hidden[-1], tokens[-1]).sum().backward()
    assert torch.allclose(norms[0], hidden.grad[-1].double().norm(dim=1).mean(), rtol=1e-5)


def test_two_layer_model_measures_its_top_layer(table, tokens):
    torch.manual_seed(0)
    model = PoetryLM(
        ModelConfig(
            len(table),
            E,
            H,
            num_layers=2,
            dropout=0.1,
            softmax="full",
            cell="gru",
            couplet_input=False,
        )
    )
    assert hidden_grad_norms(model, tokens).shape == (T,)


def test_sigmoid_rnn_vanishes_at_least_by_a_quarter_per_step(table, tokens):
    model = untrained_model("rnn-sigmoid", len(table), E, H)
    W = model.rnn.layers[0].weight_hh
    with torch.no_grad():
        W /= torch.linalg.matrix_norm(W, ord=2)  # ‖W_hh‖₂ = 1
    r = ratios(model, tokens)
    bound = 0.25 ** torch.arange(T, dtype=torch.float64)
    assert (r <= bound * (1 + 1e-9)).all()
    assert r[T - 1] < 1e-11  # 4⁻¹⁹ ≈ 3.6e-12


def test_relu_rnn_with_doubling_recurrence_explodes(table, tokens):
    model = untrained_model("rnn-relu", len(table), E, H)
    layer = model.rnn.layers[0]
    with torch.no_grad():
        layer.weight_ih.zero_()
        layer.bias_ih.fill_(1e-3)  # a_t = 1e-3 + 2 h_{t−1} > 0: relu' = 1 everywhere
        layer.bias_hh.zero_()
        layer.weight_hh.copy_(2 * torch.eye(H))
    r = ratios(model, tokens)
    assert torch.allclose(r, 2.0 ** torch.arange(T, dtype=torch.float64), rtol=1e-9)


@pytest.mark.parametrize("forget_bias", [20.0, -20.0])
def test_lstm_forget_gate_carries_the_gradient(forget_bias, table, tokens):
    model = untrained_model("lstm", len(table), E, H)
    layer, w = model.rnn.layers[0], 0.1
    with torch.no_grad():
        for p in (layer.weight_ih, layer.weight_hh, layer.bias_ih, layer.bias_hh):
            p.zero_()
        layer.bias_ih[H : 2 * H] = forget_bias
        layer.weight_hh[2 * H : 3 * H] = w * torch.eye(H)  # h_{k−1} reaches c_k only through g
    r = ratios(model, tokens)
    f = 1 / (1 + math.exp(-forget_bias))
    expected = torch.tensor(
        [1.0] + [w / 4 * (f + w / 4) ** (d - 1) for d in range(1, T)], dtype=torch.float64
    )
    assert torch.allclose(r, expected, rtol=1e-6)
    if forget_bias > 0:  # constant error carousel: flat within a factor 2
        assert r[1:].max() / r[1:].min() < 2
    else:
        assert r[T - 1] / r[1] < 1e-20


def test_command_writes_png_csv_and_ratio_table(tmp_path, table):
    torch.manual_seed(1)
    save_checkpoint(
        tmp_path / "m.pt",
        PoetryLM(ModelConfig(len(table), E, H, cell="gru", softmax="full", couplet_input=False)),
        table.tokens,
    )
    png, out_csv = tmp_path / "g.png", tmp_path / "g.csv"
    result = CliRunner().invoke(
        gradflow.main,
        [
            "--embed-dim",
            str(E),
            "--hidden-dim",
            str(H),
            "--steps",
            "12",
            "--poems",
            "3",
            "--checkpoint",
            f"mine={tmp_path / 'm.pt'}",
            "--out-png",
            str(png),
            "--out-csv",
            str(out_csv),
        ],
    )
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(out_csv) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["model", "trained", "distance", "grad_norm"]
    models = ["rnn-tanh", "rnn-relu", "rnn-sigmoid", "lstm", "lstm c", "gru", "mine"]
    assert [(r["model"], r["trained"], int(r["distance"])) for r in rows] == [
        (m, "1" if m == "mine" else "0", d) for m in models for d in range(12)
    ]
    assert all(float(r["grad_norm"]) > 0 for r in rows)
    table_lines = [line.split() for line in result.output.splitlines()]
    assert ["model", "trained", "d=10"] in table_lines  # only distances below --steps
    assert (
        sum(
            line[:2] in (["mine", "yes"], ["lstm", "c"], *([m, "no"] for m in gradflow.UNTRAINED))
            for line in table_lines
        )
        == 7
    )


def run_command(*args):
    return CliRunner().invoke(
        gradflow.main,
        ["--embed-dim", str(E), "--hidden-dim", str(H), "--steps", "8", "--poems", "3", *args],
    )


def test_default_output_is_a_run_folder_not_docs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_command()
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "runs" / "gradflow").iterdir()) == [
        "gradient_flow.csv",
        "gradient_flow.png",
    ]
    assert not (tmp_path / "docs").exists()


def test_untrained_numbers_do_not_depend_on_a_checkpoint(tmp_path, table):
    """A checkpoint with another vocabulary (size and order) must not move the untrained rows."""
    torch.manual_seed(2)
    other = CharTable([*SPECIALS, *reversed(table.tokens[len(SPECIALS) :])][:-5])
    model = PoetryLM(
        ModelConfig(len(other), E, H, cell="lstm", softmax="full", couplet_input=False)
    )
    save_checkpoint(tmp_path / "m.pt", model, other.tokens)
    rows = {}
    for label, extra in (("alone", []), ("with", ["--checkpoint", f"x={tmp_path / 'm.pt'}"])):
        result = run_command("--out", str(tmp_path / label), *extra)
        assert result.exit_code == 0, result.output
        with open(tmp_path / label / "gradient_flow.csv") as f:
            rows[label] = [r for r in csv.DictReader(f) if r["trained"] == "0"]
    assert rows["alone"] == rows["with"] and len(rows["alone"]) == 6 * 8


def test_lstm_cell_state_curve_is_flat_when_the_forget_gate_is_open(table, tokens):
    """With f = σ(20) ≈ 1 and the zero weights of the test above, ∂L/∂c_{k−1} = (f + w/4) ∂L/∂c_k,
    so the cell-state curve stays within (f + w/4)^T of its start: the carousel, measured."""
    model = untrained_model("lstm", len(table), E, H)
    layer, w = model.rnn.layers[0], 0.1
    with torch.no_grad():
        for p in (layer.weight_ih, layer.weight_hh, layer.bias_ih, layer.bias_hh):
            p.zero_()
        layer.bias_ih[H : 2 * H] = 20.0
        layer.weight_hh[2 * H : 3 * H] = w * torch.eye(H)
    c = gradflow.state_grad_norms(model, tokens)["c"].double()
    expected = (1 + w / 4) ** torch.arange(T, dtype=torch.float64)  # f = σ(20) = 1 − 2e-9
    assert torch.allclose(c / c[0], expected, rtol=1e-6)
    assert "c" not in gradflow.state_grad_norms(untrained_model("gru", len(table), E, H), tokens)


def test_command_rejects_bad_checkpoint_options(tmp_path):
    result = CliRunner().invoke(gradflow.main, ["--checkpoint", "no-equals-sign"])
    assert result.exit_code == 2 and "NAME=PATH" in result.output
    result = CliRunner().invoke(
        gradflow.main,
        [
            "--checkpoint",
            f"x={tmp_path / 'missing.pt'}",
            "--out-png",
            str(tmp_path / "g.png"),
            "--out-csv",
            str(tmp_path / "g.csv"),
        ],
    )
    assert result.exit_code == 1 and "does not exist" in result.output


SHIPPED = Path(__file__).parents[2] / "models" / "poetry_lm.pt"


def test_the_shipped_model_is_fed_its_couplet_input(tmp_path, texts):
    """The shipped model reads each character beside its counterpart in the previous verse
    (2E wide). d = 0 is checked against the model's own forward on the same tokens, so the
    measurement must feed what training feeds; the command then measures it end to end."""
    model, shipped_table = load_model(SHIPPED)[:2]
    assert model.config.couplet_input
    tokens = poem_batch(texts, shipped_table, 12, 2)  # a verse and the start of the next
    norms = hidden_grad_norms(model, tokens)
    reference = copy.deepcopy(model).double().eval()
    hidden, _ = reference(tokens[:-1])
    hidden.retain_grad()
    reference.target_nll(hidden[-1], tokens[-1]).sum().backward()
    assert torch.allclose(norms[0], hidden.grad[-1].norm(dim=1).mean(), rtol=1e-6)
    result = run_command(
        "--steps", "4", "--poems", "2", "--checkpoint", f"shipped={SHIPPED}", "--out", str(tmp_path)
    )
    assert result.exit_code == 0, result.output
    assert any(line.split()[:2] == ["shipped", "yes"] for line in result.output.splitlines())
    # 4 steps: no distance of the table's (10, 30, 49) fits, so the farthest, d=3, is shown
    assert "d=3" in result.output
    row = next(line.split() for line in result.output.splitlines() if line.startswith("shipped "))
    assert row[:2] == ["shipped", "yes"] and len(row) == 3 and float(row[2]) > 0, row


DOCS = Path(__file__).parents[2] / "docs"


def doc_row(name: str, label: str) -> list[str]:
    """The cells of the markdown table row that starts with ``label`` in docs/``name``."""
    text = (DOCS / name).read_text(encoding="utf-8")
    line = next(line for line in text.splitlines() if line.startswith(f"| {label} |"))
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def test_the_documented_untrained_rows_are_what_the_command_prints():
    """docs/bptt.md's table, first row, rerun as `python -m poetry_lm gradflow` runs it: its
    defaults (seed 0, E = 128, H = 256, T = 50, 64 valid poems), the whole valid split's
    vocabulary. The Chinese copy holds the same figures."""
    defaults = {param.name: param.default for param in gradflow.main.params}
    texts = [poem.text for poem in load_corpus()["valid"]]
    table = gradflow.untrained_table(texts)
    model = untrained_model(
        "rnn-tanh", len(table), defaults["embed_dim"], defaults["hidden_dim"], defaults["seed"]
    )
    norms = hidden_grad_norms(model, poem_batch(texts, table, defaults["steps"], defaults["poems"]))
    printed = [f"{norms[d] / norms[0]:.1e}" for d in gradflow.RATIO_DISTANCES]
    assert doc_row("bptt.md", "model") == ["model", *(f"d = {d}" for d in gradflow.RATIO_DISTANCES)]
    assert doc_row("bptt.md", "RNN tanh, untrained")[1:] == printed
    assert doc_row("bptt.zh.md", "RNN tanh，未训练")[1:] == printed
