"""Compare training runs: a markdown table, and plots of validation perplexity against time and
of train loss against the optimizer step.

    python -m poetry_lm compare runs/cmp-* --png docs/comparison.png

Each run folder's ``metrics.json`` (written by ``train.py``) gives one row: the model and
training settings that differ between runs, tokens/s, training minutes and the best validation
perplexity.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

SHOWN = (
    "cell",
    "activation",
    "embed_dim",
    "hidden_dim",
    "num_layers",
    "dropout",
    "softmax",
    "tie_weights",
    "optimizer",
    "lr",
    "lr_schedule",
    "batch_size",
    "seq_len",
)


def load_run(folder: Path) -> dict:
    path = folder / "metrics.json"
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise click.ClickException(
            f"{path} is missing or not a metrics file ({type(err).__name__})"
        ) from None
    settings = {**metrics["train"], **metrics["train"]["model"]}
    history = metrics["history"]
    return {
        "name": folder.name,
        "settings": {k: settings.get(k) for k in SHOWN},
        "history": history,
        "steps": metrics.get("steps", []),  # train loss per block of steps (newer runs)
        "best_val_ppl": min(h["val_ppl"] for h in history),
        # these three: of the last (possibly partial) epoch
        "minutes": history[-1]["elapsed_s"] / 60,
        "epochs": history[-1]["epoch"],
        "tokens_per_s": history[-1]["tokens_per_s"],
    }


def table(runs: list[dict]) -> list[str]:
    varying = [k for k in SHOWN if len({str(r["settings"][k]) for r in runs}) > 1] or ["cell"]
    lines = [
        "| run | " + " | ".join(varying) + " | tokens/s | minutes | epochs | best valid ppl |",
        "|---|" + "---|" * len(varying) + "---:|---:|---:|---:|",
    ]
    for r in sorted(runs, key=lambda r: r["best_val_ppl"]):
        cells = [str(r["settings"][k]) for k in varying]
        lines.append(
            f"| {r['name']} | "
            + " | ".join(cells)
            + f" | {r['tokens_per_s']:,.0f} | {r['minutes']:.1f} "
            f"| {r['epochs']:.2f} | {r['best_val_ppl']:.2f} |"
        )
    return lines


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (ax, loss_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for i, r in enumerate(runs):
        ax.plot(
            [h["elapsed_s"] / 60 for h in r["history"]],
            [h["val_ppl"] for h in r["history"]],
            marker="o",
            label=r["name"],
            color=f"C{i}",
        )
        steps = r["steps"]
        loss_ax.plot([s["step"] for s in steps], [s["train_loss"] for s in steps], color=f"C{i}")
    ax.set(
        xlabel="training time (minutes)",
        ylabel="validation perplexity",
        yscale="log",
        title="validation perplexity against training time",
    )
    ax.legend(fontsize=8)
    # plain numbers on the log axis (not 6.75 × 10²)
    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.yaxis.set_minor_formatter(matplotlib.ticker.ScalarFormatter())
    loss_ax.set(
        xlabel="optimizer step",
        ylabel="train loss (nats/token)",
        title="train loss per step (metrics.json 'steps')",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@click.command()
@click.argument(
    "folders", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path)
)
@click.option(
    "--png",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also plot validation perplexity against training time, and train loss per step.",
)
def main(folders: tuple[Path, ...], png: Path | None) -> None:
    """Print a markdown table of the runs in FOLDERS."""
    runs = [load_run(f) for f in folders]
    click.echo("\n".join(table(runs)))
    if png:
        plot(runs, png)


if __name__ == "__main__":
    main()
