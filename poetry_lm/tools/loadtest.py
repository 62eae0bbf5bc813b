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

from poetry_lm.cli.common import batch_rows_option, form_option, window_option

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0–100) by the nearest-rank method; values need not be sorted."""
    ranked = sorted(values)
    return ranked[max(0, min(len(ranked) - 1, -(-len(ranked) * p // 100) - 1))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, cpu: int | None, model: str | None, window: float, batch_rows: int):
    """``poetry-lm serve`` in a child process, pinned to ``cpu`` (None: not pinned)."""
    command = [sys.executable, "-m", "poetry_lm", "serve", "--port", str(port), "--threads", "1"]
    command += ["--window", str(window), "--batch-rows", str(batch_rows)]
    command += ["--model", model] if model else []
    pin = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
    return subprocess.Popen(command, preexec_fn=pin, stderr=subprocess.DEVNULL)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc), in seconds."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Connection:
    """One keep-alive HTTP/1.1 connection, written by hand on asyncio streams: a client costs
    ~0.1 ms of CPU per request, so the load script takes little of the machine it measures
    (an HTTP library's client costs several times that)."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.reader = self.writer = None

    async def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        """→ (status, body). Opens the connection on first use and again after an error."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        payload = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        try:
            self.writer.write(head.encode() + payload)
            await self.writer.drain()
            lines = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
            data = await self.reader.readexactly(int(headers.get("content-length", 0)))
        except (OSError, asyncio.IncompleteReadError):
            self.close()
            raise
        if headers.get("connection") == "close":
            self.close()
        return int(lines[0].split()[1]), data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def wait_healthy(url: str, seconds: float) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        connection = Connection(url)
        try:
            status, data = await connection.request("GET", "/healthz")
            connection.close()
            if status == 200:
                return json.loads(data)
        except OSError:  # not listening yet
            pass
        if time.monotonic() > deadline:
            raise click.ClickException(f"the server at {url} did not answer within {seconds:g} s")
        await asyncio.sleep(0.2)


async def run_load(
    url: str, body: dict, clients: int, requests: int, max_seconds: float, pid: int | None = None
) -> dict:
    """Closed-loop load: → latencies (s) of the answered requests, errors, wall seconds, batches
    run, and the CPU seconds the server (process ``pid``, if given) and this client used."""
    await wait_healthy(url, 120)
    connections = [Connection(url) for _ in range(clients)]
    for _ in range(3):  # warm up: the first requests pay for lazy set-up
        await connections[0].request("POST", "/api/generate", body)
    before = await wait_healthy(url, 10)
    cpu_before = cpu_seconds(pid) if pid else 0.0
    client_before = time.process_time()
    latencies, errors, sent = [], [], 0
    start = time.perf_counter()
    deadline = start + max_seconds

    async def one_client(connection):
        nonlocal sent
        while sent < requests and time.perf_counter() < deadline:
            sent += 1
            t0 = time.perf_counter()
            try:
                status, data = await connection.request("POST", "/api/generate", body)
            except (OSError, asyncio.IncompleteReadError) as err:  # a dropped connection
                errors.append(f"{type(err).__name__} {err}")
                continue
            if status == 200:
                latencies.append(time.perf_counter() - t0)
            else:
                errors.append(f"{status} {data[:100].decode(errors='replace')}")

    await asyncio.gather(*(one_client(c) for c in connections))
    wall = time.perf_counter() - start
    client_cpu = time.process_time() - client_before
    after = await wait_healthy(url, 10)
    cpu = cpu_seconds(pid) - cpu_before if pid else None
    for connection in connections:
        connection.close()
    return {
        "latencies": latencies,
        "errors": errors,
        "wall": wall,
        "batches": after["batches"] - before["batches"],
        "decode_cpu": after["decode_cpu_s"] - before["decode_cpu_s"],
        "cpu": cpu,
        "client_cpu": client_cpu,
    }


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
        summary["decode_cpu_s"] = round(result["decode_cpu"], 2)
        other = result["cpu"] - result["decode_cpu"]  # HTTP, validation, JSON, the event loop
        summary["other_ms_per_request"] = round(1000 * other / max(len(lat), 1), 2)
    summary["client_cpu_s"] = round(result["client_cpu"], 2)
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
    "--tones/--no-tones",
    default=None,
    help="Ask for 平仄 or not [default: the API's, on with a form].",
)
@click.option(
    "--server-cpu",
    type=click.IntRange(-1),
    default=0,
    show_default=True,
    help="The CPU core the started server is pinned to (-1: not pinned).",
)
@click.option("--model", default=None, help="Checkpoint for the started server.")
@window_option
@batch_rows_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
def loadtest_command(
    url, clients, requests, max_seconds, form, tones, server_cpu, model, window, batch_rows, as_json
):
    """Throughput and latency of the web service under concurrent clients (loopback only)."""
    server = None
    if url is None:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        cpu = None if server_cpu < 0 else server_cpu
        server = start_server(port, cpu, model, window, batch_rows)
        others = os.sched_getaffinity(0) - {cpu}
        if cpu is not None and others:  # the clients keep off the server's core
            os.sched_setaffinity(0, others)
    elif urlsplit(url).hostname not in LOOPBACK:
        raise click.BadParameter(
            "the load script only targets this machine (127.0.0.1)", param_hint="--url"
        )
    body = {"form": form.name, **({} if tones is None else {"tones": tones})}
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
        f"{summary['clients']} clients, {summary['answered']} poems ({form.name}, rhymed"
        f"{'' if tones is False else ', 平仄'}) in "
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
            f"{summary['poems_per_cpu_s']} poems per CPU-second; decoding "
            f"{summary['decode_cpu_s']} s of it, the rest {summary['other_ms_per_request']} ms "
            f"per request; the clients' CPU: {summary['client_cpu_s']} s"
        )
    for err in result["errors"][:3]:
        click.echo(f"error: {err}", err=True)
