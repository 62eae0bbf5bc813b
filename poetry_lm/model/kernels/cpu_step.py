r"""One LSTM step's elementwise work as one compiled C loop, forward and backward (float32, CPU).

``model/fused.py`` without this runs each step's gate arithmetic as ~8 torch kernels forward and
~15 backward; oneDNN's LSTM runs one. Here each is one call of a small C function (below),
compiled on first use by the system's C compiler (``$CC``, else ``cc``) with ``-O3 -march=native
-ffast-math``, so that ``expf`` and ``tanhf`` vectorise through glibc's libmvec, and loaded with
``ctypes``: no torch headers, so it compiles in well under a second. The library is kept in
``gemm.cache_dir()`` under a name hashed from the source, flags and CPU model.

Where no compiler works, ``load()`` returns None and the op keeps its torch kernels (as it does
with ``POETRY_LM_STEP=torch``, see ``choice.step_path``); ``status()`` says which and why. The
arithmetic is ``model/fused.py``'s, in the same notation (see its docstring): k = keep[t], 1
without a mask.

-ffast-math is passed when compiling only, not when linking: linked into a shared library it
would set the CPU's flush-to-zero mode for the whole process (gcc's crtfastmath.o).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

from poetry_lm.model.kernels.gemm import cache_dir, cpu_model

SOURCE = r"""
#include <math.h>
static inline float sigm(float x) { return 1.0f / (1.0f + expf(-x)); }

/* One batch row b. gates (B, 4H): in, x W_ihT + b; out, the activations i f g o.
   rec[b * rs + j * cs] = (h W_hhT)[b, j]: the product, row-major (cs = 1) or transposed (rs = 1).
   c_prev (B, H); keep (B) or NULL; out: c_new = k c', h_new = k h', tanh_c = tanh(c'). */
static inline void forward_row(long b, long H, float *restrict gates, const float *restrict rec,
                               long rs, long cs, const float *restrict c_prev,
                               const float *restrict keep, float *restrict c_new,
                               float *restrict h_new, float *restrict tanh_c) {
    float *a = gates + b * 4 * H;
    const float *r = rec + b * rs, *cp = c_prev + b * H;
    float *cn = c_new + b * H, *hn = h_new + b * H, *tc = tanh_c + b * H;
    float k = keep ? keep[b] : 1.0f;
    #pragma omp simd
    for (long j = 0; j < H; j++) {
        float i = sigm(a[j] + r[j * cs]), f = sigm(a[H + j] + r[(H + j) * cs]);
        float g = tanhf(a[2 * H + j] + r[(2 * H + j) * cs]);
        float o = sigm(a[3 * H + j] + r[(3 * H + j) * cs]);
        a[j] = i; a[H + j] = f; a[2 * H + j] = g; a[3 * H + j] = o;
        float c = f * cp[j] + i * g, t = tanhf(c);
        tc[j] = t; cn[j] = k * c; hn[j] = k * (o * t);
    }
}

void lstm_forward_step(long B, long H, float *gates, const float *rec, long rs, long cs,
                       const float *c_prev, const float *keep, float *c_new, float *h_new,
                       float *tanh_c) {
    for (long b = 0; b < B; b++) {
        if (cs == 1)  /* the same code, compiled for contiguous rows: no gathers */
            forward_row(b, H, gates, rec, rs, 1, c_prev, keep, c_new, h_new, tanh_c);
        else
            forward_row(b, H, gates, rec, rs, cs, c_prev, keep, c_new, h_new, tanh_c);
    }
}

/* One batch row b. gates (B, 4H) activations; da (B, 4H) out (may be gates itself: each
   element is read before it is written). tanh_c, c_prev, dout (B, H); dh_rec[b * rs + j * cs];
   dc (B, H): in dc_t, out dc_{t-1}. db (4H) or NULL: += this row's da, summed in double. */
static inline void backward_row(long b, long H, const float *gates, float *da,
                                const float *restrict tanh_c, const float *restrict c_prev,
                                const float *restrict dout, const float *restrict dh_rec,
                                long rs, long cs, float *restrict dc,
                                const float *restrict keep, double *restrict db) {
    const float *a = gates + b * 4 * H, *tc = tanh_c + b * H, *cp = c_prev + b * H;
    const float *du = dout + b * H, *dr = dh_rec + b * rs;
    float *d = da + b * 4 * H, *dcb = dc + b * H;
    float k = keep ? keep[b] : 1.0f;
    #pragma omp simd
    for (long j = 0; j < H; j++) {
        float i = a[j], f = a[H + j], g = a[2 * H + j], o = a[3 * H + j], t = tc[j];
        float dh = k * (du[j] + dr[j * cs]);
        float dcc = k * dcb[j] + dh * o * (1.0f - t * t);
        float di = dcc * g * i * (1.0f - i), df = dcc * cp[j] * f * (1.0f - f);
        float dg = dcc * i * (1.0f - g * g), dout_o = dh * t * o * (1.0f - o);
        d[j] = di; d[H + j] = df; d[2 * H + j] = dg; d[3 * H + j] = dout_o;
        dcb[j] = dcc * f;
        if (db) {
            db[j] += di; db[H + j] += df; db[2 * H + j] += dg; db[3 * H + j] += dout_o;
        }
    }
}

void lstm_backward_step(long B, long H, const float *gates, float *da, const float *tanh_c,
                        const float *c_prev, const float *dout, const float *dh_rec, long rs,
                        long cs, float *dc, const float *keep, double *db) {
    for (long b = 0; b < B; b++) {
        if (cs == 1)
            backward_row(b, H, gates, da, tanh_c, c_prev, dout, dh_rec, rs, 1, dc, keep, db);
        else
            backward_row(b, H, gates, da, tanh_c, c_prev, dout, dh_rec, rs, cs, dc, keep, db);
    }
}
"""
COMPILE_FLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp-simd", "-fPIC", "-c"]
LINK_FLAGS = ["-shared"]  # then -lmvec (where glibc has it) and -lm

_state: dict[str, object] = {}  # "lib": the loaded library or None, "why": a one-line status


def _compile(target: Path) -> None:
    """Compile SOURCE into the shared library ``target``; raises OSError or CalledProcessError."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise OSError("no C compiler (cc, gcc or $CC) on PATH")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src, obj, lib = Path(tmp, "lstm_step.c"), Path(tmp, "lstm_step.o"), Path(tmp, "lib.so")
        src.write_text(SOURCE)
        run = dict(check=True, capture_output=True, timeout=120)
        subprocess.run([cc, *COMPILE_FLAGS, str(src), "-o", str(obj)], **run)
        try:  # libmvec: the vector expf/tanhf that -ffast-math calls
            subprocess.run([cc, *LINK_FLAGS, str(obj), "-o", str(lib), "-lmvec", "-lm"], **run)
        except subprocess.CalledProcessError:  # no libmvec: the loop stays scalar
            subprocess.run([cc, *LINK_FLAGS, str(obj), "-o", str(lib), "-lm"], **run)
        os.replace(lib, target)  # atomic: another process may be loading it


def load():
    """The compiled step kernels (a ctypes library), or None where they cannot be had; the
    reason is in ``status()``. Compiles at most once per process and once per machine."""
    if "lib" in _state:
        return _state["lib"]
    source = "\n".join([SOURCE, *COMPILE_FLAGS, cpu_model()])
    path = cache_dir() / f"lstm_step_{hashlib.sha256(source.encode()).hexdigest()[:16]}.so"
    try:
        if not path.exists():
            _compile(path)
        lib = ctypes.CDLL(str(path))
        # argument types declared once, so that calls pass plain ints: (B, H, pointers and
        # strides in the order of the C signatures)
        long, ptr = ctypes.c_long, ctypes.c_void_p
        lib.lstm_forward_step.argtypes = [long, long, ptr, ptr, long, long, *[ptr] * 5]
        lib.lstm_backward_step.argtypes = [long, long, *[ptr] * 6, long, long, *[ptr] * 3]
        for fn in (lib.lstm_forward_step, lib.lstm_backward_step):
            fn.restype = None
        why = f"compiled C kernel ({path})"
    except (OSError, subprocess.SubprocessError) as err:
        first = (getattr(err, "stderr", b"") or b"").decode(errors="replace").strip()
        first = first.splitlines()[0] if first else str(err)
        lib, why = None, f"torch kernels (the C kernel did not build: {first})"
    _state["lib"], _state["why"] = lib, why
    return lib


def status() -> str:
    """How the CPU op runs its elementwise step work: the compiled kernel or torch's kernels."""
    load()
    return str(_state["why"])


def usable(*tensors: torch.Tensor | None) -> bool:
    """Whether the kernels apply: float32 CPU tensors, each contiguous, and a built library."""
    return all(
        t is None or (t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous())
        for t in tensors
    ) and (load() is not None)


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def forward_step(gates, rec, c_prev, keep, c_new, h_new, tanh_c) -> None:
    """gates (B, 4H) ← the activations of gates + rec; c_new, h_new, tanh_c (B, H) written;
    keep (B, 1) or None. rec (B, 4H) may be a transposed view (any strides); the rest must be
    contiguous float32 (not checked here: ``usable``)."""
    B, H4 = gates.shape
    if rec.stride(1) != 1:
        # torch's blocked transpose first: reading a transposed product in the loop gathers one
        # float per cache line, and took ~2.5× the kernel's time in the time loop at H = 256
        rec = rec.contiguous()
    load().lstm_forward_step(
        B, H4 // 4, gates.data_ptr(), rec.data_ptr(), *rec.stride(), c_prev.data_ptr(),
        _ptr(keep), c_new.data_ptr(), h_new.data_ptr(), tanh_c.data_ptr(),
    )  # fmt: skip


def backward_step(gates, da, tanh_c, c_prev, dout, dh_rec, dc, keep, db=None) -> None:
    """da (B, 4H) ← the gate gradients (da may be gates); dc (B, H): dc_t in, dc_{t−1} out.
    dh_rec (B, H) may be a transposed view. db (4H,) float64 or None: += da summed over rows
    (the bias gradient, gathered while da is in cache instead of rereading all of it)."""
    B, H4 = gates.shape
    load().lstm_backward_step(
        B, H4 // 4, gates.data_ptr(), da.data_ptr(), tanh_c.data_ptr(), c_prev.data_ptr(),
        dout.data_ptr(), dh_rec.data_ptr(), *dh_rec.stride(), dc.data_ptr(), _ptr(keep), _ptr(db),
    )  # fmt: skip
