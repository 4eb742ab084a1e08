"""The page in headless Chromium (Playwright, Debian's chromium), against recorded agent traffic.

One proxy in front of the fake upstream records a Claude Code-style
conversation (thinking, a tool call and its result, a changed system
prompt), a Claude sub-agent call and a Codex WebSocket session; each test
then drives a fresh page. Screenshots of the main views are saved under the
pytest temporary directory (the path is printed).

Skips (with the reason) only when Playwright or chromium is missing, and
fails instead when CI or CCXRAY_REQUIRE_BROWSER is set.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
from websockets.sync.client import connect

from ccxray.config import load_settings
from ccxray.server import ProxyServer
from tools.fake_upstream import FakeUpstream

from . import dashboard_traffic as traffic
from .conftest import proxy_env, wait_until

REQUIRED = bool(os.environ.get("CI") or os.environ.get("CCXRAY_REQUIRE_BROWSER"))
TIMEOUT_MS = 15000


def _chromium() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
    if path is None:
        if REQUIRED:
            pytest.fail("chromium is required (CI or CCXRAY_REQUIRE_BROWSER) but not installed: apt-get install chromium")
        pytest.skip("chromium is not installed (apt-get install chromium); set CCXRAY_REQUIRE_BROWSER=1 to fail instead")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if REQUIRED:
            pytest.fail("the playwright package is required (pip install -e '.[test]')")
        pytest.skip("the playwright package is not installed (pip install -e '.[test]')")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=path, args=["--no-sandbox"])
        warm = chromium.new_context()  # Playwright starts a helper thread on first use: before the leak check's baseline
        warm.new_page().goto("about:blank")
        warm.close()
        try:
            yield chromium
        finally:
            chromium.close()


class Recorded:
    """A proxy that recorded the traffic of ``dashboard_traffic``, and its fake upstream."""

    def __init__(self, fake: FakeUpstream, server: ProxyServer) -> None:
        self.fake = fake
        self.server = server

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/"

    def lines(self) -> list[dict[str, Any]]:
        from ccxray.store import read_index
        return list(read_index(self.server.settings.logs_dir / "index.ndjson"))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    fake = FakeUpstream()
    fake.start()
    server = ProxyServer(load_settings(proxy_env(fake, tmp_path_factory.mktemp("home")), port=0)).start()
    try:
        traffic.all_traffic(server.port)
        handle = Recorded(fake, server)
        wait_until(lambda: len(handle.lines()) >= 8, 15, "the recorded traffic")
        yield handle
    finally:
        server.stop(grace_s=2)
        fake.stop()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dashboard-screenshots")
    print(f"\ndashboard screenshots: {folder}")
    return folder


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield tab
    finally:
        context.close()
    assert not errors, f"the page threw: {errors}"


def snap(page: Any, path: Path) -> None:
    """Save a screenshot (written here: Playwright's own file write starts a thread that outlives the test)."""
    path.write_bytes(page.screenshot())


def open_page(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready]")


def claude_lines(recorded: Recorded) -> list[dict[str, Any]]:
    return [l for l in recorded.lines() if l.get("agent") == "claude" and not l.get("isSubagent")]


def open_turn(page: Any, recorded: Recorded, number: int, tab: str = "") -> None:
    line = claude_lines(recorded)[number - 1]
    open_page(page, recorded.url + f"#/s/{traffic.CLAUDE_SESSION}/t/{line['id']}" + (f"/{tab}" if tab else ""))
    page.wait_for_selector(".detail-head")


def test_sessions_grouped_by_project_with_the_sub_agent_inside(page: Any, recorded: Recorded, shots: Path) -> None:
    open_page(page, recorded.url)
    sessions = page.locator("#session-list")
    sessions.locator(".session").first.wait_for()
    text = sessions.inner_text()
    assert "…/dev/shop" in text and "…/dev/engine" in text
    assert traffic.CODEX_PROMPTS[0] in text and "read notes.txt" in text
    claude_row = sessions.locator(f'.session[data-id="{traffic.CLAUDE_SESSION}"]')
    assert "1 sub-agent" in claude_row.inner_text() and "claude" in claude_row.inner_text()
    assert "3 turns" in claude_row.inner_text()
    snap(page, shots / "sessions.png")
    claude_row.click()
    cards = page.locator("#turn-list .card")
    wait_until(lambda: cards.count() == 4, 10, "three turns and the sub-agent call")
    assert page.locator("#turn-list .card.subagent").inner_text().count("sub-agent") == 1
    assert traffic.SUBAGENT_PROMPT in page.locator("#turn-list .card.subagent").inner_text()
    assert "All projects" in page.locator("#crumbs").inner_text()


def test_timeline_shows_prompt_reassembled_reply_and_tool_call_with_its_result(page: Any, recorded: Recorded, shots: Path) -> None:
    open_turn(page, recorded, 1)
    timeline = page.locator(".timeline")
    timeline.wait_for()
    assert traffic.HOSTILE_PROMPT in timeline.inner_text()
    reply = page.locator(".msg.reply")
    assert "Let me read it." in reply.inner_text()
    tool = reply.locator(".tool-call")
    assert "Read" in tool.inner_text() and '"file_path": "notes.txt"' in tool.inner_text()
    assert "ship it" in tool.locator(".tool-output").inner_text()  # the result, from the next request
    thinking = reply.locator("details.thinking")
    assert "The user wants the file; read it first." in thinking.inner_text()  # the deltas joined
    assert "system-reminder" in timeline.locator("details.injected").inner_text()  # injected, collapsed
    snap(page, shots / "timeline.png")
    open_turn(page, recorded, 2)
    texts = page.locator(".msg.reply .text").all_inner_texts()
    assert "The notes say: ship it." in texts  # one text, not its deltas "The notes" + " say: ship it."
    assert "The notes" not in [t.strip() for t in texts]


def test_changes_view_names_the_new_messages_and_the_prompt_change(page: Any, recorded: Recorded, shots: Path) -> None:
    open_turn(page, recorded, 2, "changes")
    changes = page.locator(".changes")
    changes.wait_for()
    items = changes.locator(".changed-msg").all_inner_texts()
    assert len(items) == 2
    assert "assistant" in items[0] and "tool call Read" in items[0] and "thinking" in items[0]
    assert "user" in items[1] and "tool result" in items[1]
    assert "unchanged" in changes.locator(".fact", has_text="system prompt").inner_text()
    snap(page, shots / "changes.png")
    open_turn(page, recorded, 3, "changes")
    changes = page.locator(".changes")
    changes.wait_for()
    assert "changed" in changes.locator(".fact", has_text="system prompt").inner_text()
    assert traffic.FOLLOW_UP in changes.inner_text()


def test_a_turn_stored_as_a_delta_shows_its_whole_timeline_and_changes(page: Any, recorded: Recorded) -> None:
    first, second = claude_lines(recorded)[:2]
    stored = json.loads((recorded.server.settings.logs_dir / f"{second['id']}_req.json").read_text())
    assert stored["messages"]["$delta"]["base"] == first["id"]  # on disk: only what is new since the first
    open_turn(page, recorded, 2)
    earlier = page.locator("details.earlier-box")
    assert "1 earlier message (" in earlier.locator("summary").inner_text()
    earlier.locator("summary").click()  # the message only the delta's base holds
    wait_until(lambda: traffic.HOSTILE_PROMPT in earlier.inner_text(), 10, "the earlier message")
    assert "ship it" in page.locator(".timeline").inner_text()  # the tool result, new in this request
    open_turn(page, recorded, 2, "changes")
    items = page.locator(".changes .changed-msg").all_inner_texts()
    assert len(items) == 2 and "tool call Read" in items[0] and "tool result" in items[1]


def test_system_prompt_versions_and_their_diff(page: Any, recorded: Recorded, shots: Path) -> None:
    open_page(page, recorded.url + "#/prompts")
    page.wait_for_selector(".prompt-list .prompt")
    listing = page.locator(".prompt-list").inner_text()
    assert "claude-code 2.1.197" in listing and "claude-code 2.1.198" in listing
    diff = page.locator(".line-diff")
    diff.wait_for()
    added = diff.locator(".d-add").all_inner_texts()
    removed = diff.locator(".d-del").all_inner_texts()
    assert any("Prefer short answers." in t for t in added)
    assert any("cc_version=2.1.197" in t for t in removed) and any("cc_version=2.1.198" in t for t in added)
    snap(page, shots / "prompts.png")


def test_system_tab_lists_the_prompt_parts(page: Any, recorded: Recorded) -> None:
    open_turn(page, recorded, 1, "system")
    parts = page.locator(".sysparts").inner_text()
    assert "core instructions" in parts and "environment" in parts and "tools (2)" in parts


def test_recorded_markup_stays_text_and_never_runs(page: Any, recorded: Recorded) -> None:
    response = page.goto(recorded.url)
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    page.wait_for_selector("body[data-ready]")
    open_turn(page, recorded, 1)
    page.locator(".timeline").wait_for()
    assert traffic.HOSTILE_PROMPT in page.locator(".timeline").inner_text()
    assert page.locator("main img, main script").count() == 0  # shown as text, never parsed as markup
    page.locator(".subtabs button[data-tab='raw']").click()
    page.locator(".json").first.wait_for()
    page.locator(".json details").nth(4).click()  # request.messages
    assert page.evaluate("window.__xss") is None
    assert page.locator("main img, main script").count() == 0
    assert page.locator("script").count() == 1  # the page's own module, nothing recorded
    assert "<script>window.__xss = 1</script>" in page.locator("#turn-list").inner_text()


def test_keyboard_reaches_a_turn_and_goes_back(page: Any, recorded: Recorded) -> None:
    open_page(page, recorded.url)
    page.locator("#session-list .session").first.wait_for()
    page.keyboard.press("j")
    assert page.locator("#session-list .session.cursor").count() == 1
    page.keyboard.press("Enter")
    page.locator("#turn-list .card").first.wait_for()
    page.keyboard.press("j")
    page.keyboard.press("Enter")
    page.locator(".detail-head").wait_for()
    assert "/t/" in page.url
    page.keyboard.press("Escape")
    wait_until(lambda: "/t/" not in page.url, 10, "Esc to close the turn")
    page.keyboard.press("?")
    assert page.locator("#help").is_visible()
    page.keyboard.press("Escape")
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "search"
    page.keyboard.type("model:gpt")
    wait_until(lambda: page.locator("#session-list .session").count() == 1, 10, "the filter to keep the Codex session")


def test_codex_connection_holds_its_turns_and_frames(page: Any, recorded: Recorded, shots: Path) -> None:
    open_page(page, recorded.url + f"#/s/{traffic.CODEX_SESSION}")
    group = page.locator("#turn-list .group")
    group.wait_for()
    assert group.locator(".card").count() == 3
    assert group.locator(".card.prewarm").count() == 1
    assert "2 turns" in group.locator(".group-head").inner_text()
    group.locator(".card:not(.prewarm)").first.click()
    page.locator(".msg.reply").wait_for()
    assert "hi" in page.locator(".msg.reply").inner_text()
    group.locator(".group-head button").click()
    page.get_by_role("button", name="Show frames").click()
    page.locator(".frames summary.frame").first.wait_for()
    frames = page.locator(".frames").inner_text()
    assert "→ upstream" in frames and "response.completed" in frames
    snap(page, shots / "connection.png")


def test_pending_call_shows_before_its_response_ends_then_becomes_a_card(page: Any, recorded: Recorded) -> None:
    session = "pending-session-0001"
    open_page(page, recorded.url + f"#/s/{session}")
    page.locator("#live.live").wait_for()
    done = threading.Event()

    def call() -> None:
        try:
            traffic.claude_step(recorded.server.port, [{"role": "user", "content": "slow one"}],
                                traffic.claude_system("2.1.197"), session=session, mode="stepped")
        finally:
            done.set()

    worker = threading.Thread(target=call)
    worker.start()
    try:
        pending = page.locator("#turn-list .card.pending")
        pending.wait_for()
        assert "in flight" in pending.inner_text() and "claude-sonnet-4-5" in pending.inner_text()
        recorded.fake.step(3)  # part of the stream: still pending
        assert page.locator("#turn-list .card.pending").count() == 1
    finally:
        recorded.fake.step(50)
        worker.join(20)
    assert done.is_set()
    page.locator("#turn-list .card:not(.pending)").wait_for()
    assert page.locator("#turn-list .card.pending").count() == 0
    assert "slow one" in page.locator("#turn-list .card").inner_text()


def test_codex_turn_under_way_shows_in_its_connection_then_becomes_a_card(page: Any, recorded: Recorded,
                                                                         shots: Path) -> None:
    """Why a Codex session stalls: the turn sent and not answered shows, with its clock,
    inside its connection, until its line comes (here: partial, the connection closed)."""
    session = "ws-pending-session-0001"
    open_page(page, recorded.url + f"#/s/{session}")
    page.locator("#live.live").wait_for()
    headers = {"originator": "codex_exec", "session-id": session, "x-fake-mode": "echo"}
    create = {"type": "response.create", "model": "gpt-5-codex", "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a slow turn"}]}]}
    with connect(f"ws://127.0.0.1:{recorded.server.port}/v1/responses", additional_headers=headers) as ws:
        ws.send(json.dumps(create))
        assert json.loads(ws.recv(timeout=10))["type"] == "response.create"  # echoed: no answer, the turn stays open
        card = page.locator("#turn-list .group .card.pending")
        card.wait_for()
        assert "in flight" in card.inner_text() and "gpt-5-codex" in card.inner_text()
        assert card.locator(".title").inner_text() == "a slow turn"  # set as text, like every recorded string
        assert "open" in page.locator("#turn-list .group .group-head").inner_text()
        assert page.locator("#inflight").inner_text() == "1 in flight"  # the turn, not also its connection
        snap(page, shots / "turn-under-way.png")
    page.locator("#turn-list .group .card:not(.pending)").wait_for()
    assert page.locator("#turn-list .card.pending").count() == 0
    assert "a slow turn" in page.locator("#turn-list .group .card").inner_text()


def test_laptop_width_collapses_to_two_columns(browser: Any, recorded: Recorded, shots: Path) -> None:
    context = browser.new_context(viewport={"width": 1100, "height": 760})
    try:
        tab = context.new_page()
        tab.set_default_timeout(TIMEOUT_MS)
        line = claude_lines(recorded)[0]
        open_page(tab, recorded.url + f"#/s/{traffic.CLAUDE_SESSION}/t/{line['id']}")
        tab.locator(".detail-head").wait_for()
        assert not tab.locator("#col-sessions").is_visible()
        assert tab.locator("#col-turns").is_visible() and tab.locator("#col-detail").is_visible()
        snap(tab, shots / "laptop.png")
    finally:
        context.close()


def test_usage_view_matches_the_usage_command(page: Any, recorded: Recorded, shots: Path) -> None:
    from ccxray.logcli import summarise
    expected = summarise(iter(recorded.lines()), None, None, None).to_json()["total"]
    open_page(page, recorded.url + "#/usage")
    page.locator(".tiles").wait_for()
    assert str(expected["calls"]) in page.locator(".tile", has_text="calls").inner_text()
    assert page.locator("svg.hbars").count() == 3 and page.locator("svg.vbars rect").count() >= 1
    assert "Claude 5h 42%" in page.locator("#quota").inner_text()
    snap(page, shots / "usage.png")


def test_token_protected_page_keeps_working(browser: Any, fake: FakeUpstream, make_proxy: Any) -> None:
    proxy = make_proxy(AUTH_TOKEN="pagetok")
    context = browser.new_context()
    try:
        tab = context.new_page()
        tab.set_default_timeout(TIMEOUT_MS)
        open_page(tab, proxy.url + "/?token=pagetok")
        tab.locator("#live.live").wait_for()
        assert tab.locator("#session-list .empty").count() == 1
        traffic.post(proxy.port, "/v1/messages?token=pagetok", traffic.claude_body(
            [{"role": "user", "content": "hello with a token"}], traffic.claude_system("2.1.197"), "tok-session"),
            {"X-Claude-Code-Session-Id": "tok-session", "user-agent": traffic.CLAUDE_UA})
        tab.locator('#session-list .session[data-id="tok-session"]').wait_for()  # arrived through the live feed
    finally:
        context.close()


def test_page_reconnects_after_a_proxy_restart(browser: Any, fake: FakeUpstream, tmp_path: Path) -> None:
    env = proxy_env(fake, tmp_path / "home")
    first = ProxyServer(load_settings(env, port=0)).start()
    port = first.port
    second: ProxyServer | None = None
    context = browser.new_context()
    try:
        tab = context.new_page()
        tab.set_default_timeout(TIMEOUT_MS)
        open_page(tab, f"http://127.0.0.1:{port}/")
        tab.locator("#live.live").wait_for()
        first.stop(grace_s=2)
        tab.locator("#live.reconnecting, #live.offline").wait_for()
        second = ProxyServer(load_settings(env, port=port)).start()  # the same port, as a restart has
        tab.locator("#live.live").wait_for()
        traffic.claude_step(port, [{"role": "user", "content": "after the restart"}], traffic.claude_system("2.1.197"),
                            session="after-restart")
        tab.locator('#session-list .session[data-id="after-restart"]').wait_for()
    finally:
        context.close()
        if second is not None:
            second.stop(grace_s=2)
        else:
            first.stop(grace_s=2)


def test_filter_finds_text_inside_requests_and_responses(page: Any, recorded: Recorded) -> None:
    open_page(page, recorded.url + f"#/s/{traffic.CLAUDE_SESSION}")
    wait_until(lambda: page.locator("#turn-list .card").count() == 4, 10, "the session's calls")
    page.locator("#search").fill("ship it")  # only in a tool result and the reply after it, in no title
    wait_until(lambda: page.locator("#turn-list .card").count() == 2, 10, "the two calls whose bodies say it")
    numbers = page.locator("#turn-list .card .num").all_inner_texts()
    assert numbers == ["#3", "#2"]


def test_header_warns_while_recording_fails(browser: Any, fake: FakeUpstream, make_proxy: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "home-is-a-file"
    blocker.write_text("not a directory")
    healthy, broken = make_proxy(), make_proxy(CCXRAY_HOME=str(blocker))
    context = browser.new_context()
    try:
        tab = context.new_page()
        tab.set_default_timeout(TIMEOUT_MS)
        for proxy in (healthy, broken):
            traffic.claude_step(proxy.port, [{"role": "user", "content": "hello"}], traffic.claude_system("2.1.197"),
                                session="s")
            assert proxy.server.recorder.flush(10)
        with tab.expect_response(lambda r: r.url.endswith("/_api/health")):
            open_page(tab, healthy.url + "/")
        assert tab.locator("#health").is_hidden()  # nothing lost: no warning
        open_page(tab, broken.url + "/")
        tab.locator("#health").wait_for()
        text = tab.locator("#health").inner_text()
        assert text.startswith("recording: ") and "failed write" in text, text
        assert "NotADirectoryError" in (tab.locator("#health").get_attribute("title") or "")
    finally:
        context.close()
