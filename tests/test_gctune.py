"""The collector settings a serving process takes (``ccxray.gctune``), and that
the start path applies them while a server built in a test's process keeps
the interpreter's defaults."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import weakref
from pathlib import Path
from typing import Iterator

import pytest

from ccxray.gctune import YOUNG_THRESHOLD, tune_gc

from .conftest import ProxyHandle


@pytest.fixture
def restored_gc() -> Iterator[None]:
    saved = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


def test_it_freezes_the_survivors_and_widens_the_young_generation(restored_gc: None) -> None:
    _, middle, old = gc.get_threshold()
    tune_gc()
    assert gc.get_threshold() == (YOUNG_THRESHOLD, middle, old)
    assert gc.get_freeze_count() > 0


def test_garbage_present_before_it_is_freed_not_frozen(restored_gc: None) -> None:
    gc.disable()  # no collection of its own may free the cycle before tune_gc runs
    try:
        cycle = Node()
        gone = weakref.ref(cycle)
        del cycle
        assert gone() is not None
        tune_gc()
    finally:
        gc.enable()
    assert gone() is None


def test_a_server_built_in_this_process_keeps_the_defaults(proxy: ProxyHandle) -> None:
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold()[0] != YOUNG_THRESHOLD


FOREGROUND_START = textwrap.dedent("""
    import gc, sys
    from ccxray.cli import _start_foreground
    from ccxray.config import load_settings

    before = gc.get_threshold()[0], gc.get_freeze_count()
    server = _start_foreground(load_settings({}, port=0, home=sys.argv[1]))
    try:
        print(*before, gc.get_threshold()[0], gc.get_freeze_count())
    finally:
        server.stop()
""")


def test_the_start_path_applies_them(tmp_path: Path) -> None:
    """The foreground path, through ``hubserve.start_server``, which the background proxy starts with too."""
    done = subprocess.run([sys.executable, "-c", FOREGROUND_START, str(tmp_path / "home")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    young_before, frozen_before, young_after, frozen_after = (int(n) for n in done.stdout.split())
    assert (young_before, frozen_before) == (700, 0)  # CPython's defaults until the server is up
    assert young_after == YOUNG_THRESHOLD and frozen_after > 10_000  # the modules and the app, at least
