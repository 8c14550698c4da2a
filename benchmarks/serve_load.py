"""Load and soak of `vision-tasks serve`, against 127.0.0.1 only, bounded in count and time.

    .venv/bin/python benchmarks/serve_load.py load MODEL IMAGES [--clients 1,8,32,128]
    .venv/bin/python benchmarks/serve_load.py soak MODEL IMAGES --rate R [--minutes 10]

``load``: for each number of concurrent clients (each sends one image, waits for the answer,
sends the next, for ``--seconds``), images/s and p50/p95/p99 latency of four servers on the
same model and images, interleaved (every server at 1 client, then every server at 8..., the
whole repeated ``--rounds`` times with ``vision-tasks predict`` between rounds; medians): ``vision-tasks serve`` with dynamic batching (``--max-batch 8 --max-delay-ms 5``),
the same without batching (``--max-batch 1``), a plain FastAPI wrapper of ``Predictor`` that
answers one request at a time (what users write by hand: an ``async def`` route calling
``predict_one``), and ``--engine ray`` (the same app as a Ray Serve deployment, run last, on a
local Ray). ``vision-tasks predict`` on the same image files gives the batch-job rate. The
servers get ``--max-queue 256`` so that 128 clients measure latency, not 503s.

``soak``: the batching server with its default limits at a fixed arrival rate (requests start
every 1/rate s, whatever the answers), 5 % of them bad (not an image, a truncated image, a
wrong option): counts 5xx among good requests (should be 0), whether every bad one got a 4xx,
and the server's RSS at start and end.

The client runs on the same cores as the server (asyncio, keep-alive HTTP/1.1 written here, a
few microseconds per request), so every server pays for it alike; ``predict`` does not.
Results print as Markdown tables and go to ``--json``.
"""

import argparse
import asyncio
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HOST = "127.0.0.1"
PYTHON = sys.executable
CLI = [PYTHON, "-m", "vision_tasks"]
START_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class Connection:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        for attempt in (0, 1):  # the server may close an idle connection: reconnect once
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
            try:
                self.writer.write(f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: "
                                  f"{len(body)}\r\nContent-Type: application/octet-stream"
                                  "\r\n\r\n".encode() + body)
                await self.writer.drain()
                head = await self.reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
                answer = await self.reader.readexactly(length)
                if re.search(rb"(?i)connection: *close", head):
                    self.close()
                return status, answer
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def summary(latencies: list[float], seconds: float, statuses: dict[int, int]) -> dict:
    ms = np.array(latencies) * 1000 if latencies else np.zeros(1)
    return {"images_per_s": round(statuses.get(200, 0) / seconds, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1),
            "statuses": {str(k): v for k, v in sorted(statuses.items())}}


async def closed_loop(port: int, path: str, images: list[bytes], clients: int,
                      seconds: float, warmup: float = 1.0) -> dict:
    """``clients`` clients, each one request at a time, for ``warmup + seconds``; only the
    last ``seconds`` are counted."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    counted_from, end = start + warmup, start + warmup + seconds
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def client(k: int) -> None:
        conn = Connection(port)
        i = k
        while (now := loop.time()) < end:
            status, _ = await conn.post(path, images[i % len(images)])
            i += clients
            if now >= counted_from:
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    latencies.append(loop.time() - now)
        conn.close()

    await asyncio.gather(*(client(k) for k in range(clients)))
    return summary(latencies, seconds, statuses)


def median_of(runs: list[dict]) -> dict:
    """The median of each figure over rounds; the answers summed."""
    out = {key: round(float(np.median([run[key] for run in runs])), 1)
           for key in ("images_per_s", "p50_ms", "p95_ms", "p99_ms")}
    statuses: dict[str, int] = {}
    for run in runs:
        for status, n in run["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
    return {**out, "statuses": statuses}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Server:
    """A server process on a free port, stopped (SIGTERM, then SIGKILL) by pid."""

    def __init__(self, name: str, command: list[str], port: int, path: str) -> None:
        self.name, self.port, self.path = name, port, path
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True,
                                        start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        line = ""
        while not re.search(r"listening on|Uvicorn running|Application startup complete", line):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"{name} did not start: {line}")
            line = self.process.stderr.readline()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.process.stderr.close()


def serve_command(model: str, port: int, *extra: str) -> list[str]:
    return [*CLI, "serve", f"m={model}", "--port", str(port), *extra]


def fastapi_command(model: str, port: int) -> list[str]:
    return [PYTHON, __file__, "_fastapi", model, "--port", str(port)]


def run_fastapi(model: str, port: int) -> None:
    """The hand-written wrapper: FastAPI, one Predictor, an ``async def`` route that predicts
    in the event loop (so one request at a time)."""
    import uvicorn
    from fastapi import FastAPI, Request
    from vision_tasks.export.runtime import Predictor

    predictor = Predictor(model)
    app = FastAPI()

    @app.post("/v1/models/m/predict")
    async def predict(request: Request) -> dict:
        return predictor.predict_one(await request.body()).to_dict()

    uvicorn.run(app, host=HOST, port=port, log_level="info", access_log=False)


def predict_rate(model: str, files: list[str]) -> float:
    """``vision-tasks predict`` images/s on ``files`` (its own figure: the pipeline, model
    load excluded)."""
    with tempfile.TemporaryDirectory() as out:
        listing = Path(out) / "list.txt"
        listing.write_text("\n".join(files) + "\n")
        done = subprocess.run([*CLI, "predict", model, str(listing), "--out", f"{out}/o",
                               "--quiet"], capture_output=True, text=True, timeout=600)
        return float(re.search(r"\(([\d.]+) images/s\)", done.stdout).group(1))


def load(args: argparse.Namespace) -> dict:
    files = sorted(str(p) for p in Path(args.images).iterdir() if p.is_file())[: args.count]
    images = [Path(f).read_bytes() for f in files]
    levels = [int(c) for c in args.clients.split(",")]
    path = "/v1/models/m/predict"
    limits = ["--max-queue", "256"]
    variants = {"serve (batching)": serve_command(args.model, 0, "--max-batch", "8",
                                                  "--max-delay-ms", "5", *limits),
                "serve (no batching)": serve_command(args.model, 0, "--max-batch", "1", *limits),
                "plain FastAPI": fastapi_command(args.model, 0)}
    results: dict = {"load": os.getloadavg(), "images": len(files), "levels": {}}
    servers = {}
    try:
        for name, command in variants.items():
            port = free_port()
            command[command.index("--port") + 1] = str(port)
            servers[name] = Server(name, command, port, path)
        rounds: dict = {}
        for r in range(args.rounds):
            results.setdefault("predict_rounds", []).append(
                predict_rate(args.model, files * args.predict_repeat))
            for clients in levels:
                for name, server in servers.items():
                    got = asyncio.run(closed_loop(server.port, path, images, clients, args.seconds))
                    rounds.setdefault(str(clients), {}).setdefault(name, []).append(got)
                    print(f"round {r}  {clients:4d} clients  {name:22s} {got}", file=sys.stderr)
        results["predict_rounds"].append(predict_rate(args.model, files * args.predict_repeat))
        results["predict_images_per_s"] = float(np.median(results["predict_rounds"]))
        results["levels"] = {clients: {name: median_of(runs) for name, runs in by_name.items()}
                             for clients, by_name in rounds.items()}
        results["rounds"] = rounds
    finally:
        for server in servers.values():
            server.stop()
    if not args.no_ray:
        port = free_port()
        server = Server("Ray Serve", serve_command(args.model, port, "--engine", "ray",
                                                   *limits), port, path)
        try:
            for clients in levels:
                got = asyncio.run(closed_loop(port, path, images, clients, args.seconds))
                results["levels"][str(clients)]["Ray Serve"] = {**got, "rounds": 1}
                print(f"{clients:4d} clients  Ray Serve              {got}", file=sys.stderr)
        finally:
            server.stop()
    results["load_after"] = os.getloadavg()
    return results


def bad_requests(images: list[bytes]) -> list[tuple[str, bytes, int]]:
    """(path suffix, body, the 4xx expected) for the soak's bad 5 %."""
    return [("", b"this is not an image", 415),
            ("", images[0][: len(images[0]) // 3], 400),
            ("?top_k=zero", images[0], 400)]


async def open_loop(port: int, images: list[bytes], rate: float, seconds: float,
                    bad_share: float, pid: int) -> dict:
    loop = asyncio.get_running_loop()
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(64):
        pool.put_nowait(Connection(port))
    rng = random.Random(0)
    bad = bad_requests(images)
    tally = {"good": 0, "good_5xx": 0, "good_other": 0, "bad": 0, "bad_4xx": 0, "refused_503": 0}
    latencies: list[float] = []
    rss = [(0.0, rss_mb(pid))]

    async def one(k: int) -> None:
        conn = await pool.get()
        t0 = loop.time()
        try:
            if rng.random() < bad_share:
                suffix, body, _ = bad[k % len(bad)]
                status, _ = await conn.post("/v1/models/m/predict" + suffix, body)
                tally["bad"] += 1
                tally["bad_4xx"] += 400 <= status < 500
                return
            status, _ = await conn.post("/v1/models/m/predict", images[k % len(images)])
            tally["good"] += 1
            if status == 200:
                latencies.append(loop.time() - t0)
            elif status == 503:
                tally["refused_503"] += 1
            elif status >= 500:
                tally["good_5xx"] += 1
            else:
                tally["good_other"] += 1
        finally:
            pool.put_nowait(conn)

    start = loop.time()
    tasks = set()
    k = 0
    while (now := loop.time()) < start + seconds:
        task = loop.create_task(one(k))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        k += 1
        if k % max(1, int(rate * 60)) == 0:
            rss.append((round(now - start), rss_mb(pid)))
            print(f"soak {now - start:6.0f} s  {tally}  rss {rss[-1][1]:.0f} MB", file=sys.stderr)
        await asyncio.sleep(max(0.0, start + k / rate - loop.time()))
    await asyncio.gather(*tasks)
    rss.append((round(loop.time() - start), rss_mb(pid)))
    result = summary(latencies, seconds, {200: len(latencies)})
    return {**result, **tally, "sent": k, "rss_mb": rss}


def soak(args: argparse.Namespace) -> dict:
    files = sorted(str(p) for p in Path(args.images).iterdir() if p.is_file())[: args.count]
    images = [Path(f).read_bytes() for f in files]
    port = free_port()
    server = Server("serve", serve_command(args.model, port), port, "/v1/models/m/predict")
    try:
        asyncio.run(closed_loop(port, "/v1/models/m/predict", images, 8, 3))  # warm up
        got = asyncio.run(open_loop(port, images, args.rate, args.minutes * 60, args.bad_share,
                                    server.process.pid))
    finally:
        server.stop()
    return {"load": os.getloadavg(), "rate": args.rate, "minutes": args.minutes, **got}


def table(results: dict) -> str:
    rows = ["| clients | server | images/s | p50 ms | p95 ms | p99 ms | answers |",
            "|---:|---|---:|---:|---:|---:|---|"]
    for clients, by_server in results["levels"].items():
        for name, got in by_server.items():
            rows.append(f"| {clients} | {name} | {got['images_per_s']} | {got['p50_ms']} | "
                        f"{got['p95_ms']} | {got['p99_ms']} | {got['statuses']} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    verbs = p.add_subparsers(dest="verb", required=True)
    for verb in ("load", "soak"):
        v = verbs.add_parser(verb)
        v.add_argument("model")
        v.add_argument("images", help="a folder of images (the first --count files are sent)")
        v.add_argument("--count", type=int, default=256)
        v.add_argument("--json", default=None, help="write the results here too")
    lp = verbs.choices["load"]
    lp.add_argument("--clients", default="1,8,32,128")
    lp.add_argument("--seconds", type=float, default=5.0, help="measured seconds per level")
    lp.add_argument("--rounds", type=int, default=3,
                    help="rounds over every level and server (medians reported; default 3)")
    lp.add_argument("--predict-repeat", type=int, default=8,
                    help="predict runs on the files this many times over")
    lp.add_argument("--no-ray", action="store_true")
    sp = verbs.choices["soak"]
    sp.add_argument("--rate", type=float, required=True, help="requests per second")
    sp.add_argument("--minutes", type=float, default=10.0)
    sp.add_argument("--bad-share", type=float, default=0.05)
    fp = verbs.add_parser("_fastapi")  # the baseline server, run as a process by `load`
    fp.add_argument("model")
    fp.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    if args.verb == "_fastapi":
        run_fastapi(args.model, args.port)
        return 0
    results = load(args) if args.verb == "load" else soak(args)
    if args.verb == "load":
        print(table(results))
        print(f"vision-tasks predict: {results['predict_images_per_s']} images/s (median of "
              f"{results['predict_rounds']}); load {results['load']} -> {results['load_after']}")
    else:
        print(json.dumps(results, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
