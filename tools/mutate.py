"""A small AST mutation check: plant one bug at a time and see whether a test fails.

For each target module, every mutable spot found in its AST becomes one
mutant: a comparison flipped (``==``/``!=``, ``<``/``<=``, ``in``/``not in``,
``is``/``is not``), ``and``/``or`` swapped, a ``not`` dropped, ``+``/``-``
swapped, an integer constant moved by one, ``True``/``False`` swapped, a
string constant replaced, a ``return`` of a value turned into ``return None``,
a ``continue``/``break`` swapped. Each mutant is written into a private copy
of the repository (never into the working tree), and the tests mapped to the
module run there with ``-x`` (forked from a warmed-up tools/mutate_runner.py,
after a check that they pass unmutated); a mutant no test notices "survives". Docstrings
and ``__all__`` are left alone.

``python -m tools.mutate [--module ccxray/headers.py ...] [--jobs 2] [--limit N]``
prints each survivor as ``file:line: what changed`` and a per-module score.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = 300.0

# module -> the tests that must notice a change in it
TARGETS: dict[str, tuple[str, ...]] = {
    "ccxray/closecodes.py": ("tests/test_closecodes.py", "tests/test_wsbridge.py"),
    "ccxray/headers.py": ("tests/test_headers.py", "tests/test_header_rfc.py"),
    "ccxray/routing.py": ("tests/test_routing.py",),
    "ccxray/store.py": ("tests/test_store.py", "tests/test_index_ranges.py", "tests/test_restore.py",
                        "tests/test_assemble.py", "tests/test_logcli.py"),
}
WIRE_TESTS = ("tests/test_wire_common.py", "tests/test_wire_details.py", "tests/test_wire_sse.py",
              "tests/test_wire_anthropic.py", "tests/test_wire_openai.py",
              "tests/test_codex_ws.py", "tests/test_recorded_clients.py", "tests/test_summarize.py",
              "tests/test_sessions.py")
for _wire in ("__init__", "anthropic", "codex_ws", "openai", "sse"):
    TARGETS[f"ccxray/wire/{_wire}.py"] = WIRE_TESTS

COMPARE_SWAP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
    ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
}


@dataclass(frozen=True)
class Mutant:
    module: str
    index: int  # which mutable spot, in ast.walk order
    line: int
    description: str


class Mutator(ast.NodeTransformer):
    """Applies the ``target``-th mutation found (or, with target -1, only lists them)."""

    def __init__(self, target: int = -1) -> None:
        self.target = target
        self.count = 0
        self.found: list[tuple[int, str]] = []
        self.applied = False

    def _spot(self, node: ast.AST, description: str) -> bool:
        """Register a mutable spot; True if it is the one to mutate now."""
        self.found.append((getattr(node, "lineno", 0), description))
        hit = self.count == self.target
        self.count += 1
        self.applied = self.applied or hit
        return hit

    def visit_Expr(self, node: ast.Expr) -> ast.AST:
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return node  # docstrings
        return self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> ast.AST:
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return node
        return self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        for i, op in enumerate(node.ops):
            swap = COMPARE_SWAP.get(type(op))
            if swap and self._spot(node, f"{type(op).__name__} -> {swap.__name__}"):
                node.ops[i] = swap()
        return node

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        self.generic_visit(node)
        other: ast.boolop = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        if self._spot(node, f"{type(node.op).__name__} -> {type(other).__name__}"):
            node.op = other
        return node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.op, ast.Not) and self._spot(node, "drop not"):
            return node.operand
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        swaps: dict[type[ast.operator], type[ast.operator]] = {ast.Add: ast.Sub, ast.Sub: ast.Add}
        swap = swaps.get(type(node.op))
        if swap and not _is_string(node.left) and self._spot(node, f"{type(node.op).__name__} -> {swap.__name__}"):
            node.op = swap()
        return node

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        value = node.value
        if isinstance(value, bool):
            if self._spot(node, f"{value} -> {not value}"):
                return ast.copy_location(ast.Constant(not value), node)
        elif isinstance(value, int):
            if self._spot(node, f"{value} -> {value + 1}"):
                return ast.copy_location(ast.Constant(value + 1), node)
        elif isinstance(value, str) and value:
            if self._spot(node, f"{value[:30]!r} -> 'XmutX'"):
                return ast.copy_location(ast.Constant("XmutX"), node)
        return node

    def visit_JoinedStr(self, node: ast.JoinedStr) -> ast.AST:
        return node  # f-string pieces: messages, not logic

    def visit_Return(self, node: ast.Return) -> ast.AST:
        self.generic_visit(node)
        if node.value is not None and not (isinstance(node.value, ast.Constant) and node.value.value is None):
            if self._spot(node, "return value -> return None"):
                node.value = ast.Constant(None)
        return node

    def visit_Continue(self, node: ast.Continue) -> ast.AST:
        return ast.copy_location(ast.Break(), node) if self._spot(node, "continue -> break") else node

    def visit_Break(self, node: ast.Break) -> ast.AST:
        return ast.copy_location(ast.Continue(), node) if self._spot(node, "break -> continue") else node


def _is_string(node: ast.AST) -> bool:
    return isinstance(node, (ast.JoinedStr, ast.Constant)) and isinstance(getattr(node, "value", ""), str)


def mutants_of(module: str) -> list[Mutant]:
    finder = Mutator()
    finder.visit(ast.parse((ROOT / module).read_text(encoding="utf-8")))
    return [Mutant(module, i, line, text) for i, (line, text) in enumerate(finder.found)]


def mutated_source(module: str, index: int) -> str:
    mutator = Mutator(index)
    tree = mutator.visit(ast.parse((ROOT / module).read_text(encoding="utf-8")))
    if not mutator.applied:
        raise RuntimeError(f"mutation {index} of {module} not found")
    return ast.unparse(ast.fix_missing_locations(tree))


def make_copy(parent: Path, number: int) -> Path:
    """A private copy of what the tests import (ccxray, tests, tools, setup.cfg)."""
    copy = parent / f"copy{number}"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    for name in ("ccxray", "tests", "tools"):
        shutil.copytree(ROOT / name, copy / name, ignore=ignore)
    for name in ("setup.cfg", "pyproject.toml"):
        shutil.copy2(ROOT / name, copy / name)
    return copy


class Runner:
    """A tools/mutate_runner.py process working in one copy; runs test lists on request."""

    def __init__(self, copy: Path) -> None:
        self.copy = copy
        env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tools" / "mutate_runner.py"), str(copy), str(int(RUN_TIMEOUT_S))],
            cwd=copy, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)

    def passes(self, tests: Sequence[str]) -> bool:
        """True if the tests pass in the copy (a mutant survived); a hang or crash counts as a failure."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(list(tests)) + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        if not reply:
            raise RuntimeError(f"the test runner in {self.copy} exited")
        code = int(reply)
        if code in (2, 3, 4, 5):  # interrupted, internal or usage error, no tests
            raise RuntimeError(f"pytest could not run {list(tests)} (exit {code}): not a kill")
        return code == 0

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(RUN_TIMEOUT_S)

    def kill(self) -> None:
        """Stop the runner and the test run it forked (its own process group)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


def check_copy_is_imported(copy: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(copy))
    out = subprocess.run([sys.executable, "-c", "import ccxray; print(ccxray.__file__)"], cwd=copy, env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    if not out.startswith(str(copy)):
        raise RuntimeError(f"tests in the copy would import {out}, not the copy's ccxray")


def survives(runner: Runner, mutant: Mutant) -> bool:
    path = runner.copy / mutant.module
    original = (ROOT / mutant.module).read_text(encoding="utf-8")
    path.write_text(mutated_source(mutant.module, mutant.index), encoding="utf-8")
    try:
        return runner.passes(TARGETS[mutant.module])
    finally:
        path.write_text(original, encoding="utf-8")


def run_all(mutants: list[Mutant], jobs: int) -> Iterator[tuple[Mutant, bool]]:
    with tempfile.TemporaryDirectory(prefix="ccxray-mutate-") as tmp:
        copies = [make_copy(Path(tmp), n) for n in range(jobs)]
        check_copy_is_imported(copies[0])
        per_job = [mutants[n::jobs] for n in range(jobs)]
        runners = [Runner(copy) for copy in copies]

        def work(n: int) -> list[tuple[Mutant, bool]]:
            results = []
            runner = runners[n]
            try:
                if not runner.passes(sorted({t for m in per_job[n] for t in TARGETS[m.module]})):
                    raise RuntimeError("the tests fail without any mutation")
                for mutant in per_job[n]:
                    results.append((mutant, survives(runner, mutant)))
                    print(f"  {mutant.module}:{mutant.line}: {mutant.description}: "
                          f"{'SURVIVED' if results[-1][1] else 'killed'}", flush=True)
            finally:
                runner.close()
            return results
        try:
            with ThreadPoolExecutor(jobs) as pool:
                for results in pool.map(work, range(jobs)):
                    yield from results
        finally:  # interrupted (SIGTERM, Ctrl-C): leave no runner or test run behind
            for runner in runners:
                runner.kill()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--module", action="append", choices=sorted(TARGETS), help="default: all targets")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="at most this many mutants per module (0: all)")
    parser.add_argument("--sample", type=int, default=1, help="only every Nth mutant (a quicker partial check)")
    parser.add_argument("--list", action="store_true", help="only list the mutants")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so the clean-up in run_all runs
    mutants: list[Mutant] = []
    for module in args.module or sorted(TARGETS):
        found = mutants_of(module)[::args.sample]
        mutants += found[:args.limit] if args.limit else found
    if args.list:
        for m in mutants:
            print(f"{m.module}:{m.line}: {m.description}")
        return 0
    print(f"{len(mutants)} mutants", flush=True)
    results = list(run_all(mutants, args.jobs))
    survivors = [m for m, alive in results if alive]
    print("\nsurvivors:")
    for m in sorted(survivors, key=lambda m: (m.module, m.line)):
        print(f"{m.module}:{m.line}: {m.description}")
    for module in sorted({m.module for m in mutants}):
        total = sum(m.module == module for m in mutants)
        alive = sum(m.module == module for m in survivors)
        print(f"{module}: {total - alive}/{total} killed")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
