"""Is the server worth running? A bounded load test on loopback, against references measured
in the same run.

    python benchmarks/serve_load.py [ARTIFACT] [--seconds 30] [--clients 64] [--json out.json]

ARTIFACT defaults to artifacts/all-MiniLM-L6-v2 (the README's main command makes it).
Phases, one after another (never two at once: this machine has 2 cores):

1. in-process `onnxport.load(ARTIFACT).embed(texts, batch_size=32)` over the same texts:
   the throughput reference, and the reference vectors every response is checked against;
2. `onnxport serve ARTIFACT` (defaults: token-bounded batching) under `--clients` concurrent
   clients for `--seconds`, each sending requests of `--texts-per-request` texts (default 1,
   like a search service embedding one query at a time; "1-8" for a random count) drawn from
   the same mixed-length texts to POST /embed, and checking every vector of every response
   against its own texts (so a mixed-up or reordered item is an error);
3. the same load with `--max-batch-requests 1` (no batching across requests);
4. SIGTERM in the middle of the same load: every request that got an answer must be a
   correct 200; requests refused before the server accepted them are counted apart.

Prints a markdown report (CPU named) and writes --json. The server runs in a subprocess;
the load generator (one asyncio loop, plain HTTP/1.1 keep-alive connections) shares the
2 cores with it, as a client on the same host would; the report gives the CPU each used.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import onnxport
from onnxport.core.sample_texts import builtin_texts
from onnxport.tools.bench.measurement import machine_facts


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(artifact: Path, port: int, *extra: str, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "onnxport.tools.cli", "serve", str(artifact), "--port", str(port),
               "--log-level", "warning", *extra]
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)
    import httpx

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"the server was not ready within 180 s:\n{log.read_text()}")


def stop_server(process: subprocess.Popen, timeout: float = 60) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return -9


def make_requests(texts: list[str], count: int, seed: int, per_request: str) -> list[list[int]]:
    """`count` requests of text indices: `per_request` texts each ("N", or "A-B" at random)."""
    rng = random.Random(seed)
    low, _, high = per_request.partition("-")
    return [[rng.randrange(len(texts)) for _ in range(rng.randint(int(low), int(high or low)))]
            for _ in range(count)]


class Connection:
    """HTTP/1.1 keep-alive POSTs over one asyncio connection. A few lines instead of httpx:
    on 2 shared cores, every bit of the load generator's own CPU is taken from the server."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def post(self, path: str, payload: dict) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        body = json.dumps(payload).encode()
        self.writer.write(b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (path.encode(), self.host.encode(), len(body), body))
        await self.writer.drain()
        head = (await self.reader.readuntil(b"\r\n\r\n")).lower()
        length = int(head.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
        answer = await self.reader.readexactly(length)
        if b"connection: close" in head:
            self.close()
        return int(head[9:12]), answer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def vectors_of(route: str, answer: bytes) -> np.ndarray:
    if route == "/embed":
        return np.asarray(json.loads(answer), dtype=np.float32)
    data = json.loads(answer)["data"]
    return np.stack([np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4") for item in data])


def request_body(route: str, texts: list[str]) -> dict:
    # the official openai client asks for base64 unless told otherwise
    return {"inputs": texts} if route == "/embed" else {"input": texts, "encoding_format": "base64"}


async def run_load(url: str, texts: list[str], reference: np.ndarray, *, clients: int, seconds: float,
                   seed: int, per_request: str, route: str, on_progress=None, should_stop=None) -> dict:
    """`clients` concurrent loops, each sending its next request until `seconds` pass."""
    host, port = url.rsplit("/", 1)[1].split(":")
    requests = make_requests(texts, 200_000, seed, per_request)
    cursor = iter(range(len(requests)))
    latencies: list[float] = []
    outcome = {"ok": 0, "texts": 0, "wrong": 0, "http_errors": {}, "refused": 0, "other_errors": []}
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        connection = Connection(host, int(port))
        while time.perf_counter() < deadline and not (should_stop and should_stop()):
            indices = requests[next(cursor)]
            started = time.perf_counter()
            try:
                status, answer = await connection.post(route, request_body(route, [texts[i] for i in indices]))
            except (ConnectionError, asyncio.IncompleteReadError):
                # refused, or closed by a stopping server before it read the request (the
                # server's own count of answers, checked in the SIGTERM phase, tells them apart)
                connection.close()
                outcome["refused"] += 1
                await asyncio.sleep(0.05)
                continue
            except (OSError, ValueError, IndexError) as error:
                connection.close()
                outcome["other_errors"].append(repr(error))
                continue
            latencies.append(time.perf_counter() - started)
            if status != 200:
                outcome["http_errors"][status] = outcome["http_errors"].get(status, 0) + 1
                continue
            got = vectors_of(route, answer)
            expected = reference[indices]
            if got.shape != expected.shape or float((got * expected).sum(1).min()) < 0.9999:
                outcome["wrong"] += 1
            else:
                outcome["ok"] += 1
                outcome["texts"] += len(indices)
            if on_progress:
                on_progress(outcome)
        connection.close()

    started = time.perf_counter()
    cpu_before = time.process_time()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - started
    ms = sorted(1000 * x for x in latencies)

    def percentile(p: float) -> float:
        return ms[min(len(ms) - 1, int(p / 100 * len(ms)))] if ms else float("nan")

    return {**outcome, "seconds": wall, "texts_per_s": outcome["texts"] / wall, "requests_per_s": outcome["ok"] / wall,
            "p50_ms": percentile(50), "p95_ms": percentile(95), "p99_ms": percentile(99),
            "client_cpu": (time.process_time() - cpu_before) / wall,
            "errors": outcome["wrong"] + sum(outcome["http_errors"].values()) + len(outcome["other_errors"])}


def in_process(artifact: Path, texts: list[str], repeats: int) -> tuple[np.ndarray, float]:
    embedder = onnxport.load(artifact)
    vectors = embedder.embed(texts, batch_size=32)  # also the warm-up
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        embedder.embed(texts, batch_size=32)
        timings.append(time.perf_counter() - started)
    return vectors, len(texts) / statistics.median(timings)


def scrape_batch_sizes(url: str) -> float | None:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    total = count = 0.0
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=5).text):
        if family.name == "onnxport_batch_size":
            for sample in family.samples:
                total += sample.value if sample.name.endswith("_sum") else 0
                count += sample.value if sample.name.endswith("_count") else 0
    return total / count if count else None


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_phase(artifact: Path, texts, reference, args, *extra: str, log: Path) -> dict:
    port = free_port()
    server = start_server(artifact, port, *extra, log=log)
    url = f"http://127.0.0.1:{port}"
    cpu_before = process_cpu_seconds(server.pid)
    try:
        result = asyncio.run(run_load(url, texts, reference, clients=args.clients, seconds=args.seconds, seed=1,
                                      per_request=args.texts_per_request, route=args.route))
        result["server_cpu"] = (process_cpu_seconds(server.pid) - cpu_before) / result["seconds"]
        result["mean_batch_size"] = scrape_batch_sizes(url)
    finally:
        result_code = stop_server(server)
    result["exit_code"] = result_code
    return result


def sigterm_phase(artifact: Path, texts, reference, args, *extra: str, log: Path) -> dict:
    port = free_port()
    server = start_server(artifact, port, *extra, log=log)
    url = f"http://127.0.0.1:{port}"
    signalled = {}
    signal_at = time.perf_counter() + min(args.seconds, 15) / 3

    def maybe_signal(outcome: dict) -> None:  # a third into the phase, with every client busy
        if not signalled and time.perf_counter() >= signal_at:
            signalled["at_ok"] = outcome["ok"]
            server.send_signal(signal.SIGTERM)

    result = asyncio.run(run_load(url, texts, reference, clients=args.clients, seconds=min(args.seconds, 15),
                                  seed=2, per_request=args.texts_per_request, route=args.route, on_progress=maybe_signal,
                                  should_stop=lambda: server.poll() is not None))
    result["exit_code"] = stop_server(server)
    # the server's own count of what it answered, from its last log line
    result["server_summary"] = log.read_text().strip().splitlines()[-1]
    result["signalled_after_ok"] = signalled.get("at_ok")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifact", type=Path, nargs="?", default=Path("artifacts/all-MiniLM-L6-v2"))
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--route", choices=["/v1/embeddings", "/embed"], default="/v1/embeddings",
                        help="/v1/embeddings answers in base64, as the openai client asks [default]")
    parser.add_argument("--texts-per-request", default="1", help='"N" or a random "A-B" [default: 1]')
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-text-tokens", type=int, help="only texts of at most N tokens (e.g. 16: search queries)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--server-args", default="", help='extra flags for `onnxport serve`, e.g. "--threads 1"')
    parser.add_argument("--skip-unbatched", action="store_true")
    args = parser.parse_args()
    if not (args.artifact / "onnxport.json").exists():
        raise SystemExit(f"{args.artifact} is not an artifact; make it with `onnxport export -o {args.artifact}`")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logs = Path(os.environ.get("TMPDIR", "/tmp"))

    texts = builtin_texts(args.texts)
    if args.max_text_tokens:
        counts = [len(e.ids) for e in onnxport.load(args.artifact).tokenize(texts)]
        texts = [text for text, count in zip(texts, counts) if count <= args.max_text_tokens]
    reference, embed_rate = in_process(args.artifact, texts, args.repeats)
    print(f"in-process embed: {embed_rate:.0f} texts/s", flush=True)
    extra = args.server_args.split()
    batched = load_phase(args.artifact, texts, reference, args, *extra, log=logs / "serve_batched.log")
    print(f"server, batched: {batched['texts_per_s']:.0f} texts/s", flush=True)
    unbatched = None
    if not args.skip_unbatched:
        unbatched = load_phase(args.artifact, texts, reference, args, *extra, "--max-batch-requests", "1",
                               log=logs / "serve_unbatched.log")
        print(f"server, --max-batch-requests 1: {unbatched['texts_per_s']:.0f} texts/s", flush=True)
    stopping = sigterm_phase(args.artifact, texts, reference, args, *extra, log=logs / "serve_sigterm.log")

    machine = machine_facts()
    report = {"machine": machine, "server_args": args.server_args, "clients": args.clients, "seconds": args.seconds, "texts": len(texts),
              "texts_per_request": args.texts_per_request, "route": args.route,
              "max_text_tokens": args.max_text_tokens,
              "in_process_texts_per_s": embed_rate, "batched": batched, "unbatched": unbatched, "sigterm": stopping,
              "ratio_vs_in_process": batched["texts_per_s"] / embed_rate,
              "ratio_vs_unbatched": batched["texts_per_s"] / unbatched["texts_per_s"] if unbatched else None}
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))


def render(report: dict) -> str:
    machine = report["machine"]
    rows = [("server, batched (defaults)", report["batched"])]
    if report["unbatched"]:
        rows.append(("server, --max-batch-requests 1", report["unbatched"]))
    lines = [f"CPU: {machine['cpu']} ({machine['usable_cpus']} usable CPUs, flags: "
             f"{', '.join(machine['cpu_flags']) or 'none of note'}); load average before: {machine['load_average']}",
             f"{report['clients']} concurrent clients, {report['seconds']:.0f} s per phase, requests of "
             f"{report['texts_per_request']} text(s) to {report['route']} "
             f"from {report['texts']} mixed-length texts"
             + (f" of at most {report['max_text_tokens']} tokens" if report["max_text_tokens"] else "")
             + "; in-process embed (batch 32, length-sorted): "
             f"**{report['in_process_texts_per_s']:.0f} texts/s**", "",
             "| load | texts/s | requests/s | p50 ms | p95 ms | p99 ms | mean run | server CPU | client CPU | errors "
             "| wrong items |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows:
        batch = f"{r['mean_batch_size']:.1f}" if r.get("mean_batch_size") else "-"
        lines.append(f"| {name} | {r['texts_per_s']:.0f} | {r['requests_per_s']:.0f} | {r['p50_ms']:.0f} | "
                     f"{r['p95_ms']:.0f} | {r['p99_ms']:.0f} | {batch} | {r['server_cpu']:.0%} | {r['client_cpu']:.0%} | "
                     f"{r['errors']} | {r['wrong']} |")
    lines += ["", f"server / in-process: **{report['ratio_vs_in_process']:.2f}×** (target ≥ 0.8)"]
    if report["ratio_vs_unbatched"]:
        lines.append(f"batched / unbatched: **{report['ratio_vs_unbatched']:.2f}×** (target ≥ 3)")
    s = report["sigterm"]
    lines.append(f"SIGTERM after {s['signalled_after_ok']} answered requests: {s['ok']} correct 200s, "
                 f"{s['errors']} failed answers (target 0), {s['refused']} refused before being accepted, "
                 f"exit code {s['exit_code']}; the server's log: `{s['server_summary']}`")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
