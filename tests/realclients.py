"""Helpers for the end-to-end tests with the real agent CLIs (test_real_clients.py).

How the clients are run comes from shared/REAL_CLIENTS.md: a throwaway HOME,
an ``env -i``-style minimal environment, telemetry off, ``HTTPS_PROXY`` /
``HTTP_PROXY`` pointed at a closed loopback port (with ``NO_PROXY`` covering
loopback) so a stray outside connection fails fast instead of leaving the
machine, stdin from /dev/null, a timeout on every run, and the process group
killed and reaped even when the test fails.

The CLIs are found in ``$CCXRAY_REAL_CLIENTS_BIN`` (a directory holding
``claude`` and ``codex``, e.g. ``DIR/node_modules/.bin`` after ``npm install
--prefix DIR @anthropic-ai/claude-code @openai/codex``), else on PATH. A
missing CLI skips the test, unless ``CCXRAY_REQUIRE_REAL_CLIENTS`` is 1/true/yes (CI),
which makes it fail.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import pytest

from .skip_policy import env_flag

RUN_TIMEOUT_S = 90.0  # every real-client subprocess
GIT_TIMEOUT_S = 30.0

ANTHROPIC_KEY = "sk-ant-api03-fake-key-for-loopback-tests-000000"
OPENAI_KEY = "sk-proj-fake-key-for-loopback-tests-000000"
CHATGPT_ACCOUNT = "acct-fake-0001"
CHATGPT_REFRESH = "rt-fake-refresh-token-for-loopback-tests"
CODEX_MODEL = "gpt-5.5"

CLAUDE_ENV = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",  # else 3-6 connections go straight to api.anthropic.com
    "CLAUDE_CODE_MAX_RETRIES": "0",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_ERROR_REPORTING": "1",
}

CODEX_COMMON_TOML = """\
model = "{model}"
check_for_update_on_startup = false

[analytics]
enabled = false

[features]
plugins = false
apps = false
unbounded_connection_retries = false
"""

CODEX_PROVIDER_TOML = """\
model_provider = "fake"
{common}
[model_providers.fake]
name = "fake upstream"
base_url = "{base_url}"
wire_api = "responses"
env_key = "OPENAI_API_KEY"
supports_websockets = {websockets}
request_max_retries = 0
stream_max_retries = 0
"""

CODEX_CHATGPT_TOML = """\
cli_auth_credentials_store = "file"
{common}"""


# ---------------------------------------------------------------- finding the CLIs


def find_client(name: str) -> str:
    """The path of the ``name`` CLI, or skip (fail with CCXRAY_REQUIRE_REAL_CLIENTS=1)."""
    bin_dir = os.environ.get("CCXRAY_REAL_CLIENTS_BIN")
    if bin_dir:
        found = shutil.which(name, path=bin_dir)
    else:
        found = shutil.which(name)
    if found:
        return str(Path(found).absolute())
    where = f"in CCXRAY_REAL_CLIENTS_BIN={bin_dir}" if bin_dir else "on PATH (set CCXRAY_REAL_CLIENTS_BIN)"
    message = f"real client {name!r} not found {where}"
    if env_flag("CCXRAY_REQUIRE_REAL_CLIENTS"):
        pytest.fail(message + " and CCXRAY_REQUIRE_REAL_CLIENTS is set", pytrace=False)
    pytest.skip(message)


def search_path(*exes: str) -> str:
    """A minimal PATH: the CLIs' directories, node's (the bins may be node scripts), /usr/bin:/bin."""
    dirs: list[str] = []
    node = shutil.which("node")
    for exe in (*exes, *([node] if node else [])):
        parent = str(Path(exe).parent)
        if parent not in dirs:
            dirs.append(parent)
    for base in ("/usr/bin", "/bin"):
        if base not in dirs:
            dirs.append(base)
    return os.pathsep.join(dirs)


# ---------------------------------------------------------------- environment


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


free_port = closed_port  # same thing; the name says what the caller means


def minimal_env(home: Path, path: str, **extra: str) -> dict[str, str]:
    """``env -i``-style: only what REAL_CLIENTS.md sets, plus ``extra``."""
    dead = f"http://127.0.0.1:{closed_port()}"
    env = {
        "PATH": path,
        "HOME": str(home),
        "TERM": "dumb",
        "LANG": "C.UTF-8",
        "HTTPS_PROXY": dead,
        "HTTP_PROXY": dead,
        "NO_PROXY": "127.0.0.1,localhost,::1",
    }
    # coverage's own variables, so a "python -m ccxray" launcher run here is measured too
    env.update((k, v) for k, v in os.environ.items() if k.startswith("COVERAGE_"))
    env.update(extra)
    return env


def claude_env(home: Path, path: str, base_url: str, **extra: str) -> dict[str, str]:
    return minimal_env(home, path, ANTHROPIC_BASE_URL=base_url, ANTHROPIC_API_KEY=ANTHROPIC_KEY,
                       **CLAUDE_ENV, **extra)


def codex_env(home: Path, path: str, **extra: str) -> dict[str, str]:
    return minimal_env(home, path, CODEX_HOME=str(home / ".codex"), **extra)


def make_home(root: Path) -> Path:
    home = root / "home"
    (home / ".codex").mkdir(parents=True, exist_ok=True)
    return home


def write_codex_provider_config(home: Path, base_url: str, websockets: bool) -> None:
    common = CODEX_COMMON_TOML.format(model=CODEX_MODEL)
    text = CODEX_PROVIDER_TOML.format(common=common, base_url=base_url,
                                      websockets="true" if websockets else "false")
    (home / ".codex" / "config.toml").write_text(text)


def unsigned_jwt(claims: dict[str, Any]) -> str:
    def part(obj: dict[str, Any]) -> str:
        raw = json.dumps(obj, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


def write_codex_chatgpt_login(home: Path) -> str:
    """config.toml and auth.json for a ChatGPT login; returns the JWT (a secret)."""
    now = int(time.time())
    jwt = unsigned_jwt({
        "iss": "https://auth.openai.com",
        "aud": ["app_fake"],
        "sub": "auth0|fake-user",
        "email": "fake@example.com",
        "email_verified": True,
        "iat": now,
        "exp": now + 30 * 86400,  # no refresh attempted
        "https://api.openai.com/auth": {
            "chatgpt_account_id": CHATGPT_ACCOUNT,
            "chatgpt_plan_type": "plus",
            "chatgpt_user_id": "user-fake",
            "user_id": "user-fake",
        },
    })
    auth = {
        "OPENAI_API_KEY": None,
        "tokens": {"id_token": jwt, "access_token": jwt, "refresh_token": CHATGPT_REFRESH,
                   "account_id": CHATGPT_ACCOUNT},
        "last_refresh": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
    }
    codex_dir = home / ".codex"
    (codex_dir / "auth.json").write_text(json.dumps(auth))
    (codex_dir / "config.toml").write_text(CODEX_CHATGPT_TOML.format(common=CODEX_COMMON_TOML.format(model=CODEX_MODEL)))
    return jwt


def git_repo(path: Path, home: Path) -> Path:
    """A fresh git repository with one commit (Codex reports the cwd only in a repo)."""
    path.mkdir(parents=True, exist_ok=True)
    env = minimal_env(home, "/usr/bin:/bin", GIT_CONFIG_NOSYSTEM="1", GIT_AUTHOR_NAME="t",
                      GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="t",
                      GIT_COMMITTER_EMAIL="t@example.com")
    git = shutil.which("git") or "git"
    (path / "README").write_text("ccxray real-client test\n")
    for args in (["init", "-q"], ["add", "README"], ["commit", "-q", "-m", "init"]):
        subprocess.run([git, *args], cwd=path, env=env, stdin=subprocess.DEVNULL, check=True,
                       capture_output=True, timeout=GIT_TIMEOUT_S)
    return path


# ---------------------------------------------------------------- running


@dataclass
class Run:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    elapsed: float

    def describe(self) -> str:
        return (f"{self.argv[:3]}... exit {self.returncode} after {self.elapsed:.1f}s\n"
                f"--- stdout\n{self.stdout[-4000:]}\n--- stderr\n{self.stderr[-4000:]}")


def run(argv: Sequence[str], env: dict[str, str], cwd: Path, timeout: float = RUN_TIMEOUT_S) -> Run:
    """Run to completion in its own process group; on timeout or error kill the group and reap."""
    start = time.monotonic()
    proc = subprocess.Popen(list(argv), env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        _kill_group(proc)
        out, err = proc.communicate()
        elapsed = time.monotonic() - start
        raise AssertionError(
            f"{list(argv)[:3]}... did not finish within {timeout}s (killed after {elapsed:.1f}s)\n"
            f"--- stdout\n{out.decode(errors='replace')[-4000:]}\n--- stderr\n{err.decode(errors='replace')[-4000:]}"
        ) from None
    finally:
        _kill_group(proc)  # stray grandchildren (codex.js spawns the native binary)
    return Run(list(argv), proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"),
               time.monotonic() - start)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if proc.poll() is None:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------- reading results


def json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON objects among the lines of ``text`` (Codex --json prints JSONL)."""
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found


def codex_agent_messages(stdout: str) -> list[str]:
    return [event["item"].get("text", "") for event in json_lines(stdout)
            if event.get("type") == "item.completed" and isinstance(event.get("item"), dict)
            and event["item"].get("type") == "agent_message"]


def header(entry: dict[str, Any], name: str) -> str | None:
    """A header of a fake ``seen`` entry (case-insensitive), or None."""
    for key, value in entry["headers"]:
        if key.lower() == name.lower():
            return str(value)
    return None


def secrets_in(logs: Path, secrets: Iterable[str], skip: Iterable[str] = ()) -> list[str]:
    """``file: secret`` for every secret found in any file under ``logs`` (but those named in ``skip``)."""
    wanted = [s.encode() for s in secrets if s]
    skipped = set(skip)
    found = []
    for path in sorted(logs.rglob("*")):
        if path.is_file() and str(path.relative_to(logs)) not in skipped:
            data = path.read_bytes()
            found += [f"{path.relative_to(logs)}: {s.decode()[:24]}..." for s in wanted if s in data]
    return found


def same_path(a: str | None, b: Path) -> bool:
    return a is not None and Path(a).resolve() == b.resolve()
