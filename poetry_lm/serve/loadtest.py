"""Load script for the web service: many concurrent clients, each asking for one poem at a time.

``python -m poetry_lm.loadtest`` (or ``poetry-lm loadtest``) starts ``poetry-lm serve`` on a
free loopback port, pinned to one CPU core (``--server-cpu``), waits for ``/healthz``, then
runs ``--clients`` clients that each send one request, wait for the answer, and send the next,
until ``--requests`` have been answered or ``--max-seconds`` have passed, whichever is first.
It reports throughput (poems per second) and latency percentiles. ``--url`` targets a server
already running instead; it must be on this machine (loopback), so the script can never load
another host.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

import click

from poetry_lm.cli.common import form_option

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0–100) by the nearest-rank method; values need not be sorted."""
    ranked = sorted(values)
    return ranked[max(0, min(len(ranked) - 1, -(-len(ranked) * p // 100) - 1))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, cpu: int | None, model: str | None, window: float, max_rows: int):
    """``poetry-lm serve`` in a child process, pinned to ``cpu`` (None: not pinned)."""
    command = [sys.executable, "-m", "poetry_lm", "serve", "--port", str(port), "--threads", "1"]
    command += ["--window", str(window), "--max-rows", str(max_rows)]
    command += ["--model", model] if model else []
    pin = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
    return subprocess.Popen(command, preexec_fn=pin, stderr=subprocess.DEVNULL)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc), in seconds."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_healthy(client, url: str, seconds: float) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        try:
            response = await client.get(url + "/healthz")
            if response.status_code == 200:
                return response.json()
        except Exception:  # not listening yet
            pass
        if time.monotonic() > deadline:
            raise click.ClickException(f"the server at {url} did not answer within {seconds:g} s")
        await asyncio.sleep(0.2)


async def run_load(
    url: str, body: dict, clients: int, requests: int, max_seconds: float, pid: int | None = None
) -> dict:
    """Closed-loop load: → latencies (s) of the answered requests, errors, wall seconds, batches
    run, and the CPU seconds the server (process ``pid``, if given) used meanwhile."""
    import httpx

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        await wait_healthy(client, url, 120)
        for _ in range(3):  # warm up: the first requests pay for lazy set-up
            await client.post(url + "/api/generate", json=body)
        batches_before = (await client.get(url + "/healthz")).json()["batches"]
        cpu_before = cpu_seconds(pid) if pid else 0.0
        latencies, errors, sent = [], [], 0
        start = time.perf_counter()
        deadline = start + max_seconds

        async def one_client():
            nonlocal sent
            while sent < requests and time.perf_counter() < deadline:
                sent += 1
                t0 = time.perf_counter()
                try:
                    response = await client.post(url + "/api/generate", json=body)
                except httpx.HTTPError as err:  # a dropped connection, a timeout
                    errors.append(f"{type(err).__name__} {err}")
                    continue
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors.append(f"{response.status_code} {response.text[:100]}")

        await asyncio.gather(*(one_client() for _ in range(clients)))
        wall = time.perf_counter() - start
        batches = (await client.get(url + "/healthz")).json()["batches"] - batches_before
        cpu = cpu_seconds(pid) - cpu_before if pid else None
    return {"latencies": latencies, "errors": errors, "wall": wall, "batches": batches, "cpu": cpu}


def report(result: dict, clients: int, body: dict) -> dict:
    lat = result["latencies"]
    summary = {
        "clients": clients,
        "request": body,
        "answered": len(lat),
        "errors": len(result["errors"]),
        "seconds": round(result["wall"], 2),
        "poems_per_s": round(len(lat) / result["wall"], 1),
        "mean_batch": round(len(lat) / max(result["batches"], 1), 1),
    }
    if result.get("cpu"):  # on a shared machine the server gets less than its core
        summary["server_cpu_s"] = round(result["cpu"], 2)
        summary["poems_per_cpu_s"] = round(len(lat) / result["cpu"], 1)
    if lat:
        for p in (50, 90, 95, 99, 100):
            summary[f"p{p}_s"] = round(percentile(lat, p), 3)
    return summary


@click.command("loadtest")
@click.option("--url", default=None, help="A running server on this machine (default: start one).")
@click.option("--clients", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option(
    "--requests",
    type=click.IntRange(1, 100_000),
    default=1000,
    show_default=True,
    help="Stop after this many requests.",
)
@click.option(
    "--max-seconds",
    type=click.FloatRange(1, 600),
    default=60,
    show_default=True,
    help="… or after this many seconds.",
)
@click.option(
    "--form",
    callback=form_option,
    default="七绝",
    show_default=True,
    help="The form asked for (rhymed).",
)
@click.option(
    "--server-cpu",
    type=click.IntRange(-1),
    default=0,
    show_default=True,
    help="The CPU core the started server is pinned to (-1: not pinned).",
)
@click.option("--model", default=None, help="Checkpoint for the started server.")
@click.option(
    "--window", type=click.FloatRange(0, 1), default=0.015, show_default=True, help="Batch window."
)
@click.option(
    "--max-rows",
    type=click.IntRange(1, 4096),
    default=256,
    show_default=True,
    help="Rows that close a batch at once (1: no batching, for comparison).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
def loadtest_command(
    url, clients, requests, max_seconds, form, server_cpu, model, window, max_rows, as_json
):
    """Throughput and latency of the web service under concurrent clients (loopback only)."""
    server = None
    if url is None:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        cpu = None if server_cpu < 0 else server_cpu
        server = start_server(port, cpu, model, window, max_rows)
        others = os.sched_getaffinity(0) - {cpu}
        if cpu is not None and others:  # the clients keep off the server's core
            os.sched_setaffinity(0, others)
    elif urlsplit(url).hostname not in LOOPBACK:
        raise click.BadParameter(
            "the load script only targets this machine (127.0.0.1)", param_hint="--url"
        )
    body = {"form": form.name}
    try:
        pid = server and server.pid
        result = asyncio.run(run_load(url.rstrip("/"), body, clients, requests, max_seconds, pid))
    finally:
        if server:
            server.terminate()
            server.wait(10)
    summary = report(result, clients, body)
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False))
        return
    click.echo(
        f"{summary['clients']} clients, {summary['answered']} poems ({form.name}, rhymed) in "
        f"{summary['seconds']} s: {summary['poems_per_s']} poems/s, "
        f"{summary['errors']} errors, {summary['mean_batch']} requests per batch"
    )
    if result["latencies"]:
        click.echo(
            "latency (s): "
            + ", ".join(f"p{p} {summary[f'p{p}_s']}" for p in (50, 90, 95, 99))
            + f", max {summary['p100_s']}"
        )
    if "server_cpu_s" in summary:
        click.echo(
            f"server CPU: {summary['server_cpu_s']} s in {summary['seconds']} s of wall time, "
            f"{summary['poems_per_cpu_s']} poems per CPU-second"
        )
    for err in result["errors"][:3]:
        click.echo(f"error: {err}", err=True)
