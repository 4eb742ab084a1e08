"""The test runner behind tools/mutate.py: pytest in a forked child of one warmed-up process.

Starting pytest costs seconds on a loaded machine, mostly in imports; the
mutants themselves take a fraction of that. This process imports pytest and
the test dependencies once (never ccxray, so each child imports the mutated
copy afresh), then for each line on stdin (a JSON list of test paths) forks a
child that runs them and prints its exit status. A child that runs longer
than ``timeout`` seconds is killed by SIGALRM, which counts as a failure.
"""

from __future__ import annotations

import json
import os
import signal
import sys


def run_forked(tests: list[str], timeout_s: int) -> int:
    pid = os.fork()
    if pid == 0:  # the child: quiet, bounded, exits without running the parent's cleanup
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        signal.alarm(timeout_s)
        import pytest
        code = pytest.main(["-x", "-q", "-p", "no:cacheprovider", "-p", "no:cov", "-o", "addopts=",
                            "-W", "ignore::pytest.PytestAssertRewriteWarning", *tests])
        os._exit(int(code))
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def main(argv: list[str]) -> int:
    copy, timeout_s = argv[0], int(argv[1])
    os.chdir(copy)
    sys.path.insert(0, copy)
    # Warm-up imports shared by every child; not the SDKs: they load pytest plugins
    # (anyio) that pytest would then find already imported and refuse to rewrite.
    import h11  # noqa: F401
    import hypothesis  # noqa: F401
    import pytest  # noqa: F401
    import websockets  # noqa: F401
    import wsproto  # noqa: F401
    try:
        for line in sys.stdin:
            print(run_forked(json.loads(line), timeout_s), flush=True)
    except BrokenPipeError:  # tools/mutate.py went away: nobody is waiting for an answer
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
