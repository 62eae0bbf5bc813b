import math

import pytest
import torch

from poetry_lm.evaluation.perplexity import perplexity
from poetry_lm.model.lm import ModelConfig, PoetryLM, StackedRNN
from poetry_lm.text.vocab import CharTable, build_vocabulary, vocabulary_to_list

PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
ORACLES = {
    "lstm": lambda I, H, L: torch.nn.LSTM(I, H, L),
    "gru": lambda I, H, L: torch.nn.GRU(I, H, L),
    "rnn": lambda I, H, L: torch.nn.RNN(I, H, L, nonlinearity="tanh"),
    "rnn-relu": lambda I, H, L: torch.nn.RNN(I, H, L, nonlinearity="relu"),
}


@pytest.mark.parametrize("cell", ORACLES)
@pytest.mark.parametrize("T,B,I,H,layers", [(7, 3, 5, 4, 1), (1, 1, 3, 6, 2), (12, 2, 8, 8, 3)])
def test_custom_cells_match_torch_outputs_and_gradients(cell, T, B, I, H, layers):
    torch.manual_seed(T * 100 + B)
    name, activation = (cell.split("-") + ["tanh"])[:2]
    mine = StackedRNN(name, I, H, layers, activation=activation).double()
    ref = ORACLES[cell](I, H, layers).double()
    with torch.no_grad():  # the same weights in both
        for k, layer in enumerate(mine.layers):
            for p in PARAMS:
                getattr(ref, f"{p}_l{k}").copy_(getattr(layer, p))
    x = torch.randn(T, B, I, dtype=torch.double, requires_grad=True)
    h0 = torch.randn(layers, B, H, dtype=torch.double, requires_grad=True)
    c0 = torch.randn(layers, B, H, dtype=torch.double, requires_grad=True)
    is_lstm = name == "lstm"
    out, state = mine(x, [(h0[k], c0[k]) if is_lstm else (h0[k],) for k in range(layers)])
    ref_out, ref_state = ref(x, (h0, c0) if is_lstm else h0)
    ref_state = ref_state if is_lstm else (ref_state,)
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-12)
    for j, ref_s in enumerate(ref_state):
        torch.testing.assert_close(
            torch.stack([s[j] for s in state]), ref_s, rtol=1e-10, atol=1e-12
        )
    # a loss that touches the outputs and every final state, so every path gets a gradient
    w = torch.randn_like(out)
    loss = (out * w).sum() + sum((s[0] ** 2).sum() + s[-1].sum() for s in state)
    ref_loss = (ref_out * w).sum() + (ref_state[0] ** 2).sum() + ref_state[-1].sum()
    inputs = [x, h0] + ([c0] if is_lstm else [])
    grads = torch.autograd.grad(loss, inputs + [getattr(l, p) for l in mine.layers for p in PARAMS])
    ref_grads = torch.autograd.grad(
        ref_loss, inputs + [getattr(ref, f"{p}_l{k}") for k in range(layers) for p in PARAMS]
    )
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_parameters_are_declared_and_initialised_in_range(cell):
    stack = StackedRNN(cell, 5, 16, 2)
    assert not any(isinstance(m, (torch.nn.RNNBase, torch.nn.RNNCellBase)) for m in stack.modules())
    for p in stack.parameters():
        assert p.abs().max() <= 1 / math.sqrt(16)


def tiny_lm(softmax="full", **kw) -> tuple[PoetryLM, CharTable]:
    tokens = vocabulary_to_list(
        build_vocabulary(["床前明月光，疑是地上霜。举头望明月，低头思故乡。"])
    )
    cfg = ModelConfig(
        vocab_size=len(tokens),
        embed_dim=6,
        hidden_dim=16,
        softmax=softmax,
        cutoffs=[6, 12] if softmax == "adaptive" else [],
        **{"couplet_input": False, **kw},
    )
    torch.manual_seed(0)
    return PoetryLM(cfg).eval(), CharTable(tokens)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_front_padding_does_not_change_the_encoding(cell):
    model, table = tiny_lm(cell=cell)
    ids = table.encode_poem("床前明月光。")
    plain = torch.tensor(ids).unsqueeze(1)
    padded = torch.tensor([table.pad] * 5 + ids).unsqueeze(1)
    keep = (padded != table.pad).unsqueeze(-1).float()
    out_plain, _ = model(plain)
    out_padded, _ = model(padded, keep=keep)
    torch.testing.assert_close(out_padded[5:], out_plain)
    nll_plain, n_plain, _ = model.sequence_nll(plain, table.pad)
    nll_padded, n_padded, _ = model.sequence_nll(padded, table.pad)
    assert n_plain == n_padded == len(ids) - 1
    torch.testing.assert_close(nll_padded, nll_plain)


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    model, table = tiny_lm()
    with torch.no_grad():
        model.output.weight.zero_()
        model.output.bias.zero_()
    poems = ["床前明月光，疑是地上霜。", "举头望明月。"]
    report = perplexity(model, table, poems)
    assert report.perplexity == pytest.approx(len(table), rel=1e-6)
    assert report.tokens == sum(len(p) + 1 for p in poems)  # characters + end token, begin excluded


@pytest.mark.parametrize(
    "softmax,kw", [("full", {}), ("adaptive", {}), ("full", {"tie_weights": True})]
)
def test_perplexity_equals_exp_of_mean_nll_from_full_log_probs(softmax, kw):
    """Independent of batching: score poem by poem with the exact full distribution."""
    model, table = tiny_lm(softmax, **kw)
    poems = ["床前明月光，疑是地上霜。", "举头望明月。", "低头思故乡，床前霜。"]
    total, count = 0.0, 0
    with torch.no_grad():
        for poem in poems:
            ids = torch.tensor(table.encode_poem(poem)).unsqueeze(1)
            hidden, _ = model(ids[:-1])
            logp = model.log_probs(hidden[:, 0])
            assert torch.allclose(logp.exp().sum(-1), torch.ones(len(ids) - 1), atol=1e-5)
            total -= float(logp.gather(1, ids[1:]).sum())
            count += len(ids) - 1
    assert perplexity(model, table, poems).perplexity == pytest.approx(
        math.exp(total / count), rel=1e-5
    )
