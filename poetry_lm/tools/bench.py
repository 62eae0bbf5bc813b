"""Training-speed benchmark: ``python -m poetry_lm bench [--threads N] [--quick] [--device cuda]``.

One run measures, and prints as markdown:

1. the machine: threads, torch version, CPU model (or GPU), and the single-process GEMM peak (a
   1024×1024 float32 matmul; 4096×4096 on a GPU) that the other sections are compared with;
2. the recurrent layer, one training step (forward + backward, B = 64, T = 64): ``torch.nn.LSTM``
   vs the step-by-step autograd loop vs the fused op (``poetry_lm.model.fused.lstm_sequence``), in
   tokens/s, GFLOP/s and as a fraction of the GEMM peak;
3. the output layer, one training step: full softmax (Linear H → V + cross-entropy) vs
   ``torch.nn.AdaptiveLogSoftmaxWithLoss``, on Zipf-distributed targets;
4. generation: time per free poem (up to 32 characters) and per rhymed 七绝, with 平仄 (the
   default) and without, alone and in a batch of 100, with the shipped model (on the CPU only: its
   int8 stepper is a CPU path).

Every time is the median of several repetitions after a warm-up, with the implementations
interleaved (A B C A B C …) so that load from other processes falls on all of them alike.
With ``--device cuda`` sections 2 and 3 run on the GPU, ``nn.LSTM`` there being cuDNN's, and each
repetition waits for the GPU to finish (wall time).
A section is a function ``(Settings, results) → list of markdown lines`` in ``SECTIONS``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import click
import torch
import torch.nn.functional as F

from poetry_lm.model.kernels import choice, cpu_step, gemm
from poetry_lm.model.kernels.gemm import cpu_model
from poetry_lm.model.lm import LSTMLayer, RecurrentLayer
from poetry_lm.paths import SHIPPED_MODEL


@dataclass
class Settings:
    threads: int = 1
    device: str = "cpu"  # "cpu" or "cuda": where sections 2 and 3 run
    batch: int = 64  # B: sequences per training step
    steps: int = 64  # T: time steps per sequence
    lstm_sizes: list[tuple[int, int]] = field(  # (E, H) pairs: input and hidden width
        default_factory=lambda: [(256, 256), (256, 512), (512, 1024)]
    )
    reps: int = 5  # timed repetitions per measurement (after 1 warm-up)
    gemm_n: int = 1024  # the peak is an n×n @ n×n float32 matmul
    gemm_reps: int = 20
    vocab: int = 6868  # the poems' character vocabulary
    softmax_hidden: int = 512  # the output layer's input width in its section
    cutoffs: list[int] = field(default_factory=lambda: [800, 2500])
    div_value: float = 4.0  # as PoetryLM uses
    # generation: this checkpoint, or where it is missing an untrained
    gen_model: str = str(SHIPPED_MODEL)
    gen_embed: int = 256  # model of this embedding width
    gen_hidden: int = 768  # and hidden width
    gen_batch: int = 100  # poems decoded together in the batched timing


QUICK = dict(
    batch=8,
    steps=8,
    lstm_sizes=[(32, 32), (32, 64)],
    reps=3,
    gemm_reps=5,
    softmax_hidden=64,
    gen_model="",
    gen_embed=16,
    gen_hidden=32,
    gen_batch=4,
)
ON_GPU = dict(gemm_n=4096)  # a 1024² matmul is too small to keep a GPU busy


def clock_for(threads: int, device: str = "cpu") -> tuple[Callable[[], float], str]:
    """With one thread on the CPU, the process's CPU time (user + system, page faults included):
    it does not count the time the OS gives to other processes, so a shared machine reads the same
    as an idle one. With more threads CPU time adds up the threads, and a GPU works while the CPU
    waits, so both fall back to wall time (on a GPU after waiting for its queued work)."""
    if device == "cuda":

        def gpu_clock() -> float:
            torch.cuda.synchronize()
            return time.perf_counter()

        return gpu_clock, "wall time, after the GPU has finished its queued work"
    if threads == 1:
        return (
            time.process_time,
            "process CPU time (1 thread: time-slicing by other processes is not counted)",
        )
    return time.perf_counter, "wall time"


def median_times(
    fns: dict[str, Callable[[], object]], reps: int, warmup: int = 1, device: str = "cpu"
) -> dict[str, float]:
    """Median time in seconds of each function, by ``clock_for`` the current thread count and
    the device the functions run on; the functions run interleaved."""
    clock = clock_for(torch.get_num_threads(), device)[0]
    return gemm.median_times(fns, reps, warmup, clock)


def gemm_peak(n: int, reps: int, device: str = "cpu") -> float:
    """GFLOP/s of an n×n @ n×n float32 matmul (2n³ FLOPs): the practical peak on this process."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    out = torch.empty(n, n, device=device)
    seconds = median_times(
        {"gemm": lambda: torch.mm(a, b, out=out)}, reps, warmup=2, device=device
    )["gemm"]
    return 2 * n**3 / seconds / 1e9


def machine_section(s: Settings, results: dict) -> list[str]:
    results["gemm_gflops"] = peak = gemm_peak(s.gemm_n, s.gemm_reps, s.device)
    lines = [f"- threads: {torch.get_num_threads()}, torch {torch.__version__}, CPU: {cpu_model()}"]
    if s.device == "cuda":
        tf32 = "on" if torch.backends.cuda.matmul.allow_tf32 else "off"
        lines.append(
            f"- GPU: {torch.cuda.get_device_name()}, CUDA {torch.version.cuda}, cuDNN "
            f"{torch.backends.cudnn.version()}; TF32 matmuls {tf32} (torch's default), "
            "so float32 is float32"
        )
    return lines + [
        f"- GEMM peak ({s.gemm_n}×{s.gemm_n} float32 matmul on {s.device}, "
        f"median of {s.gemm_reps}): {peak:.1f} GFLOP/s",
        f"- timings: median of {s.reps} repetitions after 1 warm-up, implementations interleaved; "
        f"clock: {clock_for(torch.get_num_threads(), s.device)[1]}",
        "",
    ]


# ---------------------------------------------------------------------------------------------
# The recurrent layer


def lstm_flops_per_token(input_size: int, hidden_size: int) -> tuple[int, int]:
    """(forward, training) FLOPs per token of one LSTM layer, counting only the matmuls.

    Forward: 2·(4H·I + 4H·H) (input and recurrent GEMMs, a multiply-add = 2 FLOPs). Backward
    costs twice that (one GEMM for the input gradient, one for the weight gradient, per matmul),
    so a training step is 3× the forward. Elementwise gate work is O(H) and left out.
    """
    forward = 2 * (4 * hidden_size * input_size + 4 * hidden_size * hidden_size)
    return forward, 3 * forward


def lstm_step_functions(
    E: int, H: int, B: int, T: int, device: str = "cpu"
) -> dict[str, Callable[[], None]]:
    """One training step (forward + backward of the layer alone, gradients for the weights and
    the input x) for each implementation, all with the same weights and input."""
    torch.manual_seed(0)
    layer = LSTMLayer(E, H).to(device)
    reference = torch.nn.LSTM(E, H).to(device)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(reference, f"{name}_l0").copy_(getattr(layer, name))
    # as if from the embedding: it gets a gradient
    x = torch.randn(T, B, E, device=device, requires_grad=True)
    zeros = torch.zeros(B, H, device=device)
    grad_out = torch.randn(T, B, H, device=device)  # stands in for the output layer's gradient
    params = [x, *layer.parameters(), *reference.parameters()]

    def step(forward: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def run():
            for p in params:
                p.grad = None
            forward().backward(grad_out)

        return run

    return {
        "nn.LSTM": step(lambda: reference(x, (zeros[None], zeros[None]))[0]),
        # the step-by-step loop every cell inherits; LSTMLayer overrides it with the fused op
        "autograd loop": step(lambda: RecurrentLayer.forward(layer, x, (zeros, zeros))[0]),
        "fused": step(lambda: layer(x, (zeros, zeros))[0]),
    }


def lstm_section(s: Settings, results: dict) -> list[str]:
    peak = results["gemm_gflops"]
    tokens = s.batch * s.steps
    lines = [
        f"### LSTM layer on {s.device}, one training step (forward + backward), "
        f"B = {s.batch}, T = {s.steps}",
        "",
        "| E | H | implementation | ms / step | tokens/s | GFLOP/s | % of GEMM peak "
        "| speed vs nn.LSTM |",
        "|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    results["lstm"], chosen = [], []
    for E, H in s.lstm_sizes:
        _, flops = lstm_flops_per_token(E, H)
        fns = lstm_step_functions(E, H, s.batch, s.steps, s.device)
        # the path the fused op takes (on a new machine or shape this measures the GEMMs)
        how = choice.paths(torch.empty(s.steps, s.batch, E, device=s.device), H)
        chosen.append(f"- E = {E}, H = {H}: " + ", ".join(f"{k} {v}" for k, v in how.items()))
        seconds = median_times(fns, s.reps, device=s.device)
        for name, sec in seconds.items():
            gflops = flops * tokens / sec / 1e9
            ratio = seconds["nn.LSTM"] / sec
            results["lstm"].append(
                dict(E=E, H=H, impl=name, seconds=sec, ratio=ratio, gflops=gflops)
            )
            lines.append(
                f"| {E} | {H} | {name} | {sec * 1e3:.1f} | {tokens / sec:,.0f} | {gflops:.1f} "
                f"| {100 * gflops / peak:.0f}% | {ratio:.2f}× |"
            )
    lines += [
        "",
        "FLOPs per token counted as 3 · 2·(4H·E + 4H·H) (forward matmuls, backward twice that); "
        "speed vs nn.LSTM = nn.LSTM's time / this time (> 1 is faster).",
        "",
        "The fused op's path at each size (`poetry_lm/model/kernels/choice.py`, `paths`): the "
        "GEMM backend of each role (`kernels/gemm.py`, measured once per machine and shape, "
        "cached), the step's elementwise path and whether the time loop is a CUDA graph:",
        "",
        *chosen,
        f"- the C step kernel: {cpu_step.status()}" if s.device == "cpu" else "",
        "",
    ]
    return lines


# ---------------------------------------------------------------------------------------------
# The output layer


def zipf_targets(n: int, vocab: int, generator: torch.Generator) -> torch.Tensor:
    """n token ids with p(rank) ∝ 1/rank, id = rank − 1: a stand-in for the corpus's character
    frequencies, in the frequency-sorted order that the adaptive softmax's cutoffs assume."""
    p = 1.0 / torch.arange(1, vocab + 1, dtype=torch.float64)
    return torch.multinomial(p / p.sum(), n, replacement=True, generator=generator)


def softmax_section(s: Settings, results: dict) -> list[str]:
    H, V, N = s.softmax_hidden, s.vocab, s.batch * s.steps
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    hidden = torch.randn(N, H, device=s.device, requires_grad=True)
    targets = zipf_targets(N, V, gen).to(s.device)
    full = torch.nn.Linear(H, V).to(s.device)
    adaptive = torch.nn.AdaptiveLogSoftmaxWithLoss(H, V, s.cutoffs, div_value=s.div_value).to(
        s.device
    )
    params = [hidden, *full.parameters(), *adaptive.parameters()]

    def step(loss: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def run():
            for p in params:
                p.grad = None
            loss().backward()

        return run

    seconds = median_times(
        {
            "full softmax": step(lambda: F.cross_entropy(full(hidden), targets)),
            "adaptive softmax": step(lambda: adaptive(hidden, targets).loss),
        },
        s.reps,
        device=s.device,
    )
    shares = [(targets < s.cutoffs[0]).double().mean().item()]
    bounds = [*s.cutoffs, V]
    shares += [
        ((targets >= lo) & (targets < hi)).double().mean().item()
        for lo, hi in zip(bounds, bounds[1:])
    ]
    results["softmax"] = seconds
    lines = [
        f"### Output layer on {s.device}, one training step (forward + backward), H = {H}, "
        f"V = {V}, {N} tokens",
        "",
        "| output layer | ms / step | tokens/s | speed vs full |",
        "|---|---:|---:|---:|",
    ]
    for name, sec in seconds.items():
        lines.append(
            f"| {name} | {sec * 1e3:.1f} | {N / sec:,.0f} | {seconds['full softmax'] / sec:.2f}× |"
        )
    lines += [
        "",
        f"Adaptive: cutoffs {s.cutoffs}, div_value {s.div_value}. Targets drawn from a Zipf "
        f"stand-in for the corpus frequencies, p(rank) ∝ 1/rank; share of targets per cluster "
        f"(head, tails): {', '.join(f'{x:.1%}' for x in shares)}.",
        "",
    ]
    return lines


def generation_model(s: Settings):
    """The shipped model and its characters where ``s.gen_model`` names a file, else an untrained
    model (E = gen_embed, H = gen_hidden, adaptive softmax, V = vocab) over real ideographs
    (一, 丁, 丂 …), so that the 七绝's rhyme and line rules have characters to use."""
    from poetry_lm.model.checkpoint import load_model
    from poetry_lm.model.lm import ModelConfig, PoetryLM
    from poetry_lm.text.vocab import SPECIALS, CharTable

    if s.gen_model and os.path.isfile(s.gen_model):
        model, table, _ = load_model(s.gen_model)
        return model, table, os.path.basename(s.gen_model)
    table = CharTable(
        [*SPECIALS, "，", "。", *(chr(0x4E00 + i) for i in range(s.vocab - len(SPECIALS) - 2))]
    )
    torch.manual_seed(0)
    model = PoetryLM(
        ModelConfig(
            vocab_size=s.vocab,
            embed_dim=s.gen_embed,
            hidden_dim=s.gen_hidden,
            softmax="adaptive",
            cutoffs=s.cutoffs,
            couplet_input=False,
        )
    ).eval()
    return model, table, "an untrained model"


def generation_runs(model, table, batch: int) -> dict:
    """{(poem kind, poems, weights): a call that writes them}: ``poems`` poems that start 月,
    each from its own seed (``poem_seeds(0, poems)``), by the decoding loop alone; each call
    returns one list of candidates (just one) per poem."""
    from poetry_lm.decoding.loop import candidates
    from poetry_lm.model.stepper import Stepper
    from poetry_lm.request import PoemRequest
    from poetry_lm.writing.writer import poem_seeds

    sampling = dict(temperature=0.8, top_p=0.95)
    kinds = {  # the requests' options alone are checked: the untrained model has no 月
        "free, ≤ 32 characters": PoemRequest.of(max_len=32, **sampling).check(),
        "七绝, rhymed, 平仄": PoemRequest.of(form="七绝", **sampling).check(),
        "七绝, rhymed, no 平仄": PoemRequest.of(form="七绝", tones=False, **sampling).check(),
    }
    # weights packed once, as the CLI does
    steppers = {"int8": Stepper(model), "float32": Stepper(model, int8=False)}
    seeds = {n: poem_seeds(0, n) for n in (1, batch)}
    return {
        (kind, n, weights): (
            lambda n=n, request=request, step=step, seeds=seeds[n]: candidates(
                step, table, request, ["月"] * n, seeds
            )
        )
        for kind, request in kinds.items()
        for n in (1, batch)
        for weights, step in steppers.items()
    }


def generation_section(s: Settings, results: dict) -> list[str]:
    """Time to write a free poem (up to 32 characters) and a rhymed 七绝 (28 characters + 4
    marks), with 平仄 as the command line writes it by default and without (``--no-tones``), with
    the command line's sampling defaults, alone and as a batch, on the CPU."""
    if s.device != "cpu":
        return [
            "### Generation",
            "",
            "Generation runs on the CPU (an int8 stepper): run the benchmark "
            "without `--device cuda` to time it.",
            "",
        ]
    model, table, source = generation_model(s)
    config = model.config
    runs = generation_runs(model, table, s.gen_batch)
    seconds = median_times(runs, s.reps)
    # every run writes the same poems (seeded): their length, marks included
    chars = {key: sum(len(poem.text) for (poem,) in run()) / key[1] for key, run in runs.items()}
    results["generation"] = seconds
    lines = [
        f"### Generation from {source} (E = {config.embed_dim}, H = {config.hidden_dim}, "
        f"V = {config.vocab_size}, {config.softmax} softmax), temperature 0.8, top-p 0.95",
        "",
        "| poem | batch | weights read as | characters / poem | ms in all | ms / poem |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for (kind, n, weights), sec in seconds.items():
        lines.append(
            f"| {kind} | {n} | {weights} | {chars[kind, n, weights]:.1f} | {sec * 1e3:.1f} "
            f"| {sec * 1e3 / n:.2f} |"
        )
    return lines + [
        "",
        "A free poem ends where the model ends it or at 32 characters; a 七绝 is 32 "
        "(28 and 4 marks), then the end token. 平仄 is generate's default for a form; "
        "no 平仄 is `--no-tones`.",
        "",
    ]


SECTIONS: list[Callable[[Settings, dict], list[str]]] = [
    machine_section,
    lstm_section,
    softmax_section,
    generation_section,
]


def run_benchmark(settings: Settings, echo: Callable[[str], None] = print) -> dict:
    """Run every section in order, echoing its markdown as soon as it is done; returns the
    numbers."""
    torch.set_num_threads(settings.threads)
    results: dict = {}
    echo("## poetry_lm training-speed benchmark\n")
    for section in SECTIONS:
        echo("\n".join(section(settings, results)))
    return results


@click.command()
@click.option("--threads", default=1, show_default=True, help="torch intra-op threads")
@click.option(
    "--quick", is_flag=True, help="tiny sizes and few repetitions: a smoke test, not a measurement"
)
@click.option(
    "--device",
    type=click.Choice(["cpu", "cuda"]),
    default="cpu",
    show_default=True,
    help="where the LSTM and output-layer sections run (generation is timed on the CPU only)",
)
def bench_command(threads: int, quick: bool, device: str):
    """Measure training-step speed of the LSTM layer and the output layer; print markdown."""
    if device == "cuda" and not torch.cuda.is_available():
        raise click.UsageError("--device cuda was asked for, but torch sees no CUDA device")
    settings = Settings(
        threads=threads,
        device=device,
        **(QUICK if quick else {}),
        **(ON_GPU if device == "cuda" and not quick else {}),
    )
    start = time.perf_counter()
    run_benchmark(settings, echo=click.echo)
    click.echo(f"Total benchmark time: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    bench_command()
