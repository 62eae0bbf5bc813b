"""Developers' tools: benchmarks, decoding statistics, baselines, the README checker, the load
test."""
