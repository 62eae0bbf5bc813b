import math

import pytest
import torch

from poetry_lm.evaluate import perplexity
from poetry_lm.model import LSTM, ModelConfig, PoetryLM
from poetry_lm.vocab import CharTable, build_vocabulary, vocabulary_to_list


def copy_into_torch(mine: LSTM, ref: torch.nn.LSTM) -> None:
    with torch.no_grad():
        for k, layer in enumerate(mine.layers):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(ref, f"{name}_l{k}").copy_(getattr(layer, name))


@pytest.mark.parametrize("T,B,I,H,layers", [(7, 3, 5, 4, 1), (1, 1, 3, 6, 2), (12, 2, 8, 8, 3)])
def test_custom_lstm_matches_torch_outputs_and_gradients(T, B, I, H, layers):
    torch.manual_seed(T * 100 + B)
    mine, ref = LSTM(I, H, layers).double(), torch.nn.LSTM(I, H, layers).double()
    copy_into_torch(mine, ref)
    x = torch.randn(T, B, I, dtype=torch.double, requires_grad=True)
    h0 = torch.randn(layers, B, H, dtype=torch.double, requires_grad=True)
    c0 = torch.randn(layers, B, H, dtype=torch.double, requires_grad=True)
    out, state = mine(x, [(h0[k], c0[k]) for k in range(layers)])
    ref_out, (ref_h, ref_c) = ref(x, (h0, c0))
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(torch.stack([h for h, _ in state]), ref_h, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(torch.stack([c for _, c in state]), ref_c, rtol=1e-10, atol=1e-12)
    # a loss that touches the outputs and both final states, so every path gets a gradient
    w = torch.randn_like(out)
    loss = (out * w).sum() + sum((h ** 2).sum() + c.sum() for h, c in state)
    ref_loss = (ref_out * w).sum() + (ref_h ** 2).sum() + ref_c.sum()
    mine_params = [getattr(l, n) for l in mine.layers for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    ref_params = [getattr(ref, f"{n}_l{k}") for k in range(layers)
                  for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    grads = torch.autograd.grad(loss, [x, h0, c0, *mine_params])
    ref_grads = torch.autograd.grad(ref_loss, [x, h0, c0, *ref_params])
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-12)


def test_lstm_parameters_are_declared_and_initialised_in_range():
    lstm = LSTM(5, 16, 2)
    assert not any(isinstance(m, (torch.nn.LSTM, torch.nn.LSTMCell)) for m in lstm.modules())
    for p in lstm.parameters():
        assert p.abs().max() <= 1 / math.sqrt(16)


def tiny_lm(softmax="full", **kw) -> tuple[PoetryLM, CharTable]:
    tokens = vocabulary_to_list(build_vocabulary(["床前明月光，疑是地上霜。举头望明月，低头思故乡。"]))
    cfg = ModelConfig(vocab_size=len(tokens), embed_dim=6, hidden_dim=16, softmax=softmax,
                      cutoffs=[6, 12] if softmax == "adaptive" else [], **kw)
    torch.manual_seed(0)
    return PoetryLM(cfg).eval(), CharTable(tokens)


def test_front_padding_does_not_change_the_encoding():
    model, table = tiny_lm()
    ids = table.encode_poem("床前明月光。")
    plain = torch.tensor(ids).unsqueeze(1)
    padded = torch.tensor([table.pad] * 5 + ids).unsqueeze(1)
    keep = (padded != table.pad).unsqueeze(-1).double().float()
    out_plain, _ = model(plain)
    out_padded, _ = model(padded, keep=keep)
    torch.testing.assert_close(out_padded[5:], out_plain)
    nll_plain, n_plain = model.sequence_nll(plain, table.pad)
    nll_padded, n_padded = model.sequence_nll(padded, table.pad)
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


@pytest.mark.parametrize("softmax,kw", [("full", {}), ("adaptive", {}), ("full", {"tie_weights": True})])
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
    assert perplexity(model, table, poems).perplexity == pytest.approx(math.exp(total / count), rel=1e-5)
