"""The load script against a live server: it counts what it sends and reports percentiles."""

import asyncio

import pytest
from click.testing import CliRunner
from serve_app import shared_app

from poetry_lm.serve.server import running
from poetry_lm.tools.loadtest import loadtest_command, percentile, report, run_load


@pytest.fixture(scope="module")
def app():
    return shared_app()


def test_percentile_is_the_nearest_rank():
    values = [5, 1, 4, 2, 3, 6, 7, 8, 9, 10]
    assert percentile(values, 50) == 5
    assert percentile(values, 95) == 10 and percentile(values, 90) == 9
    assert percentile(values, 0) == 1 and percentile([0.2], 99) == 0.2


def test_the_load_is_bounded_and_reported(app):
    with running(app) as url:
        result = asyncio.run(
            run_load(url, {"form": "五绝"}, clients=4, requests=12, max_seconds=60)
        )
    summary = report(result, 4, {"form": "五绝"})
    assert summary["answered"] == 12 and summary["errors"] == 0
    assert 0 < summary["p50_s"] <= summary["p95_s"] <= summary["p100_s"] <= summary["seconds"]
    assert 1 <= summary["mean_batch"] <= 4  # four clients: at most four requests per batch
    assert summary["poems_per_s"] == round(12 / result["wall"], 1)


def test_only_loopback_is_a_target():
    result = CliRunner().invoke(loadtest_command, ["--url", "http://example.com:8000"])
    assert result.exit_code == 2 and "only targets this machine" in result.output
