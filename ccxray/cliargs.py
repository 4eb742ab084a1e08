"""What the subcommands (``tail``, ``usage``, ``show``, ``compact``, ``status``,
``start``, ``stop``) share in reading their flags: one error style
(``ccxray PROG: message`` on stderr, exit status 2) and a bad flag or ``--help``
turned into the status the dispatcher returns instead of an exit."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, NoReturn


class SubParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that names ccxray in its errors."""

    def error(self, message: str) -> NoReturn:
        print(f"ccxray {self.prog}: {message}", file=sys.stderr)
        raise SystemExit(2)


def exit_status(run: Callable[[], int]) -> int:
    """``run()``'s status, or the status a parser exited with (2 on a bad flag, 0 for
    ``--help``); a ``SystemExit`` carrying a message is status 1, as the interpreter has it."""
    try:
        return run()
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
