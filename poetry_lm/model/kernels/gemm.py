"""The fused LSTM's matrix products on a CPU, each through the library that is fastest here.

A CPU build of torch carries two GEMM libraries: Intel's MKL (``torch.mm``, and a packed-weight
product ``torch.ops.mkl._mkl_linear``) and oneDNN (``torch.ops.mkldnn._linear_pointwise``, the
library behind ``nn.LSTM``). Which is faster depends on the vendor: MKL is tuned for Intel and on
an AMD EPYC took ~30% longer than oneDNN for the recurrent product at H = 1024 (measured in
``docs/performance.md``). So the op measures once, per machine and shape, and keeps the answer:

- role ``recurrent``: the per-step product ``h ↦ h W_hhᵀ`` (B, H) → (B, 4H) and its backward
  ``da ↦ da W_hh`` (B, 4H) → (B, H), over backends ``mkl`` (weight packed once per call),
  ``onednn``, ``onednn-t`` (the same product computed transposed) and ``plain`` (``torch.mm``);
- role ``linear``: the products over all T·B rows at once, ``m ↦ m Wᵀ (+ b)``: the input GEMM
  x W_ihᵀ + b and dx = da W_ih, over ``onednn`` and ``plain`` (``torch.mm``/``torch.addmm``, which
  are MKL's sgemm on such a build);
- role ``weight``: the weight gradients dW_ih = daᵀ x and dW_hh = daᵀ h over all T·B rows, over
  ``onednn`` (computing (mᵀ da)ᵀ from a transposed copy of the narrow operand m) and ``plain``.

The choice is cached in memory and in ``gemm_choice.json`` under ``cache_dir()``
(``$POETRY_LM_CACHE``, else ``$XDG_CACHE_HOME/poetry_lm``, else ``~/.cache/poetry_lm``), keyed by
the CPU model, torch version, thread count, role and shape; delete the file to measure again.
``POETRY_LM_GEMM=mkl|onednn|onednn-t|plain`` skips the measurement and forces one backend (where it
applies). Anything but float32 on the CPU uses ``plain``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

Product = Callable[[torch.Tensor], torch.Tensor]

PACK_FROM_STEPS = 32  # packing costs about as much as 10–30 unpacked steps' GEMMs save
BACKENDS = ("mkl", "onednn", "onednn-t", "plain")
_chosen: dict[str, str] = {}  # cache key → backend, this process


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` says."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cache_dir() -> Path:
    """Where measured choices and the compiled step kernel are kept (not created here)."""
    if os.environ.get("POETRY_LM_CACHE"):
        return Path(os.environ["POETRY_LM_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "poetry_lm"


def available(backend: str) -> bool:
    """Whether this torch build has the library a backend needs."""
    if backend == "mkl":
        return torch.backends.mkl.is_available()
    if backend in ("onednn", "onednn-t"):
        return torch.backends.mkldnn.is_available() and hasattr(
            torch.ops.mkldnn, "_linear_pointwise"
        )
    return backend == "plain"


def onednn_linear(m: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None):
    """m (N, K) @ weight (O, K)ᵀ (+ bias (O,)) by oneDNN; weight must be contiguous."""
    return torch.ops.mkldnn._linear_pointwise(m, weight, bias, "none", [], "")


# ---------------------------------------------------------------------------------------------
# the products of each backend


def recurrent_product(backend: str, weight: torch.Tensor, rows: int) -> Product:
    """``m ↦ m @ weightᵀ`` for (rows, K) inputs, repeated over the steps of one call; weight
    (O, K) is packed (mkl) or made contiguous (onednn) once here. ``onednn-t`` computes the
    transposed product weight @ mᵀ (O, rows), ~10% faster in oneDNN at B = 64, and returns it
    as a (rows, O) view with strides (1, rows): the step kernel reads either layout."""
    if backend == "mkl":
        weight = weight.contiguous()
        packed = torch.ops.mkl._mkl_reorder_linear_weight(weight, rows)
        return lambda m: torch.ops.mkl._mkl_linear(m, packed, weight, None, rows)
    if backend == "onednn":
        weight = weight.contiguous()
        return lambda m: onednn_linear(m, weight)
    if backend == "onednn-t":
        weight = weight.contiguous()
        return lambda m: onednn_linear(weight, m).t()
    return lambda m: m @ weight.t()


def linear_product(backend: str) -> Callable[..., torch.Tensor]:
    """``linear(m, w, b=None) = m @ wᵀ (+ b)`` for m (N, K), w (O, K), b (O,)."""
    if backend == "onednn":
        return lambda m, w, b=None: onednn_linear(m, w.contiguous(), b)

    def linear(m: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        return m @ w.t() if b is None else torch.addmm(b, m, w.t())

    return linear


def weight_product(backend: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``weight_grad(d, m) = dᵀ @ m`` for d (N, O), m (N, K) → (O, K): the weight gradient of a
    linear map summed over N rows. oneDNN's result is a transposed view (strides (1, O))."""
    if backend == "onednn":
        # oneDNN takes its second operand in any layout (it repacks it anyway) but wants the
        # first contiguous: so (mᵀ d)ᵀ, copying the narrow m (K ≤ O) rather than d
        return lambda d, m: onednn_linear(m.t().contiguous(), d.t()).t()
    return lambda d, m: d.t() @ m


# ---------------------------------------------------------------------------------------------
# choosing by measurement


def median_times(
    fns: dict[str, Callable[[], object]],
    reps: int = 5,
    warmup: int = 1,
    clock: Callable[[], float] | None = None,
) -> dict[str, float]:
    """Median time in seconds of each function, run interleaved (A B C A B C …) after
    ``warmup`` rounds. The default clock: CPU time with one thread (a shared machine's other
    processes then do not count), else wall time. (The benchmark passes its own clock.)"""
    if clock is None:
        clock = time.process_time if torch.get_num_threads() == 1 else time.perf_counter
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            start = clock()
            fn()
            times[name].append(clock() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _measure_recurrent(candidates: list[str], rows: int, hidden: int) -> dict[str, float]:
    """Seconds for 4 steps of the forward and 4 of the backward recurrent product."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(4 * hidden, hidden, generator=g) * 0.05  # W_hh (4H, H)
    h, da = torch.randn(rows, hidden, generator=g), torch.randn(rows, 4 * hidden, generator=g)
    fns = {}
    for name in candidates:
        fwd, bwd = recurrent_product(name, w, rows), recurrent_product(name, w.t(), rows)
        fns[name] = lambda fwd=fwd, bwd=bwd: [(fwd(h), bwd(da)) for _ in range(4)]
    return median_times(fns)


def _measure_all_rows(
    role: str, candidates: list[str], rows: int, inputs: int, hidden: int
) -> dict[str, float]:
    """Seconds for the role's products over all rows (``linear``: input GEMM and dx; ``weight``:
    dW_ih and dW_hh), on at most 1024 rows so that the measurement stays short (it is still
    the longest part of the measurement: seconds at H = 1024)."""
    rows = min(rows, 1024)
    g = torch.Generator().manual_seed(0)
    x, hs = torch.randn(rows, inputs, generator=g), torch.randn(rows, hidden, generator=g)
    w, b = torch.randn(4 * hidden, inputs, generator=g), torch.randn(4 * hidden, generator=g)
    da = torch.randn(rows, 4 * hidden, generator=g)
    fns = {}
    for name in candidates:
        if role == "linear":
            linear = linear_product(name)
            fns[name] = lambda linear=linear: (linear(x, w, b), linear(da, w.t()))
        else:
            weight_grad = weight_product(name)
            fns[name] = lambda weight_grad=weight_grad: (weight_grad(da, x), weight_grad(da, hs))
    return median_times(fns, reps=3)


def _cache_file() -> Path:
    return cache_dir() / "gemm_choice.json"


def _load_cache() -> dict[str, str]:
    try:
        return json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}


def _save_choice(key: str, backend: str) -> None:
    """Add one choice to the file; an unwritable cache only costs a measurement next run."""
    try:
        stored = _load_cache()
        stored[key] = backend
        path = _cache_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(stored, indent=1, sort_keys=True))
        os.replace(tmp, path)  # atomic: processes measuring at once cannot corrupt it
    except OSError:
        pass


def choose(role: str, rows: int, inputs: int, hidden: int, steps: int) -> str:
    """The backend for ``role`` ("recurrent", "linear" or "weight") on float32 CPU tensors of
    this shape: forced by ``POETRY_LM_GEMM``, else cached, else measured now (once per machine
    and shape). rows = B for "recurrent", else T·B; raises ValueError for an unknown forced name."""
    candidates = [b for b in BACKENDS if available(b)]
    if role != "recurrent":  # (oneDNN's big products are as fast either way round)
        candidates = [b for b in candidates if b in ("onednn", "plain")]
    elif steps < PACK_FROM_STEPS:
        candidates = [b for b in candidates if b != "mkl"]
    forced = os.environ.get("POETRY_LM_GEMM")
    if forced:
        if forced not in BACKENDS:
            raise ValueError(f"POETRY_LM_GEMM must be one of {', '.join(BACKENDS)}, not {forced!r}")
        if forced == "onednn-t" and role != "recurrent":
            forced = "onednn"
        return forced if forced in candidates else "plain"
    if len(candidates) == 1:
        return candidates[0]
    size = f"{rows}x{hidden}" if role == "recurrent" else f"{min(rows, 1024)}x{inputs}x{hidden}"
    threads = torch.get_num_threads()
    key = (
        f"{cpu_model()} | torch {torch.__version__} | {threads} threads | {role} {size} "
        f"| {' '.join(candidates)}"
    )
    if key not in _chosen:
        backend = _load_cache().get(key)
        if backend not in candidates:
            if role == "recurrent":
                seconds = _measure_recurrent(candidates, rows, hidden)
            else:
                seconds = _measure_all_rows(role, candidates, rows, inputs, hidden)
            backend = min(seconds, key=seconds.get)
            _save_choice(key, backend)
        _chosen[key] = backend
    return _chosen[key]


def backends_for(x: torch.Tensor, hidden: int) -> dict[str, str]:
    """The backend of each role for an input x (T, B, I) and hidden width H."""
    roles = ("recurrent", "linear", "weight")
    if x.device.type != "cpu" or x.dtype != torch.float32:
        return dict.fromkeys(roles, "plain")
    T, B, I = x.shape
    return {role: choose(role, B if role == "recurrent" else T * B, I, hidden, T) for role in roles}


def report(inputs: int, hidden: int, batch: int = 64, steps: int = 64) -> list[str]:
    """Measure every available backend of each role at one shape (what ``choose`` compares),
    as markdown lines: ``python -m poetry_lm.model.kernels.gemm E H [B T]``."""
    lines = [f"CPU: {cpu_model()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)"]
    start, start_cpu = time.perf_counter(), time.process_time()
    for role in ("recurrent", "linear", "weight"):
        candidates = [b for b in BACKENDS if available(b)]
        if role == "recurrent":
            what = f"4 steps forward + 4 backward, B = {batch}, H = {hidden}"
            seconds = _measure_recurrent(candidates, batch, hidden)
        else:
            candidates = [b for b in candidates if b in ("onednn", "plain")]
            what = f"{min(batch * steps, 1024)} rows, I = {inputs}, H = {hidden}"
            seconds = _measure_all_rows(role, candidates, batch * steps, inputs, hidden)
        best = min(seconds.values())
        cells = ", ".join(f"{b} {1e3 * t:.2f} ms ({best / t:.2f})" for b, t in seconds.items())
        lines.append(f"- {role} ({what}): {cells}")
    wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    return lines + [
        f"These measurements, which the op makes once per shape, took {wall:.1f} s "
        f"({cpu:.1f} s of this process's CPU time)."
    ]


if __name__ == "__main__":
    import sys

    torch.set_num_threads(1)
    print("\n".join(report(*map(int, sys.argv[1:]))))
