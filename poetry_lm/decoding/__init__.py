"""Decoding: the one-token stepper, sampling and beam search under the prosody rules."""
