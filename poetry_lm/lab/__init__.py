"""The lab: reference cells, gradient checks, gradient flow, benchmarks, baselines.

Research and teaching tools; the product (text, prosody, model, decoding) never imports them.
"""
