"""Measured gradient flow: how far back in time the loss gradient reaches, per cell.

    python -m poetry_lm gradflow [--checkpoint NAME=PATH ...] [--steps 50] [--poems 64]
                                 [--out runs/gradflow]

It writes gradient_flow.png and gradient_flow.csv into ``--out`` (a run folder; the tracked
docs/ copies are regenerated only by asking for ``--out docs``).

The batch is the first ``--poems`` valid-split poems of at least T + 1 tokens (T = ``--steps``),
each cut to its first T + 1 tokens x_0 … x_T (as ``CharTable.encode_poem``: begin, characters,
end; right to left for a backward model). The model reads x_0 … x_{T−1} from a zero state, as
training feeds them (``PoetryLM.embed``: with the couplet input where the model has one); the
top recurrent layer's hidden states are h_0 … h_{T−1}, and t = T − 1 is the last step. The
loss is the NLL of the last target only,

    L = (1/B) Σ_b −log p(x_T⁽ᵇ⁾ | x_0⁽ᵇ⁾ … x_{T−1}⁽ᵇ⁾),

and the measured quantity at distance d = t − k is the batch mean of one sample's gradient norm,

    g(d) = (1/B) Σ_b ‖∂L_b/∂h_k⁽ᵇ⁾‖₂,      L_b = the b-th term of L, k = t − d, d = 0 … T − 1,

where ∂L/∂h_k is the total derivative through every later use of h_k (for an LSTM, with c_k
held as a separate node: the gradient that leaves step k + 1 towards h_k). For an LSTM the cell
state's curve is measured too, g_c(d) = (1/B) Σ_b ‖∂L_b/∂c_k⁽ᵇ⁾‖₂ (the total derivative, through
c_{k+1} and through h_k), plotted dashed as "NAME c": the additive path ∂c_k/∂c_{k−1} = diag(f_k)
that the LSTM is built for. Because the samples are independent,
∂L/∂h_k⁽ᵇ⁾ = ∂L_b/∂h_k⁽ᵇ⁾ / B; the 1/B is the same at every distance. Dropout is off (eval mode)
and the arithmetic is float64. The printed ratios are g(d) / g(0). See docs/bptt.md for why they
fall or grow.

The untrained models and their batch depend only on the corpus, --seed and the sizes: their
vocabulary is the valid split's characters, whatever checkpoints are given, so adding a
checkpoint never changes their numbers.
"""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import click
import torch

from poetry_lm.errors import run_or_exit
from poetry_lm.model.checkpoint import load_model
from poetry_lm.model.lm import ModelConfig, PoetryLM
from poetry_lm.options import seed_option
from poetry_lm.paths import DEFAULT_CORPUS
from poetry_lm.text.corpus import CorpusError, load_corpus, orient
from poetry_lm.text.vocab import SPECIALS, CharTable

# untrained model name → (cell, the plain RNN's activation)
UNTRAINED = {
    "rnn-tanh": ("rnn", "tanh"),
    "rnn-relu": ("rnn", "relu"),
    "rnn-sigmoid": ("rnn", "sigmoid"),
    "lstm": ("lstm", "tanh"),
    "gru": ("gru", "tanh"),
}
RATIO_DISTANCES = (10, 30, 49)


def untrained_model(
    name: str, vocab_size: int, embed_dim: int, hidden_dim: int, seed: int = 0
) -> PoetryLM:
    """A freshly initialised one-layer model of the cell ``name`` (a key of UNTRAINED), seeded."""
    cell, activation = UNTRAINED[name]
    torch.manual_seed(seed)
    config = ModelConfig(
        vocab_size,
        embed_dim,
        hidden_dim,
        num_layers=1,
        dropout=0.0,
        softmax="full",
        cell=cell,
        activation=activation,
        couplet_input=False,
    )
    return PoetryLM(config).eval()


def untrained_table(texts: list[str]) -> CharTable:
    """The untrained models' vocabulary: the characters of ``texts`` (the valid split), never a
    checkpoint's, so that their numbers are the same with or without checkpoints."""
    return CharTable([*SPECIALS, *sorted({ch for text in texts for ch in text})])


def poem_batch(texts: list[str], table: CharTable, steps: int, count: int) -> torch.Tensor:
    """The first ``count`` poems with at least steps + 1 tokens, cut to steps + 1
    → (steps + 1, B)."""
    long_enough = [ids for ids in map(table.encode_poem, texts) if len(ids) > steps]
    encoded = [ids[: steps + 1] for ids in long_enough[:count]]
    if not encoded:
        raise CorpusError(f"no poem has {steps + 1} tokens")
    return torch.tensor(encoded).T


def hidden_grad_norms(model: PoetryLM, tokens: torch.Tensor) -> torch.Tensor:
    """tokens (T + 1, B) → g(d), d = 0 … T − 1 (T,): batch-mean ‖∂L_b/∂h_{t−d}‖, top layer."""
    return state_grad_norms(model, tokens)["h"]


def state_grad_norms(model: PoetryLM, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """tokens (T + 1, B) → {"h": g(d)[, "c": g_c(d)]}, each (T,), d = 0 … T − 1, for the top layer.

    L is the NLL of tokens[T] after reading tokens[:T] (module docstring). Lower layers run as
    usual; the top layer runs one step at a time so that every h_k is a node of the graph.
    Computed on a float64 copy of the model: float32 underflows to 0 below ~1e-45, which a
    sigmoid RNN reaches within 50 steps.
    """
    model = copy.deepcopy(model).double().eval()
    inputs, target = tokens[:-1], tokens[-1]
    x = model.embed(inputs)  # (T, B, E), or (T, B, 2E) with the couplet input, as in training
    *lower, top = model.rnn.layers
    state = model.rnn.initial_state(inputs.shape[1], x)
    for layer, layer_state in zip(lower, state):
        x, _ = layer(x, layer_state)
    top_state, states = state[-1], []
    for xw_t in top.input_gates(x).unbind(0):
        top_state = top.cell(xw_t, top.recurrent_gates(top_state[0]), top_state)
        states.append(top_state)  # (h_k,) or (h_k, c_k)
    nll = model.target_nll(states[-1][0], target)  # (B,): L_b
    names = ("h", "c")[: len(states[-1])]
    # d/dh_k of Σ_b L_b is ∂L_b/∂h_k⁽ᵇ⁾ row by row; likewise for c_k
    grads = torch.autograd.grad(nll.sum(), [s for step in states for s in step], allow_unused=True)
    out = {}
    for j, name in enumerate(names):
        per_step = grads[j :: len(names)]
        norms = torch.stack(
            [
                torch.zeros((), dtype=x.dtype) if g is None else g.norm(dim=1).mean()
                for g in per_step
            ]
        )
        out[name] = norms.flip(0).detach()  # index k → distance t − k
    return out


def plot(results: list[tuple[str, bool, torch.Tensor]], path: Path) -> None:
    """Two panels, untrained | trained: g(d) against d on a log y-axis, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {name: f"C{i}" for i, name in enumerate(UNTRAINED)}  # the same in both panels
    # one shared y-scale, so that a curve can be compared across the panels
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharex=True, sharey=True)
    for ax, trained in zip(axes, (False, True)):
        lines = [(name, norms) for name, is_trained, norms in results if is_trained == trained]
        for name, norms in lines:
            base, cell_state = name.removesuffix(" c"), name.endswith(" c")
            ax.plot(
                range(len(norms)),
                norms.numpy(),
                label=f"{base} (cell state c)" if cell_state else name,
                color=colours.get(base),
                linestyle="--" if cell_state else "-",
            )
        ax.set_yscale("log")
        ax.set_ylabel(r"batch mean of $\|\partial L_b / \partial h_{t-d}\|$ (or $c_{t-d}$)")
        ax.tick_params(labelleft=True)
        ax.set_title("trained checkpoints" if trained else "untrained (seeded init)")
        ax.set_xlabel("distance d = t − k (steps back from the loss)")
        ax.grid(True, which="both", alpha=0.3)
        if lines:
            ax.legend()
        else:
            ax.text(
                0.5, 0.5, "no checkpoints given", ha="center", va="center", transform=ax.transAxes
            )
    fig.suptitle("gradient of the last target's NLL against distance, log scale shared", y=0.99)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_csv(results: list[tuple[str, bool, torch.Tensor]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "trained", "distance", "grad_norm"])
        for name, trained, norms in results:
            writer.writerows(
                (name, int(trained), d, f"{g:.6e}") for d, g in enumerate(norms.tolist())
            )


def parse_checkpoint(ctx, param, values):
    """'NAME=PATH' options → [(name, path)]."""
    pairs = []
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise click.BadParameter(f"{value!r} is not NAME=PATH")
        pairs.append((name, path))
    return pairs


@click.command()
@click.option(
    "--checkpoint",
    "checkpoints",
    multiple=True,
    callback=parse_checkpoint,
    metavar="NAME=PATH",
    help="A trained model to measure, e.g. lstm=runs/cmp-lstm/best.pt (repeatable).",
)
@click.option(
    "--corpus", type=click.Path(dir_okay=False), default=str(DEFAULT_CORPUS), show_default=True
)
@click.option(
    "--embed-dim",
    type=click.IntRange(1),
    default=128,
    show_default=True,
    help="Untrained models' E.",
)
@click.option(
    "--hidden-dim",
    type=click.IntRange(1),
    default=256,
    show_default=True,
    help="Untrained models' H.",
)
@click.option(
    "--steps",
    type=click.IntRange(2),
    default=50,
    show_default=True,
    help="T: input steps per poem.",
)
@click.option(
    "--poems",
    type=click.IntRange(1),
    default=64,
    show_default=True,
    help="B: valid poems in the batch.",
)
@seed_option(0, "Initialisation seed of the untrained models.")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="runs/gradflow",
    show_default=True,
    help="Folder for gradient_flow.png and gradient_flow.csv.",
)
@click.option("--out-png", type=click.Path(dir_okay=False), help="[default: OUT/gradient_flow.png]")
@click.option("--out-csv", type=click.Path(dir_okay=False), help="[default: OUT/gradient_flow.csv]")
def main(checkpoints, corpus, embed_dim, hidden_dim, steps, poems, seed, out, out_png, out_csv):
    """Plot the gradient norm of the last step's loss w.r.t. each earlier hidden state."""
    torch.set_num_threads(1)
    out_png = out_png or str(Path(out) / "gradient_flow.png")
    out_csv = out_csv or str(Path(out) / "gradient_flow.csv")
    run_or_exit(
        measure, checkpoints, corpus, embed_dim, hidden_dim, steps, poems, seed, out_png, out_csv
    )


def measure(checkpoints, corpus, embed_dim, hidden_dim, steps, poems, seed, out_png, out_csv):
    """Measure every model, write the PNG and CSV, print the ratio table."""
    loaded = [(name, *load_model(path)[:2]) for name, path in checkpoints]
    texts = [poem.text for poem in load_corpus(corpus)["valid"]]
    table = untrained_table(texts)
    models = [
        (name, False, untrained_model(name, len(table), embed_dim, hidden_dim, seed), table)
        for name in UNTRAINED
    ]
    models += [(name, True, model, model_table) for name, model, model_table in loaded]

    results = []
    for name, trained, model, model_table in models:
        oriented = [orient(text, model.config.direction) for text in texts]  # as training
        norms = state_grad_norms(model, poem_batch(oriented, model_table, steps, poems))
        results += [(name if s == "h" else f"{name} {s}", trained, g) for s, g in norms.items()]
    plot(results, Path(out_png))
    write_csv(results, Path(out_csv))

    ds = [d for d in RATIO_DISTANCES if d < steps] or [steps - 1]  # a short run: its farthest
    click.echo("ratio g(d)/g(0) = ‖∂L/∂h_{t−d}‖ / ‖∂L/∂h_t‖ (batch means; 'c' rows: c_{t−d})")
    click.echo(f"{'model':<16}{'trained':<9}" + "".join(f"{f'd={d}':>11}" for d in ds))
    for name, trained, norms in results:
        click.echo(
            f"{name:<16}{'yes' if trained else 'no':<9}"
            + "".join(f"{norms[d] / norms[0]:>11.2e}" for d in ds)
        )
    click.echo(f"wrote {out_png} and {out_csv}")


if __name__ == "__main__":
    main()
