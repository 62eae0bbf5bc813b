"""Command-line interface: ``train``, ``evaluate``, ``generate`` and ``score``.

Errors a user can cause end in one sentence on stderr and exit status 1 or 2, never a traceback.
"""
from __future__ import annotations

import json
import os
import sys
from itertools import islice

import click

from .checkpoint import SHIPPED_MODEL, CheckpointError
from .corpus import DEFAULT_CORPUS, CorpusError

USER_ERRORS = (CheckpointError, CorpusError, ValueError, OSError)


def set_threads(threads: int) -> None:
    """Fix torch's thread count: on a small shared machine extra threads mostly contend."""
    import torch

    torch.set_num_threads(threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))


def run_or_exit(fn, *args, **kwargs):
    """Call fn; a user-caused error becomes one clear sentence and exit status 1."""
    try:
        return fn(*args, **kwargs)
    except USER_ERRORS as err:
        raise click.ClickException(str(err)) from None


model_option = click.option("--model", "checkpoint", type=click.Path(dir_okay=False), default=str(SHIPPED_MODEL),
                            show_default="models/poetry_lm.pt", help="The checkpoint to use.")
threads_option = click.option("--threads", type=click.IntRange(1, 256), default=1, show_default=True,
                              help="CPU threads for torch (more rarely helps on a busy 2-core machine).")


@click.command("train")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="runs/default", show_default=True,
              help="Run folder: last.pt, best.pt, metrics.json, training.png.")
@click.option("--resume", is_flag=True,
              help="Continue the run in --out from its last.pt, with its own settings; --epochs and "
                   "--max-minutes may be changed.")
@click.option("--corpus", type=click.Path(dir_okay=False), default=str(DEFAULT_CORPUS), show_default="corpus/tang.jsonl.xz")
@click.option("--cell", type=click.Choice(["lstm", "gru", "rnn"]), default="lstm", show_default=True)
@click.option("--activation", type=click.Choice(["tanh", "relu", "sigmoid"]), default="tanh", show_default=True,
              help="Nonlinearity of --cell rnn.")
@click.option("--embed-dim", type=click.IntRange(1), default=256, show_default=True)
@click.option("--hidden-dim", type=click.IntRange(1), default=768, show_default=True)
@click.option("--layers", type=click.IntRange(1), default=1, show_default=True)
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.25, show_default=True)
@click.option("--softmax", type=click.Choice(["full", "adaptive"]), default="adaptive", show_default=True)
@click.option("--tie-weights", is_flag=True, help="Share embedding and output weights (full softmax).")
@click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default="adam", show_default=True,
              help="Adam, or SGD with momentum 0.9.")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=2e-3, show_default=True)
@click.option("--lr-schedule", type=click.Choice(["constant", "cosine"]), default="cosine", show_default=True)
@click.option("--clip", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True,
              help="Maximum global gradient norm.")
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--seq-len", type=click.IntRange(2), default=65, show_default=True)
@click.option("--seq-step", type=click.IntRange(1), default=32, show_default=True)
@click.option("--batching", type=click.Choice(["windows", "streams"]), default="streams", show_default=True,
              help="windows: each poem front-padded or cut into --seq-len windows every --seq-step tokens; "
                   "streams: whole poems end to end in --batch-size columns, read --seq-len at a time with the state carried.")
@click.option("--min-freq", type=click.IntRange(1), default=2, show_default=True,
              help="Characters rarer than this in train become <unk>.")
@click.option("--epochs", "max_epochs", type=click.IntRange(1), default=9, show_default=True)
@click.option("--patience", type=click.IntRange(1), default=2, show_default=True,
              help="Stop after this many epochs without a better validation perplexity.")
@click.option("--max-minutes", type=click.FloatRange(0, min_open=True), default=None,
              help="Training-time budget for the whole run, resumed sessions included.")
@click.option("--limit-poems", type=click.IntRange(1), default=None,
              help="Use only the first N poems of each split (quick trials).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--bf16", is_flag=True, help="bfloat16 autocast on CUDA.")
@threads_option
def train_command(out_dir, resume, corpus, cell, activation, embed_dim, hidden_dim, layers, dropout, softmax, tie_weights,
                  optimizer, lr, lr_schedule, clip, batch_size, seq_len, seq_step, batching, min_freq, max_epochs,
                  patience, max_minutes, limit_poems, seed, device, bf16, threads):
    """Train a poem model; the defaults are the recipe of the shipped model.

    Under ``torchrun --nproc_per_node=N train.py …`` each process takes 1/N of every batch."""
    set_threads(threads)
    from .training import TrainConfig, Trainer

    if seq_step > seq_len:
        raise click.BadParameter("--seq-step cannot exceed --seq-len", param_hint="--seq-step")
    if tie_weights and softmax != "full":
        raise click.BadParameter("--tie-weights needs --softmax full", param_hint="--tie-weights")
    if bf16 and device != "cuda":
        raise click.BadParameter("--bf16 needs --device cuda (bfloat16 autocast is a GPU option here)",
                                 param_hint="--bf16")
    cfg = TrainConfig(out_dir=out_dir, corpus=corpus, seq_len=seq_len, seq_step=seq_step, batching=batching, batch_size=batch_size,
                      optimizer=optimizer, lr=lr, lr_schedule=lr_schedule, clip=clip, max_epochs=max_epochs,
                      patience=patience, max_minutes=max_minutes, min_freq=min_freq, limit_poems=limit_poems,
                      seed=seed, device=device, bf16=bf16, model=dict(cell=cell, activation=activation, embed_dim=embed_dim,
                                            hidden_dim=hidden_dim, num_layers=layers,
                                            dropout=dropout, softmax=softmax, tie_weights=tie_weights))
    # with --resume, the run keeps its own settings; only limits given on this command line change
    ctx = click.get_current_context()
    limits = {name: value for name, value in (("max_epochs", max_epochs), ("max_minutes", max_minutes))
              if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE}
    trainer = run_or_exit(Trainer, cfg, resume=resume, log=lambda msg: click.echo(msg, err=True), limits=limits)
    try:
        result = trainer.fit()
    except KeyboardInterrupt:
        sys.exit(130)
    if result:  # rank 0 of a distributed run, or the only process
        click.echo(json.dumps(result))


@click.command("evaluate")
@click.argument("checkpoint", type=click.Path(dir_okay=False), default=str(SHIPPED_MODEL))
@click.option("--split", type=click.Choice(["train", "valid", "test"]), default="test", show_default=True)
@click.option("--file", "poem_file", type=click.Path(dir_okay=False), default=None,
              help="Score this UTF-8 file of poems (one per line) instead of a corpus split.")
@click.option("--corpus", type=click.Path(dir_okay=False), default=str(DEFAULT_CORPUS), show_default="corpus/tang.jsonl.xz")
@click.option("--as-generated", is_flag=True,
              help="Read the poems one token at a time with generation's int8 weights, not whole with the model's own.")
@threads_option
def evaluate_command(checkpoint, split, poem_file, corpus, as_generated, threads):
    """Print the perplexity of CHECKPOINT on a corpus split or on a file of poems."""
    set_threads(threads)
    from .checkpoint import load_model
    from .corpus import load_corpus, read_poem_file
    from .evaluate import perplexity
    from .stepper import Stepper

    model, table, _ = run_or_exit(load_model, checkpoint)
    if poem_file:
        poems, source = run_or_exit(read_poem_file, poem_file), poem_file
    else:
        poems, source = [p.text for p in run_or_exit(load_corpus, corpus)[split]], f"{split} split"
    report = perplexity(model, table, poems, step=Stepper(model) if as_generated else None)
    click.echo(f"{source}: perplexity {report.perplexity:.2f} over {report.tokens} tokens in {report.poems} poems "
               f"(<unk> rate {100 * report.unk_rate:.2f}%)")


def form_option(ctx, param, value):
    from .forms import parse_form

    try:
        return parse_form(value) if value else None
    except ValueError as err:
        raise click.BadParameter(str(err)) from None


@click.command("generate")
@click.argument("chars", required=False, default="")
@click.option("--start", "start_texts", multiple=True,
              help="A start text for one poem (repeatable); CHARS gives one poem per character.")
@model_option
@click.option("-n", "--num", type=click.IntRange(1, 1000), default=1, show_default=True, help="Poems per start.")
@click.option("--form", callback=form_option, default=None,
              help="五绝, 七绝, 五律 or 七律 (wujue, qijue, wulv, qilv): 4 or 8 lines of 5 or 7 characters.")
@click.option("--acrostic", default="", help="Line i begins with the i-th character (藏头诗).")
@click.option("--rhyme/--no-rhyme", default=None, help="Even lines end in one 平水韵 group [default: on with --form].")
@click.option("--rhyme-first", is_flag=True, help="The first line rhymes too.")
@click.option("--tones", is_flag=True, help="Regulated 平仄 (平起 or 仄起) on the 2nd, 4th, 6th and last characters.")
@click.option("--no-repeat", is_flag=True, help="No character twice in a poem (punctuation aside).")
@click.option("--best-of", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Sample K candidates per poem in one batch; keep the likeliest (per token).")
@click.option("--beam", type=click.IntRange(0, 64), default=0, help="Beam search of width N instead of sampling (0: sample).")
@click.option("--prime", default="", help="Read this first, as earlier verses of the poem, without printing it.")
@click.option("--temperature", type=click.FloatRange(0, min_open=True), default=0.8, show_default=True)
@click.option("--top-k", type=click.IntRange(0), default=0, show_default=True, help="0 keeps every character.")
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=0.95, show_default=True)
@click.option("--greedy", is_flag=True, help="Always take the most likely character.")
@click.option("--max-len", type=click.IntRange(1, 10000), default=128, show_default=True,
              help="Most characters per poem without --form.")
@click.option("--script", type=click.Choice(["simplified", "traditional"]), default="simplified", show_default=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: one object per line with text, lines, form, rhyme, per-character log-probabilities.")
@click.option("-v", "--verbose", is_flag=True, help="On stderr: each poem's rhyme, score and dropped constraints.")
@click.option("--seed", type=int, default=None, help="Random seed: the same seed writes the same poems.")
@threads_option
def generate_command(chars, start_texts, checkpoint, num, form, acrostic, rhyme, rhyme_first, tones, no_repeat,
                     best_of, beam, prime, temperature, top_k, top_p, greedy, max_len, script, fmt, verbose, seed,
                     threads):
    """Write poems that begin with each of CHARS (e.g. 日红山夜湖海月), or with each --start text.

    Input in either script is accepted and read as simplified script."""
    set_threads(threads)
    import torch

    from .checkpoint import load_model
    from .corpus import to_simplified, to_traditional
    from .forms import Constraints
    from .sample import SampleOptions, generate, verses

    if beam and best_of > 1:
        raise click.BadParameter("choose --beam or --best-of, not both", param_hint="--beam")
    starts = [to_simplified(t) for t in [*chars, *start_texts]] or [""]
    cons = run_or_exit(Constraints, form, to_simplified(acrostic), form is not None if rhyme is None else rhyme,
                       rhyme_first, tones, no_repeat)
    model, table, _ = run_or_exit(load_model, checkpoint)
    generator = torch.Generator()
    generator.manual_seed(seed if seed is not None else torch.seed())
    opts = SampleOptions(temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy, max_len=max_len,
                         best_of=best_of, beam=beam, prime=to_simplified(prime))
    poems = run_or_exit(generate, model, table, [s for s in starts for _ in range(num)], opts, generator, cons)
    script_of = to_traditional if script == "traditional" else str
    for i, poem in enumerate(poems, 1):
        if verbose:
            click.echo(f"poem {i}: mean log-probability {poem.score:.3f}"
                       + "".join(f"; rhyme {script_of(g)}" for g in poem.rhyme)
                       + "".join(f"; {event}" for event in poem.backoffs), err=True)
    if fmt == "json":
        for poem in poems:
            text = script_of(poem.text)
            click.echo(json.dumps({"text": text, "lines": verses(text), "form": form and form.name,
                                   "rhyme": [script_of(g) for g in poem.rhyme], "score": round(poem.score, 4),
                                   "logprobs": [round(lp, 4) for lp in poem.logprobs]}, ensure_ascii=False))
    else:
        click.echo("\n\n".join("\n".join(verses(script_of(p.text))) for p in poems))


@click.command("score")
@click.argument("poem", required=False)
@click.option("--file", "poem_file", type=click.Path(dir_okay=False), default=None,
              help="Score every poem of this UTF-8 file (one per line) instead of POEM.")
@model_option
@click.option("--top", type=click.IntRange(0), default=5, show_default=True, help="Most surprising characters to list.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@threads_option
def score_command(poem, poem_file, checkpoint, top, fmt, threads):
    """How Tang-like is POEM (either script): per-character surprisal and perplexity under the model."""
    set_threads(threads)
    from .checkpoint import load_model
    from .corpus import read_poem_file, to_simplified
    from .sample import verses
    from .score import score_poem

    if (poem is None) == (poem_file is None):
        raise click.UsageError("give a POEM or --file, one of the two")
    texts = run_or_exit(read_poem_file, poem_file) if poem_file else ["".join(to_simplified(poem).split())]
    if not texts[0]:
        raise click.ClickException("the poem is empty")
    model, table, _ = run_or_exit(load_model, checkpoint)
    for text in texts:
        s = score_poem(model, table, text)
        r = s.report
        if fmt == "json":
            click.echo(json.dumps({"text": text, "perplexity": round(r.perplexity, 3), "surprisal": round(r.nll, 3),
                                   "tokens": r.tokens, "unknown": r.unk_tokens,
                                   "per_token": [[tok, round(nats, 3)] for tok, nats in s.surprisal],
                                   "most_surprising": [[tok, round(nats, 3)] for tok, nats in s.most_surprising(top)]},
                                  ensure_ascii=False))
            continue
        click.echo(f"{text}\n  perplexity {r.perplexity:.2f}, surprisal {r.nll:.2f} nats over {r.tokens} tokens "
                   f"(the end included), {r.unk_tokens} unknown to the model")
        click.echo("  most surprising: " + ", ".join(f"{tok} {nats:.2f}" for tok, nats in s.most_surprising(top)))
        tokens = iter(s.surprisal)
        for chunk in [*(islice(tokens, len(line)) for line in verses(text)), tokens]:  # a verse a line, then the end
            click.echo("  " + "  ".join(f"{tok} {nats:.2f}" for tok, nats in chunk))


@click.group()
def main():
    """poetry_lm: a character-level LSTM that writes Tang poems."""


main.add_command(train_command)
main.add_command(evaluate_command)
main.add_command(generate_command)
main.add_command(score_command)
