from click.testing import CliRunner

from poetry_lm.tools.compare import load_run, main


def test_compare_tables_and_plots_runs(tiny_run, tmp_path):
    png = tmp_path / "cmp.png"
    result = CliRunner().invoke(main, [str(tiny_run), str(tiny_run), "--png", str(png)])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith(f"| {tiny_run.name}")]
    assert len(rows) == 2 and float(rows[0].split("|")[-2]) > 1  # best validation perplexity
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert load_run(tiny_run)["steps"][0]["step"] == 1  # the train loss per step is plotted
    missing = CliRunner().invoke(main, [str(tmp_path / "nothing")])
    assert missing.exit_code == 1 and "metrics" in missing.output
