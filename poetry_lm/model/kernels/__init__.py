"""The fused LSTM's speed paths (``docs/performance.md``); ``model/fused.py`` is the arithmetic.

- ``choice.py``: how a call runs (which GEMM backend, which step kernel, CUDA graphs or not);
- ``loops.py``: the time loops with a step kernel, forward and backward, and their CUDA graphs;
- ``gemm.py``: the matrix products through MKL, oneDNN or ``torch.mm``, whichever this machine
  runs fastest (measured once, cached);
- ``cpu_step.py``: one step's elementwise work as one compiled C call (CPU);
- ``triton_lstm.py``: the same as Triton kernels, and CUDA graphs of the time loop (GPU).

Every path computes what ``fused.py``'s torch kernels compute; the tests hold each to them.
"""
