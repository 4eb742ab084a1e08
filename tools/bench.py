"""Benchmark ccxray against a direct connection to the fake upstream, in one run.

    python tools/bench.py [--quick] [--only http|ws|log|storage] [--json OUT] [--workers N]
                          [--peer LABEL=COMMAND ...]

``--peer`` measures another proxy in the same run, beside ccxray and direct,
from its start command; ``{port}``, ``{upstream}`` (http://127.0.0.1:UP) and
``{home}`` (a throwaway folder) are filled in, and it also gets PROXY_PORT,
ANTHROPIC_BASE_URL, OPENAI_BASE_URL, CHATGPT_BASE_URL and HOME. E.g.
``--peer 'node=node /path/to/ccxray-node/server/index.js --port {port}'`` or
``--peer 'mitm=mitmdump --mode reverse:{upstream} -p {port} -w {home}/flows'``.
A last table puts every target's proxy column side by side.

Starts ``tools/fake_upstream.py`` and ``python -m ccxray`` as separate
processes on free loopback ports (with a throwaway CCXRAY_HOME), runs every
measurement once straight to the fake and once through the proxy, prints a
table (metric, direct, proxy, added or ratio, target, PASS/FAIL) and stops
everything it started, also on Ctrl-C and on errors.

Reading the numbers: the proxy, the fake and the load generator share the
machine's cores, so rates (req/s, frames/s) are what this machine does with
all three competing. "proxy CPU per request/frame" (utime+stime of the proxy
process, recorder backlog included) is the machine-independent figure, and
"capacity on one core" is its inverse: what the proxy would sustain with a
core to itself. Against ccxray, the "recorder" column says whether its
recorder kept up with the phase a figure comes from (``/_api/health``:
records dropped, items still queued when the timing ended, time to drain);
a figure taken while records were dropped is marked DROPPED and named in a
warning under the table, since it understates the cost of recording.

Issue 2 (HTTP) targets: added p50 < 0.5 ms at c=1; >= 2,000 small req/s at
c=32 on one core; SSE first byte within 1 ms of direct; 10 MB throughput at
least half of direct. Issue 3 (WebSocket): round trip p50 < 0.25 ms,
handshake p50 < 1 ms, >= 80,000 frames/s, <= 48 KiB RSS per idle session.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `tools.bench_*` also under `python tools/bench.py`

from tools.bench_http import SMALL_TARGET, run_http, timed_requests  # noqa: E402
from tools.bench_log import run_log  # noqa: E402
from tools.bench_plan import Plan, Report  # noqa: E402
from tools.bench_storage import run_storage  # noqa: E402
from tools.bench_procs import BenchSetupError, Services  # noqa: E402
from tools.bench_report import dropped_warning, fmt, render_table, summary  # noqa: E402
from tools.bench_wire import BenchProtocolError  # noqa: E402
from tools.bench_ws import close_session, open_session, rtt_samples, run_ws  # noqa: E402


PIN_HARNESS = {0}  # --pin: the fake upstream and the load generator
PIN_PROXY = {1}    # --pin: the proxy


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="ccxray benchmark: direct vs through the proxy")
    parser.add_argument("--quick", action="store_true", help="fewer samples, shorter loads (about 40 s)")
    parser.add_argument("--only", choices=("http", "ws", "log", "storage"),
                        help="run only the HTTP, the WebSocket, the log (restore, usage, parser) "
                             "or the storage (delta bytes, read-back) tests")
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")
    parser.add_argument("--workers", type=int, default=max(2, os.cpu_count() or 2),
                        help="load-generator processes for the concurrent tests (default: cores, at least 2)")
    parser.add_argument("--peer", action="append", default=[], metavar="LABEL=COMMAND",
                        help="also measure this proxy, started by COMMAND (repeatable)")
    parser.add_argument("--pin", action="store_true",
                        help="the fake upstream and the load generator on CPU 0, the proxy on CPU 1 "
                             "(as the shared compare.sh does), instead of all sharing every core")
    args = parser.parse_args(argv)
    if args.pin and len(os.sched_getaffinity(0)) < 2:
        parser.error("--pin needs two usable CPUs")
    for peer in args.peer:
        if "=" not in peer:
            parser.error(f"--peer wants LABEL=COMMAND, got {peer!r}")
    return args


def _raise_interrupt(signum: int, frame: object) -> None:
    # SIGTERM gets the same orderly teardown as Ctrl-C.
    raise KeyboardInterrupt(f"signal {signum}")


def _setup_text(plan: Plan) -> str:
    wrk = "installed but not used (POST bodies and per-request latency come from our own client)" \
        if shutil.which("wrk") else "not installed (not needed)"
    return "\n".join([
        f"machine: {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}, "
        f"{platform.system()} {platform.release()}",
        f"client: c=1 tests from this process on one keep-alive socket; concurrent tests from {plan.workers} "
        "processes, each a selector loop over raw sockets with pre-built request bytes / pre-masked frames "
        "and a boundary-only parser (Content-Length, frame lengths); wrk " + wrk,
        "servers: fake upstream and proxy are separate processes on 127.0.0.1; proxy, fake and client "
        "share the cores, so rates are lower bounds; CPU per request is the portable figure",
        f"plan: {'quick' if plan.quick else 'full'}; c=1 {plan.c1_samples} samples (+{plan.c1_warmup} warm-up), "
        f"c={plan.c32_conns} {plan.c32_duration_s:g}s (+{plan.c32_warmup_s:g}s), SSE {plan.sse_reps} x "
        f"{plan.sse_events} events, {plan.big_reps} x {plan.big_bytes >> 20} MiB, WS RTT {plan.ws_rtt_samples}, "
        f"{plan.ws_handshakes} handshakes, {plan.ws_conns} conns {plan.ws_duration_s:g}s, "
        f"{plan.idle_sessions} idle sessions",
    ])


def _preflight(svc: Services, only: str | None) -> None:
    """One request (and one WebSocket echo) each way, so a broken setup fails fast and clearly."""
    for port in (svc.fake_port, svc.proxy_port):
        if only != "ws":
            timed_requests(port, SMALL_TARGET, 1, 0, 10.0)
        if only != "http":
            if not rtt_samples(port, 1, 0, 10.0):
                raise BenchProtocolError(f"no WebSocket echo on port {port}")
            close_session(*open_session(port, "echo"))


def _finish_notes(svc: Services, report: Report) -> None:
    logged = [line for line in svc.proxy_log_lines() if line.strip()]
    report.note(f"proxy stderr: {len(logged)} lines" + (f"; first: {logged[0][:200]}" if logged else ""))
    report.note(f"ccxray log after the run: {svc.log_files()} files, {svc.log_bytes() / 1e6:.1f} MB")
    report.details["proxy_stderr_head"] = logged[:20]


def run(args: argparse.Namespace) -> tuple[Report, Plan, dict[str, Report]]:
    plan = Plan.quick_run(args.workers) if args.quick else Plan.full(args.workers)
    report = Report()
    if args.pin:
        os.sched_setaffinity(0, PIN_HARNESS)  # the fake and the load generator inherit it
    print(_setup_text(plan), flush=True)
    if args.only in (None, "log"):
        run_log(report, args.quick)
    if args.only in (None, "storage"):
        run_storage(report, args.quick)
    peers: dict[str, Report] = {}
    if args.only in ("log", "storage"):
        return report, plan, peers
    proxy_cpus = PIN_PROXY if args.pin else None
    _run_target(None, args.only, plan, report, proxy_cpus)
    for spec in args.peer:
        label, cmd = spec.split("=", 1)
        print(f"\npeer {label}: {cmd}", flush=True)
        peers[label] = Report()
        _run_target(cmd, args.only, plan, peers[label], proxy_cpus)
    return report, plan, peers


def _run_target(cmd: str | None, only: str | None, plan: Plan, report: Report,
                proxy_cpus: set[int] | None) -> None:
    """Every measurement through one proxy (ccxray when ``cmd`` is None) and direct."""
    with Services(cmd, proxy_cpus) as svc:
        print(f"fake upstream pid {svc.fake.pid if svc.fake else '?'} port {svc.fake_port}; "
              f"proxy pid {svc.proxy_pid} port {svc.proxy_port}", flush=True)
        _preflight(svc, only)
        if only in (None, "http"):
            run_http(svc, plan, report)
        if only in (None, "ws"):
            run_ws(svc, plan, report)
        _finish_notes(svc, report)


def side_by_side(ours: Report, peers: dict[str, Report]) -> str:
    """metric | unit | direct | ccxray | each peer, in Markdown (rows matched by section and metric)."""
    labels = list(peers)
    found = {label: {(r.section, r.metric): r.proxy for r in rep.rows} for label, rep in peers.items()}
    out = ["| metric | unit | direct | ccxray | " + " | ".join(labels) + " |",
           "|---|---|---|---|" + "---|" * len(labels)]
    for row in ours.rows:
        if row.proxy is None:
            continue
        cells = [fmt(found[label].get((row.section, row.metric))) for label in labels]
        dropped = " (records dropped)" if row.recorder is not None and row.recorder.dropped else ""
        out.append(f"| {row.metric.strip()} | {row.unit} | {fmt(row.direct)} | {fmt(row.proxy)}{dropped} | "
                   + " | ".join(cells) + " |")
    return "\n".join(out)


def _write_json(path: str, report: Report, plan: Plan, elapsed_s: float, peers: dict[str, Report]) -> None:
    data: dict[str, Any] = {
        "peers": {label: [row.to_json() for row in peer.rows] for label, peer in peers.items()},
        "plan": plan.__dict__, "elapsed_s": elapsed_s, "cores": os.cpu_count(),
        "python": platform.python_version(), "rows": [row.to_json() for row in report.rows],
        "notes": report.notes, "details": report.details, "recorder_warning": dropped_warning(report.rows),
    }
    Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    started = time.monotonic()
    try:
        report, plan, peers = run(args)
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130
    except (BenchSetupError, BenchProtocolError, OSError, RuntimeError) as exc:
        print(f"bench failed: {exc!r}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - started
    print()
    print(render_table(report.rows))
    warning = dropped_warning(report.rows)
    if warning:
        print(f"\n{warning}")
    print()
    for text in report.notes:
        print(f"- {text}")
    print(f"\n{summary(report.rows)}; run took {elapsed:.0f}s")
    for label, peer in peers.items():
        print(f"\n[{label}]\n{render_table(peer.rows)}")
    if peers:
        print("\n" + side_by_side(report, peers))
    if args.json:
        _write_json(args.json, report, plan, elapsed, peers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
