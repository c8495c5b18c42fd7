"""Load test of `arenajudge serve` on loopback; prints one JSON object.

Starts the server in a subprocess on 127.0.0.1, waits for /health, then runs
``--clients`` concurrent clients (closed loop: each sends its next request when the
previous one is answered) until ``--requests`` single-battle requests are done or
``--deadline`` seconds have passed, whichever comes first; then stops the server.
Battles are drawn at random (seeded) from a battles file.

    python benchmarks/serve_load.py --model /tmp/hd_model \
        --data ../shared/data/human_dev.csv > serve_load.json

A request counts as an error if it fails or gets anything but 200; ``dropped`` counts
requests that were planned but never answered because the deadline hit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from arenajudge.data import read_battles

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[1] / "shared" / "data" / "human_dev.csv"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _bodies(data: Path, n: int, seed: int) -> list[bytes]:
    """``n`` request bodies of one battle each, drawn at random from ``data``."""
    battles = read_battles(data)
    rows = np.random.default_rng(seed).integers(0, len(battles), n)
    return [json.dumps({"battles": [{
        "id": str(battles.id[i]), "prompt": list(battles.prompt[i]),
        "response_a": list(battles.response_a[i]),
        "response_b": list(battles.response_b[i])}]}).encode() for i in rows]


def _wait_ready(url: str, server: subprocess.Popen, timeout: float) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with code {server.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return time.perf_counter() - started
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server was not ready within {timeout:.0f} s")


async def _load(url: str, bodies: list[bytes], clients: int, deadline: float
                ) -> tuple[list[float], dict[str, int], float]:
    """(latencies of answered requests in s, error counts by kind, wall seconds)."""
    import aiohttp  # httpx's async pool costs ~10 ms of client CPU a request at 200 clients

    latencies: list[float] = []
    errors: dict[str, int] = {}
    next_body = iter(bodies)
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as session:
        stop_at = time.perf_counter() + deadline

        async def worker() -> None:
            for body in next_body:
                if time.perf_counter() > stop_at:
                    return
                sent = time.perf_counter()
                try:
                    async with session.post("/v1/judge", data=body, headers={
                            "content-type": "application/json"}) as response:
                        await response.read()
                        kind = None if response.status == 200 else str(response.status)
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    kind = type(exc).__name__
                if kind is None:
                    latencies.append(time.perf_counter() - sent)
                else:
                    errors[kind] = errors.get(kind, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return latencies, errors, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model directory to serve")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--deadline", type=float, default=600.0,
                        help="stop sending after this many seconds")
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.data.exists():
        sys.exit(f"error: {args.data} does not exist; give --data")

    bodies = _bodies(args.data, args.requests, args.seed)
    load_at_start = os.getloadavg()[0]
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            [sys.executable, "-c", "from arenajudge.cli import main; main()", "serve",
             "--model", args.model,
             "--host", "127.0.0.1", "--port", str(port), "--workers", str(args.workers)],
            stdout=log, stderr=log)
        try:
            startup_s = _wait_ready(url, server, timeout=120)
            latencies, errors, wall = asyncio.run(_load(url, bodies, args.clients,
                                                        args.deadline))
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        log.seek(0)
        server_errors = [line for line in log.read().decode(errors="replace").splitlines()
                         if "ERROR" in line or "Traceback" in line]

    answered = np.array(latencies)
    n_errors = sum(errors.values())
    report = {
        "benchmark": "serve_load",
        "model": args.model, "data": str(args.data), "workers": args.workers,
        "clients": args.clients, "requests_planned": args.requests,
        "requests_ok": int(answered.size), "errors": n_errors, "errors_by_kind": errors,
        "dropped": args.requests - int(answered.size) - n_errors,
        "duration_s": round(wall, 2), "deadline_s": args.deadline,
        "requests_per_s": round(answered.size / wall, 1),
        "latency_ms": {name: round(float(np.percentile(answered, q)) * 1000, 1)
                       for name, q in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))}
        if answered.size else None,
        "server_startup_s": round(startup_s, 2),
        "server_error_lines": len(server_errors),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    # other work on the machine slows the server down
                    "load_average_1min_at_start": round(load_at_start, 2)},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
