"""The model: the language model and its recurrent layers (``lm.py``), the LSTM's forward and
hand-written backward as one autograd op (``fused.py``), checkpoints (``checkpoint.py``); the
fused op's speed paths (GEMM backends, C and Triton step kernels) are in ``kernels/``."""
