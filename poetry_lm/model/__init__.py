"""The model: the custom recurrent layers, the fused LSTM op, the language model, checkpoints."""
