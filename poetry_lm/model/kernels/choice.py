"""How a call of the fused LSTM runs: the GEMM backend of each role and the step's elementwise
path (a compiled C loop, a Triton kernel or torch's kernels), and whether the time loop is a CUDA
graph. ``POETRY_LM_STEP`` and ``POETRY_LM_GEMM`` force a path (see ``docs/performance.md``)."""

from __future__ import annotations

import os

import torch

from poetry_lm.model.kernels import cpu_step, gemm, triton_lstm

STEPS = {"c": "C kernel", "triton": "Triton", "torch": "torch"}  # POETRY_LM_STEP → path


def step_path(x: torch.Tensor, keep: torch.Tensor | None = None) -> str:
    """How each step's elementwise work runs: "C kernel" (``cpu_step.py``, float32 on a CPU),
    "Triton" (``triton_lstm.py``, float32/float64 on a GPU) or "torch" (its kernels: the fallback
    everywhere). ``POETRY_LM_STEP=c|triton|torch`` forces one where it applies; "triton" on CPU
    tensors runs Triton's interpreter (for tests). Raises ValueError for another name."""
    forced = os.environ.get("POETRY_LM_STEP", "")
    if forced and forced not in STEPS:
        raise ValueError(f"POETRY_LM_STEP must be one of {', '.join(STEPS)}, not {forced!r}")
    if forced == "torch":
        return "torch"
    if x.dtype in (torch.float32, torch.float64) and triton_lstm.available():
        if x.is_cuda or forced == "triton":
            return "Triton"
    if x.device.type == "cpu" and x.dtype == torch.float32 and cpu_step.usable(keep):
        return "C kernel"
    return "torch"


def paths(x: torch.Tensor, hidden: int, keep: torch.Tensor | None = None) -> dict[str, str]:
    """How ``lstm_sequence`` runs for an input x (T, B, I) and hidden width H: the GEMM backend
    of each role (``gemm.py``), the step's elementwise path (``step_path``), and whether the
    time loop is a CUDA graph ("graphs": "yes"/"no")."""
    step = step_path(x, keep)
    graphs = step == "Triton" and triton_lstm.graphs_enabled(x)
    return {**gemm.backends_for(x, hidden), "step": step, "graphs": "yes" if graphs else "no"}
