"""The numpy output layer and language model (poetry_lm.learn.reference) against torch.

The numpy model and poetry_lm.model.lm.PoetryLM hold the same weights; the loss (mean NLL over
the chunk) and every gradient must agree to 1e-9 relative to torch's scale, in float64.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from poetry_lm.learn.gradcheck import rel_error
from poetry_lm.learn.reference.lm import NumpyLM, chunks, perplexity, stream_columns, train
from poetry_lm.learn.reference.output import OutputLayer, softmax_cross_entropy
from poetry_lm.model.lm import ModelConfig, PoetryLM

torch.set_num_threads(1)
TOL = 1e-9


def test_softmax_cross_entropy_matches_torch():
    rng = np.random.default_rng(0)
    logits, targets = rng.standard_normal((6, 9)) * 5, rng.integers(0, 9, 6)
    loss, dlogits = softmax_cross_entropy(logits, targets)
    t_logits = torch.tensor(logits, requires_grad=True)
    t_loss = F.cross_entropy(t_logits, torch.tensor(targets))
    t_loss.backward()
    assert loss == pytest.approx(t_loss.item(), rel=1e-12)
    assert rel_error(dlogits, t_logits.grad.numpy()) < TOL
    # ŷ − y: every row of the gradient sums to zero
    np.testing.assert_allclose(dlogits.sum(axis=1), 0, atol=1e-15)


def test_softmax_cross_entropy_rejects_a_target_outside_the_vocabulary():
    with pytest.raises(ValueError, match="integers in 0"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3]))


def test_output_layer_gradients_match_torch_linear():
    rng = np.random.default_rng(1)
    layer = OutputLayer(4, 7, rng=1)
    h, targets = rng.standard_normal((5, 4)), rng.integers(0, 7, 5)
    _, dlogits = softmax_cross_entropy(layer.forward(h), targets)
    grads, dh = layer.backward(h, dlogits)
    linear = torch.nn.Linear(4, 7, dtype=torch.float64)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(layer.V))
        linear.bias.copy_(torch.from_numpy(layer.c))
    t_h = torch.tensor(h, requires_grad=True)
    F.cross_entropy(linear(t_h), torch.tensor(targets)).backward()
    assert rel_error(grads["V"], linear.weight.grad.numpy()) < TOL
    assert rel_error(grads["c"], linear.bias.grad.numpy()) < TOL
    assert rel_error(dh, t_h.grad.numpy()) < TOL


def torch_twin(model, cell):
    """PoetryLM holding the numpy model's weights, one layer, full softmax, no dropout."""
    V, E = model.embedding.shape
    config = ModelConfig(
        V, E, model.cell.hidden_size, 1, 0.0, "full", cell=cell, couplet_input=False
    )
    twin = PoetryLM(config).double().eval()
    layer = twin.rnn.layers[0]
    with torch.no_grad():
        twin.embedding.weight.copy_(torch.from_numpy(model.embedding))
        for name, p in model.cell.parameters().items():
            getattr(layer, name).copy_(torch.from_numpy(p))
        twin.output.weight.copy_(torch.from_numpy(model.output.V))
        twin.output.bias.copy_(torch.from_numpy(model.output.c))
    return twin


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_loss_and_every_gradient_match_the_torch_model(cell):
    rng = np.random.default_rng(2)
    model = NumpyLM(11, 4, 5, cell, rng=3)
    T, B = 6, 3
    inputs, targets = rng.integers(0, 11, (T, B)), rng.integers(0, 11, (T, B))
    state = tuple(rng.standard_normal((B, 5)) for _ in range(model.n_states))
    loss, grads, final = model.loss_and_grads(inputs, targets, state)

    twin = torch_twin(model, cell)
    t_state = [tuple(torch.tensor(s) for s in state)]
    hidden, t_final = twin(torch.tensor(inputs), t_state)
    t_loss = F.cross_entropy(twin.output(hidden).reshape(T * B, -1), torch.tensor(targets).ravel())
    t_loss.backward()
    assert loss == pytest.approx(t_loss.item(), rel=1e-12)
    for s, t in zip(final, t_final[0]):
        assert rel_error(s, t.detach().numpy()) < TOL
    layer = twin.rnn.layers[0]
    expected = {
        "embedding": twin.embedding.weight.grad,
        **{f"cell.{n}": getattr(layer, n).grad for n in model.cell.parameters()},
        "V": twin.output.weight.grad,
        "c": twin.output.bias.grad,
    }
    assert grads.keys() == expected.keys()
    errors = {name: rel_error(grads[name], g.numpy()) for name, g in expected.items()}
    assert {k: e for k, e in errors.items() if not e < TOL} == {}


def test_streams_and_chunks_cover_every_next_token_once():
    poems = [[2, 5, 6, 3], [2, 7, 3], [2, 8, 9, 10, 3]]
    columns = stream_columns(poems, 2)  # 12 tokens → 2 columns of 6
    assert columns.shape == (6, 2)
    assert columns[:, 0].tolist() == [2, 5, 6, 3, 2, 7]
    pairs = list(chunks(columns, 4))
    assert [len(i) for i, _ in pairs] == [4, 1]
    np.testing.assert_array_equal(np.concatenate([t for _, t in pairs]), columns[1:])
    with pytest.raises(ValueError, match="too few"):
        stream_columns([[1, 2]], 3)


def test_sgd_with_truncated_bptt_lowers_the_perplexity():
    """A learnable stream (a repeated 'poem') must be learned: perplexity falls far below the
    vocabulary size, and every epoch's training loss is below the one before."""
    rng = np.random.default_rng(4)
    poems = [[2, *rng.permutation(np.arange(4, 12)).tolist(), 3] for _ in range(3)] * 20
    columns = stream_columns(poems, 4)
    model = NumpyLM(12, 8, 16, "rnn", rng=0)
    history = train(model, columns, columns[:40], k=5, lr=0.5, epochs=4, log=lambda _: None)
    losses = [row["train_loss"] for row in history[1:]]
    assert all(b < a for a, b in zip(losses, losses[1:]))
    assert history[-1]["valid_ppl"] < history[0]["valid_ppl"] / 2
    assert perplexity(model, columns[:40], 5) == pytest.approx(history[-1]["valid_ppl"])
