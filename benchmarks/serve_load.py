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

With ``--distinct-pairs N`` it measures memory instead: through ``arenajudge.client``
(``--clients`` threads, ``--pairs-per-request`` battles a request) it first sends every
battle of the file once and ``--warm-pairs`` recombined ones (warm-up: every text and
word seen, allocator settled), samples the server's RSS, then sends N distinct pairs
(the prompt of one battle with the answers of two others: new pairs, known vocabulary)
and reports ``rss_warm_mb``, ``rss_end_mb``, ``rss_peak_mb`` and ``growth_pct``.

    python benchmarks/serve_load.py --model /tmp/hd_model --distinct-pairs 200000
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
import threading
import time
from concurrent.futures import ThreadPoolExecutor
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
    return [
        json.dumps(
            {
                "battles": [
                    {
                        "id": str(battles.id[i]),
                        "prompt": list(battles.prompt[i]),
                        "response_a": list(battles.response_a[i]),
                        "response_b": list(battles.response_b[i]),
                    }
                ]
            }
        ).encode()
        for i in rows
    ]


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


def _rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MiB (psutil, else /proc)."""
    try:
        import psutil
    except ImportError:
        status = Path(f"/proc/{pid}/status").read_text()
        kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))
        return int(kib) / 1024
    return psutil.Process(pid).memory_info().rss / 2**20


def _distinct_battles(
    data: Path, n: int, seed: int, skip: set[tuple[int, int, int]]
) -> tuple[list[dict], set[tuple[int, int, int]]]:
    """``n`` distinct battles: the prompt of one battle of ``data`` with response A of a
    second and response B of a third (triples in ``skip`` and repeats left out)."""
    battles = read_battles(data)
    rng = np.random.default_rng(seed)
    seen = set(skip)
    chosen: list[tuple[int, int, int]] = []
    while len(chosen) < n:
        for triple in map(tuple, rng.integers(0, len(battles), (n, 3)).tolist()):
            if triple not in seen and len(chosen) < n:
                seen.add(triple)
                chosen.append(triple)
    return [
        {
            "id": f"{i}-{a}-{b}",
            "prompt": list(battles.prompt[i]),
            "response_a": list(battles.response_a[a]),
            "response_b": list(battles.response_b[b]),
        }
        for i, a, b in chosen
    ], seen


def _send(url: str, battles: list[dict], clients: int, per_request: int) -> int:
    """Send ``battles`` through ``arenajudge.client.Judge`` from ``clients`` threads;
    returns the number of failed requests."""
    from arenajudge.client import Judge

    chunks = [battles[i : i + per_request] for i in range(0, len(battles), per_request)]
    local = threading.local()

    def one(chunk: list[dict]) -> int:
        if not hasattr(local, "judge"):
            local.judge = Judge(url, timeout=120)
        try:
            return int(len(local.judge.judge(chunk)) != len(chunk))
        except Exception:
            return 1

    with ThreadPoolExecutor(clients) as pool:
        return sum(pool.map(one, chunks))


def _memory(url: str, pid: int, args: argparse.Namespace) -> dict:
    """The ``--distinct-pairs`` run: RSS after warm-up and after the distinct pairs."""
    originals = read_battles(args.data)
    warm = [
        {
            "id": str(originals.id[i]),
            "prompt": list(originals.prompt[i]),
            "response_a": list(originals.response_a[i]),
            "response_b": list(originals.response_b[i]),
        }
        for i in range(len(originals))
    ]
    extra, seen = _distinct_battles(
        args.data, args.warm_pairs, args.seed, {(i, i, i) for i in range(len(originals))}
    )
    measured, _ = _distinct_battles(args.data, args.distinct_pairs, args.seed + 1, seen)
    rss_start = _rss_mb(pid)
    started = time.perf_counter()
    failed = _send(url, warm + extra, args.clients, args.pairs_per_request)
    rss_warm = _rss_mb(pid)
    samples, peak = [], rss_warm
    step = max(args.pairs_per_request, len(measured) // 10)
    for lo in range(0, len(measured), step):
        failed += _send(url, measured[lo : lo + step], args.clients, args.pairs_per_request)
        samples.append(round(_rss_mb(pid), 1))
        peak = max(peak, samples[-1])
    rss_end = _rss_mb(pid)
    return {
        "benchmark": "serve_load --distinct-pairs",
        "model": args.model,
        "data": str(args.data),
        "warm_up_pairs": len(warm) + len(extra),
        "distinct_pairs": len(measured),
        "pairs_per_request": args.pairs_per_request,
        "clients": args.clients,
        "failed_requests": failed,
        "duration_s": round(time.perf_counter() - started, 1),
        "rss_start_mb": round(rss_start, 1),
        "rss_warm_mb": round(rss_warm, 1),
        "rss_end_mb": round(rss_end, 1),
        "rss_peak_mb": round(peak, 1),
        "rss_samples_mb": samples,
        "growth_pct": round(100 * (rss_end - rss_warm) / rss_warm, 2),
    }


async def _load(
    url: str, bodies: list[bytes], clients: int, deadline: float
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
                    async with session.post(
                        "/v1/judge", data=body, headers={"content-type": "application/json"}
                    ) as response:
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
    parser.add_argument(
        "--deadline", type=float, default=600.0, help="stop sending after this many seconds"
    )
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--distinct-pairs",
        type=int,
        default=0,
        help="measure the server's memory over this many distinct pairs "
        "sent through arenajudge.client instead of latency",
    )
    parser.add_argument(
        "--warm-pairs",
        type=int,
        default=20_000,
        help="recombined pairs sent during warm-up (--distinct-pairs)",
    )
    parser.add_argument(
        "--pairs-per-request",
        type=int,
        default=50,
        help="battles per client request (--distinct-pairs)",
    )
    args = parser.parse_args()
    if not args.data.exists():
        sys.exit(f"error: {args.data} does not exist; give --data")

    bodies = [] if args.distinct_pairs else _bodies(args.data, args.requests, args.seed)
    load_at_start = os.getloadavg()[0]
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from arenajudge.cli import main; main()",
                "serve",
                "--model",
                args.model,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(args.workers),
            ],
            stdout=log,
            stderr=log,
        )
        try:
            startup_s = _wait_ready(url, server, timeout=120)
            if args.distinct_pairs:
                report = {**_memory(url, server.pid, args), "server_startup_s": round(startup_s, 2)}
            else:
                latencies, errors, wall = asyncio.run(
                    _load(url, bodies, args.clients, args.deadline)
                )
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        log.seek(0)
        server_errors = [
            line
            for line in log.read().decode(errors="replace").splitlines()
            if "ERROR" in line or "Traceback" in line
        ]
    if args.distinct_pairs:
        report.update(
            server_error_lines=len(server_errors),
            machine={"cpus": os.cpu_count(), "load_average_1min_at_start": round(load_at_start, 2)},
        )
        print(json.dumps(report, indent=2))
        return

    answered = np.array(latencies)
    n_errors = sum(errors.values())
    report = {
        "benchmark": "serve_load",
        "model": args.model,
        "data": str(args.data),
        "workers": args.workers,
        "clients": args.clients,
        "requests_planned": args.requests,
        "requests_ok": int(answered.size),
        "errors": n_errors,
        "errors_by_kind": errors,
        "dropped": args.requests - int(answered.size) - n_errors,
        "duration_s": round(wall, 2),
        "deadline_s": args.deadline,
        "requests_per_s": round(answered.size / wall, 1),
        "latency_ms": {
            name: round(float(np.percentile(answered, q)) * 1000, 1)
            for name, q in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))
        }
        if answered.size
        else None,
        "server_startup_s": round(startup_s, 2),
        "server_error_lines": len(server_errors),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            # other work on the machine slows the server down
            "load_average_1min_at_start": round(load_at_start, 2),
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
