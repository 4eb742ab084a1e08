"""``ccxray show ID [--req|--res|--meta]`` and ``ccxray compact``: one call whole, or the
log's full request sidecars converted to deltas. No server needed."""

from __future__ import annotations

import argparse
import json
import sys
from typing import IO, Sequence

from .compact import compact
from .cliargs import SubParser, exit_status
from .config import Settings
from .readback import ReadBackError, read_call


def run_show(args: Sequence[str], settings: Settings, out: IO[str]) -> int:
    """Print one call as JSON (for jq): all of it, or only its request, response or meta."""
    p = SubParser(prog="show", description="Print one recorded call whole, as JSON.")
    p.add_argument("id")
    part = p.add_mutually_exclusive_group()
    for name, help_text in (("req", "only the request, as it was sent"), ("res", "only the response"),
                            ("meta", "only method, URL, status and (redacted) headers")):
        part.add_argument(f"--{name}", dest="part", action="store_const", const=name, help=help_text)
    ns = p.parse_args(list(args))
    try:
        call = read_call(settings.logs_dir, ns.id)
    except ReadBackError as exc:
        print(f"ccxray show: {ns.id} cannot be read back: {exc}", file=sys.stderr)
        return 1
    if call is None:
        print(f"ccxray show: no call {ns.id!r} in {settings.logs_dir}", file=sys.stderr)
        return 1
    key = {"req": "request", "res": "response", "meta": "meta"}.get(ns.part or "")
    out.write(json.dumps(call if key is None else call[key], ensure_ascii=False, indent=2) + "\n")
    return 0


def run_compact(args: Sequence[str], settings: Settings, out: IO[str]) -> int:
    """Convert full request sidecars to deltas in place (safe beside a running proxy)."""
    p = SubParser(prog="compact", description="Store the log's full requests as deltas, in place.")
    p.parse_args(list(args))
    stats = compact(settings.logs_dir)
    out.write(f"ccxray compact: {stats.converted} requests converted ({stats.bytes_before} -> "
              f"{stats.bytes_after} bytes), {stats.skipped} left as they were\n")
    return 0


def run_store_command(command: str, args: Sequence[str], settings: Settings) -> int:
    """Dispatch ``show`` / ``compact``; exit status 2 on bad flags."""
    run = run_show if command == "show" else run_compact
    return exit_status(lambda: run(args, settings, sys.stdout))
