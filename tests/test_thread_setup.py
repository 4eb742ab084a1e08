"""The process-wide thread settings the CLI applies before serving: malloc
arenas bounded where glibc allows it, and a thread stack that still holds
the deepest JSON the proxy may have to render (with the collector settings
a serving process takes)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from ccxray.arenas import M_ARENA_MAX, RELAY_ARENAS, bound_arenas, find_mallopt


def test_arena_bound_goes_to_mallopt():
    calls: list[tuple[int, int]] = []

    def mallopt(option: int, value: int) -> int:
        calls.append((option, value))
        return 1

    assert bound_arenas(mallopt) is True
    assert calls == [(M_ARENA_MAX, RELAY_ARENAS)]


def test_arena_bound_is_harmless_without_mallopt():
    assert bound_arenas(None) is False
    assert bound_arenas(lambda option, value: 0) is False  # a C library that refuses the option


def test_real_mallopt_accepts_the_bound_or_is_absent():
    """In a fresh process: glibc takes it (1); elsewhere there is nothing to call."""
    code = "from ccxray.arenas import bound_arenas, find_mallopt; m = find_mallopt(); print(m is not None, bound_arenas(m))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    found, taken = done.stdout.split()
    assert taken == found  # where mallopt exists it accepts M_ARENA_MAX
    assert (find_mallopt() is not None) == (found == "True")


DEEP_JSON_IN_A_THREAD = textwrap.dedent("""
    import json, sys, threading
    from ccxray.cli import prepare_threads
    from ccxray.conversation import _json_text
    from ccxray.gctune import tune_gc

    prepare_threads()
    tune_gc()  # and the collector settings of a serving process
    outcome = []

    def deepest(opening, closing, leaf):
        depth = sys.getrecursionlimit()
        while depth:
            try:
                return json.loads(opening * depth + leaf + closing * depth)
            except RecursionError:
                depth -= 10
        raise AssertionError("nothing parsed")

    def render():
        for opening, closing, leaf in (("[", "]", "1"), ('{"k":', "}", '"\u00e9"')):
            text = _json_text(deepest(opening, closing, leaf))
            outcome.append(text.count(opening[0]))

    thread = threading.Thread(target=render)
    thread.start()
    thread.join()
    print(outcome)
""")


def test_thread_stack_holds_the_deepest_json_rendered_with_indent():
    """json.loads stops at the recursion limit; rendering what it returned, indented
    (the page's conversation view, on a connection thread), must not overflow the
    C stack the CLI gives threads: that would kill the whole proxy, not one request."""
    done = subprocess.run([sys.executable, "-c", DEEP_JSON_IN_A_THREAD], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    depths = [int(n) for n in done.stdout.strip().strip("[]").split(",")]
    assert len(depths) == 2 and min(depths) > 900, depths
