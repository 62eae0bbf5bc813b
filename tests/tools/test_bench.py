"""The benchmark's quick mode runs end to end and prints the expected table rows."""

import re

from click.testing import CliRunner

from poetry_lm.tools.bench import QUICK, bench_command, lstm_flops_per_token


def number(cell: str) -> float:
    return float(re.sub(r"[,×%]", "", cell))


def test_quick_benchmark_prints_every_row_with_positive_numbers():
    result = CliRunner().invoke(bench_command, ["--quick", "--threads", "1"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "threads: 1" in out and "torch " in out and "CPU: " in out
    for E, H in QUICK["lstm_sizes"]:  # the fused op's path at each size
        path = re.search(rf"- E = {E}, H = {H}: recurrent (\S+), linear (\S+), weight (\S+), "
                         r"step (C kernel|Triton|torch), graphs no", out)  # fmt: skip
        assert path and {path[1], path[2], path[3]} <= {"mkl", "onednn", "onednn-t", "plain"}
    assert "- the C step kernel: " in out
    peak = re.search(r"GEMM peak .*: ([\d.]+) GFLOP/s", out)
    assert peak and float(peak.group(1)) > 0

    rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in out.splitlines()
        if line.startswith("| ") and not line.startswith(("| E ", "| output layer", "| poem "))
    ]
    lstm = {(int(r[0]), int(r[1]), r[2]): r[3:] for r in rows if len(r) == 8}
    expected = {
        (E, H, impl)
        for E, H in QUICK["lstm_sizes"]
        for impl in ("nn.LSTM", "autograd loop", "fused")
    }
    assert set(lstm) == expected
    for ms, tokens, gflops, percent, ratio in lstm.values():
        assert min(number(ms), number(tokens), number(gflops), number(ratio)) > 0
        assert number(percent) >= 0  # tiny sizes may round to 0%
    assert all(number(lstm[(E, H, "nn.LSTM")][-1]) == 1.0 for E, H in QUICK["lstm_sizes"])

    softmax = {r[0]: r[1:] for r in rows if r[0].endswith("softmax")}
    assert set(softmax) == {"full softmax", "adaptive softmax"}
    assert all(number(c) > 0 for cells in softmax.values() for c in cells)
    assert "Zipf" in out

    generation = {(r[0], int(r[1]), r[2]): r[3:] for r in rows if len(r) == 6}
    assert set(generation) == {
        (kind, n, weights)
        for kind in ("free, ≤ 32 characters", "七绝, rhymed, 平仄", "七绝, rhymed, no 平仄")
        for n in (1, QUICK["gen_batch"])
        for weights in ("int8", "float32")
    }
    assert all(number(c) > 0 for cells in generation.values() for c in cells)
    assert all(
        number(cells[0]) == 32
        for (kind, _, _), cells in generation.items()
        if kind.startswith("七绝")
    )
    assert all(number(cells[0]) <= 32 for cells in generation.values())


def test_flops_per_token():
    assert lstm_flops_per_token(256, 256) == (2 * (4 * 256 * 256 * 2), 6 * (4 * 256 * 256 * 2))


def test_asking_for_a_gpu_that_is_not_there_is_one_clear_error(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    result = CliRunner().invoke(bench_command, ["--quick", "--device", "cuda"])
    assert result.exit_code == 2
    assert "torch sees no CUDA device" in result.output and "Traceback" not in result.output
