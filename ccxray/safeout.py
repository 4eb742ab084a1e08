"""A stdout that never raises: ``python -m ccxray | head -3`` must still stop on a signal.

When the reader of stdout goes away, the next print raises BrokenPipeError
(Python ignores SIGPIPE); raised inside the serve loop it skipped the stop
and left the proxy's threads running. This wrapper catches the failure once,
points descriptor 1 at /dev/null (so later prints and the interpreter's final
flush go nowhere quietly) and carries on.
"""

from __future__ import annotations

import io
import os
import sys


class NeverFailingStdout(io.TextIOWrapper):
    """sys.stdout's own buffer, written through; OSError and ValueError end in /dev/null."""

    def write(self, text: str) -> int:
        try:
            return super().write(text)
        except (OSError, ValueError):  # BrokenPipeError, EIO; ValueError: closed
            _to_devnull()
            return len(text)

    def flush(self) -> None:
        try:
            super().flush()
        except (OSError, ValueError):
            _to_devnull()


def _to_devnull() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    except OSError:
        pass  # nothing better to do with an unusable descriptor 1: writes keep being swallowed


def install() -> None:
    """Replace the process's real stdout (not a test's capture) with a NeverFailingStdout."""
    out = sys.__stdout__
    if out is None or sys.stdout is not out or not isinstance(out, io.TextIOWrapper):
        return
    sys.stdout = NeverFailingStdout(out.buffer, encoding=out.encoding, errors=out.errors,
                                    line_buffering=out.line_buffering)
