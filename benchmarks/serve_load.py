"""Bounded load on `effnet serve` over 127.0.0.1: dynamic batching against one-at-a-time serving, interleaved.

    python benchmarks/serve_load.py                       # 300 requests at concurrency 1, 4, 8 per mode; prints
    python benchmarks/serve_load.py --pytorch --record    # ... also on the PyTorch runtime; writes BENCHMARKS.md

Real servers run side by side (same model, runtime and threads; one with --max-batch N, one with --max-batch 1;
with --pytorch the same pair again on --runtime pytorch) and the rounds rotate between them, so machine load
drifting over the run hits all alike. Every request posts scikit-image's chelsea (JPEG) to /predict and must come
back 200 with a cat class on top (Lite0's eval crop makes it a near-tie of tiger cat and Egyptian cat), else it
is an error. The clients are threads of this process, each with one
keep-alive connection (http.client, no per-request connection setup); the table shows the CPU time they, the
server and its forward passes took per request, and the report derives the throughput ceiling from it.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = "<!-- section: serve-load -->"
BOUNDARY = "effnet-load-boundary"
QUIET_LOAD = 1.2  # 1-minute load average below which the machine counts as otherwise idle
CAT_NAMES = (b'"tiger cat"', b'"Egyptian cat"', b'"tabby"')  # chelsea's acceptable top-1 names


@dataclass
class Tally:
    """Latencies (s), error count and wall time accumulated over rounds, plus forward passes seen by the server."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    wall: float = 0.0
    images: float = 0.0
    passes: float = 0.0
    model_seconds: float = 0.0  # forward passes, as the server's metrics time them
    server_cpu: float = 0.0  # CPU seconds of the server process(es)
    client_cpu: float = 0.0  # CPU seconds of this process's client threads

    def percentile(self, q: float) -> float:
        """The q-th percentile latency in ms (nearest rank)."""
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]

    @property
    def throughput(self) -> float:
        """Requests per second."""
        return len(self.latencies) / self.wall


def cpu_summary() -> str:
    """CPU model and the instruction-set extensions that matter for inference speed."""
    from effnet._util.cpuinfo import cpu_info

    return cpu_info().short()


def chelsea_form() -> bytes:
    """A multipart body holding chelsea as a JPEG."""
    from PIL import Image
    from skimage import data

    buffer = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buffer, format="JPEG", quality=90)
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="chelsea.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    return head + buffer.getvalue() + f"\r\n--{BOUNDARY}--\r\n".encode()


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, args: list[str], log) -> subprocess.Popen:
    """`effnet serve` on 127.0.0.1:port, returned once it reports ready."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "effnet.cli", "serve", "--port", str(port), "--log-level", "warning", *args]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {process.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2).read()  # warmed up
            return process
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"server on port {port} did not start in 300 s")


def one_round(port: int, body: bytes, concurrency: int, requests: int, tally: Tally) -> None:
    """`requests` POST /predict from `concurrency` keep-alive clients in closed loops."""
    lock, issued = threading.Lock(), [0]
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                if issued[0] >= requests:
                    break
                issued[0] += 1
            start = time.perf_counter()
            try:
                connection.request("POST", "/predict", body, headers)
                response = connection.getresponse()
                payload = response.read()
                top = payload.split(b'"top":[', 1)[-1][:80]
                ok = response.status == 200 and any(name in top for name in CAT_NAMES)
            except (OSError, http.client.HTTPException):
                ok = False
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            elapsed = time.perf_counter() - start
            with lock:
                tally.latencies.append(elapsed)
                tally.errors += not ok
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    tally.wall += time.perf_counter() - start


def server_counters(port: int) -> tuple[float, float, float]:
    """(images, forward passes, seconds in forward passes) the server has run so far, from /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    pattern = r"^(effnet_serve_(?:batch_size_sum|batch_size_count|inference_seconds_sum)) (\S+)$"
    values = {name: float(value) for name, value in re.findall(pattern, text, re.M)}
    names = ("batch_size_sum", "batch_size_count", "inference_seconds_sum")
    return tuple(values.get(f"effnet_serve_{name}", 0.0) for name in names)  # type: ignore[return-value]


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its descendants (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except (OSError, ValueError, IndexError):
        return float("nan")
    return total + sum(process_cpu_seconds(int(child)) for child in children)


def measured_round(port: int, pid: int, body: bytes, concurrency: int, requests: int, tally: Tally) -> None:
    """One round, with the server's and the client's CPU time and the server's forward passes around it."""
    before, cpu_before, client_before = server_counters(port), process_cpu_seconds(pid), time.process_time()
    one_round(port, body, concurrency, requests, tally)
    client_after, cpu_after, after = time.process_time(), process_cpu_seconds(pid), server_counters(port)
    tally.client_cpu += client_after - client_before
    tally.server_cpu += cpu_after - cpu_before
    tally.images += after[0] - before[0]
    tally.passes += after[1] - before[1]
    tally.model_seconds += after[2] - before[2]


def run(args: argparse.Namespace) -> tuple[dict[tuple[str, int], Tally], dict[str, str]]:
    """Start both servers, warm them up and run the interleaved rounds."""
    body = chelsea_form()
    common = ["--pretrained", "--model", args.model, "--max-wait-ms", str(args.max_wait_ms)]
    if args.threads:
        common += ["--threads", str(args.threads)]
    if args.streams:
        common += ["--streams", str(args.streams)]
    if args.workers > 1:
        common += ["--workers", str(args.workers)]
    modes = {
        "dynamic batching": [*common, "--runtime", args.runtime, "--max-batch", str(args.max_batch)],
        "one at a time": [*common, "--runtime", args.runtime, "--max-batch", "1"],
    }
    if args.pytorch:  # the same two servers on the PyTorch runtime: what serving the model as it is gives
        modes["dynamic batching, PyTorch"] = [*common, "--runtime", "pytorch", "--max-batch", str(args.max_batch)]
        modes["one at a time, PyTorch"] = [*common, "--runtime", "pytorch", "--max-batch", "1"]
    ports = {mode: free_port() for mode in modes}
    tallies: dict[tuple[str, int], Tally] = {}
    info = {"load_before": " ".join(f"{x:.1f}" for x in os.getloadavg())}
    with tempfile.TemporaryFile() as log:
        servers = [start_server(ports[mode], modes[mode], log) for mode in modes]
        try:
            for mode in modes:  # warm-up, not recorded
                one_round(ports[mode], body, 4, 16, Tally())
            for concurrency in args.concurrency:
                per_round = args.requests // args.rounds
                for round_index in range(args.rounds):
                    shift = round_index % len(modes)  # each mode takes each position in turn
                    order = list(modes)[shift:] + list(modes)[:shift]
                    for mode in order:
                        tally = tallies.setdefault((mode, concurrency), Tally())
                        pid = servers[list(modes).index(mode)].pid
                        measured_round(ports[mode], pid, body, concurrency, per_round, tally)
                    print(f"concurrency {concurrency}: round {round_index + 1}/{args.rounds} done", file=sys.stderr)
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=30)
    info["load_after"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return tallies, info


def report(tallies: dict[tuple[str, int], Tally], args: argparse.Namespace, info: dict[str, str]) -> str:
    """Markdown: the table, the two target ratios and how it was measured."""
    lines = [
        "| mode | clients | requests | errors | req/s | p50 ms | p99 ms | images per pass | forward ms per image "
        "| server CPU ms per request | client CPU ms per request |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    order = {mode: index for index, mode in enumerate(dict.fromkeys(mode for mode, _ in tallies))}
    for (mode, concurrency), t in sorted(tallies.items(), key=lambda item: (item[0][1], order[item[0][0]])):
        count = len(t.latencies)
        mean_batch = t.images / t.passes if t.passes else float("nan")
        model_ms = 1000 * t.model_seconds / t.images if t.images else float("nan")
        lines.append(
            f"| {mode} | {concurrency} | {count} | {t.errors} | {t.throughput:.1f} | {t.percentile(50):.1f} "
            f"| {t.percentile(99):.1f} | {mean_batch:.2f} | {model_ms:.1f} | {1000 * t.server_cpu / count:.1f} "
            f"| {1000 * t.client_cpu / count:.1f} |"
        )
    top, low = max(args.concurrency), min(args.concurrency)
    batched, single = tallies[("dynamic batching", top)], tallies[("one at a time", top)]
    # At the lowest concurrency both servers run batches of one through the same code, so their latencies are
    # pooled: what a lone request costs on this machine.
    lone = Tally(tallies[("dynamic batching", low)].latencies + tallies[("one at a time", low)].latencies)
    lone_throughput = (tallies[("dynamic batching", low)].throughput + tallies[("one at a time", low)].throughput) / 2
    alone = lone.percentile(50)
    lines += [
        "",
        f"At concurrency {top}: dynamic batching serves **{batched.throughput / single.throughput:.2f}x** the "
        f"requests per second of one-at-a-time serving (target >= 1.3x); its p99 is "
        f"**{batched.percentile(99) / alone:.1f}x** the single-request latency (target <= 3x; p50 at concurrency "
        f"{low}, both servers pooled: {alone:.1f} ms). Little's law bounds the latter: with {top} clients in a closed "
        f"loop the mean latency is {top} / throughput = {1000 * top / batched.throughput:.0f} ms here, so p99 <= 3x "
        f"a lone request needs throughput at {top} clients >= {top / 3:.1f}x that of one client; measured: "
        f"{batched.throughput / lone_throughput:.2f}x.",
        "",
        ceiling(batched, top, lone_throughput),
    ]
    if ("dynamic batching, PyTorch", top) in tallies:
        torch_batched, torch_single = (
            tallies[("dynamic batching, PyTorch", top)],
            tallies[("one at a time, PyTorch", top)],
        )
        lines += [
            "",
            f"On the PyTorch runtime at {top} clients: dynamic batching serves "
            f"{torch_batched.throughput / torch_single.throughput:.2f}x the requests per second of one-at-a-time "
            f"serving; the default runtime (onnxruntime) with dynamic batching serves "
            f"{batched.throughput / torch_single.throughput:.2f}x what one-at-a-time PyTorch serving does.",
        ]
    return "\n".join(lines)


def ceiling(batched: Tally, clients: int, lone_throughput: float) -> str:
    """The throughput no scheduling can beat: all cores busy with the CPU time each request was measured to cost."""
    cores = os.cpu_count() or 1
    count = len(batched.latencies)
    cpu_ms = 1000 * (batched.server_cpu + batched.client_cpu) / count
    limit = 1000 * cores / cpu_ms
    busy = cpu_ms * batched.throughput / 1000  # Little's law for CPU: cost per request x requests per second
    mean_ms = 1000 * sum(batched.latencies) / count
    return (
        f"The ceiling: at {clients} clients with dynamic batching a request cost {cpu_ms:.1f} ms of CPU in all "
        f"(server {1000 * batched.server_cpu / count:.1f}, client {1000 * batched.client_cpu / count:.1f}; the "
        f"forward passes took {1000 * batched.model_seconds / count:.1f} ms of wall time per request), so {cores} "
        f"cores serve at most {limit:.0f} requests/s, {limit / lone_throughput:.2f}x one client's throughput; "
        f"the server reached {batched.throughput:.0f}, keeping {busy:.2f} of the {cores} cores busy (the rest "
        f"went to other processes or stood idle): **{batched.throughput / limit:.0%} of the ceiling** (target >= "
        f"90% on an idle machine). Its p99 was **{batched.percentile(99) / mean_ms:.2f}x the mean latency** "
        f"({batched.percentile(99):.1f} against {mean_ms:.1f} ms; target <= 2x)."
    )


def record(markdown: str, args: argparse.Namespace, info: dict[str, str]) -> None:
    """Replace (or append) the serving section of BENCHMARKS.md."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = "python benchmarks/serve_load.py " + " ".join(sys.argv[1:])
    busiest = max(float(info[key].split()[0]) for key in ("load_before", "load_after"))
    shared = (
        "the machine was shared with other jobs, so absolute figures are inflated and noisy"
        if busiest >= QUIET_LOAD
        else "the machine was otherwise idle"
    )
    body = (
        f"{MARKER}\n## Serving: dynamic batching under load (`effnet serve`)\n\n"
        f"`{command.strip()}`, {when}; {args.model} with its pretrained weights, {cpu_summary()}; load average "
        f"{info['load_before']} before and {info['load_after']} after (1, 5, 15 min): {shared}; the servers ran "
        f"side by side with rotating rounds, so the ratios compare like with like. Each request posts chelsea "
        f"(451x300 JPEG) to /predict.\n\n{markdown}\n\n"
    )
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    # The section runs to the next marked section or the next heading of its level, whichever comes first.
    pattern = re.compile(re.escape(MARKER) + r"\n## [^\n]*\n.*?(?=<!-- section:|\n## |\Z)", re.S)
    text = pattern.sub(lambda _: body, text) if MARKER in text else text.rstrip() + "\n\n" + body
    path.write_text(text)


def main() -> None:
    """Parse flags, run, print and optionally record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0", help="model with a pretrained record")
    parser.add_argument("--requests", type=int, default=300, help="requests per mode and concurrency (default 300)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8], help="clients (default 1 4 8)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per concurrency (default 3)")
    parser.add_argument("--max-batch", type=int, default=4, help="batch cap of the batching server (default 4)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="batch wait (default 5)")
    parser.add_argument("--threads", type=int, help="intra-op threads of both servers (default: effnet serve's)")
    parser.add_argument("--streams", type=int, help="--streams of both servers (default: effnet serve's)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes per server (default 1)")
    parser.add_argument("--runtime", default="auto", help="--runtime of both servers (default auto)")
    parser.add_argument("--pytorch", action="store_true", help="also both servers with --runtime pytorch")
    parser.add_argument("--record", action="store_true", help="write the result into BENCHMARKS.md")
    args = parser.parse_args()
    print(f"CPU: {cpu_summary()}; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}", file=sys.stderr)
    tallies, info = run(args)
    markdown = report(tallies, args, info)
    print(markdown)
    print(json.dumps(info))
    if args.record:
        record(markdown, args, info)


if __name__ == "__main__":
    main()
