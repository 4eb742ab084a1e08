"""The official anthropic and openai SDKs as independent clients, through the
proxy and directly: same answers, and the log holds what happened."""

from __future__ import annotations

from typing import Any, Iterator

import anthropic
import openai
import pytest

from tools.fake_upstream import FakeUpstream


@pytest.fixture
def twin() -> Iterator[FakeUpstream]:
    """A second fake for direct calls, so ids (numbered per fake) match."""
    with FakeUpstream() as server:
        yield server


def claude(base_url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=base_url, api_key="sk-ant-api03-test-key", max_retries=0, timeout=20)


def oai(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="sk-proj-test-key", max_retries=0, timeout=20)


MESSAGES = [{"role": "user", "content": "say hi"}]

# The fake stamps answers with its clock (``created_at`` on Responses objects,
# ``created`` on Chat Completions), so two answers to the same request differ
# there whenever they straddle a second. Everything else the proxy must pass
# through unchanged; these two fields are compared for presence and type only.
VOLATILE = frozenset({"created_at", "created"})


def stable(value: Any) -> Any:
    """``value`` with every VOLATILE key's value replaced by its type name."""
    if isinstance(value, dict):
        return {k: type(v).__name__ if k in VOLATILE else stable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [stable(v) for v in value]
    return value


def test_stable_masks_only_the_volatile_fields() -> None:
    a = {"id": "r1", "created_at": 1, "output": [{"created": 5, "text": "hi"}]}
    b = {"id": "r1", "created_at": 2, "output": [{"created": 6, "text": "hi"}]}
    assert stable(a) == stable(b)
    assert stable(a) != stable({**b, "id": "r2"})
    assert stable(a) != stable({**b, "created_at": None})
    assert stable({"output": [{"created": 5, "text": "ho"}]}) != stable(a)


def test_anthropic_messages_non_streaming(fake, twin, proxy):
    with claude(proxy.url) as via, claude(twin.base_url) as direct:
        a = via.messages.create(model="claude-haiku-4-5", max_tokens=20, messages=MESSAGES)
        b = direct.messages.create(model="claude-haiku-4-5", max_tokens=20, messages=MESSAGES)
    assert a.model_dump() == b.model_dump()
    (line,) = proxy.lines(1)
    assert line["provider"] == "anthropic" and line["model"] == "claude-haiku-4-5"
    assert line["usage"]["output_tokens"] == a.usage.output_tokens
    assert line["cost"] is not None and line["cost"]["currency"] == "USD"
    headers = {n.lower(): v for n, v in fake.seen[-1]["headers"]}
    # the key reaches upstream as sent (newer SDKs send it as a bearer token)
    assert "sk-ant-api03-test-key" in (headers.get("x-api-key") or headers.get("authorization", ""))


def test_anthropic_messages_streaming(fake, twin, proxy):
    def run(base: str) -> tuple[str, object]:
        with claude(base) as client, client.messages.stream(model="claude-haiku-4-5", max_tokens=20,
                                                            messages=MESSAGES) as stream:
            text = "".join(stream.text_stream)
            return text, stream.get_final_message().model_dump()
    assert run(proxy.url) == run(twin.base_url)
    (line,) = proxy.lines(1)
    assert line["isSSE"] is True and line["stopReason"] == "end_turn"


def test_openai_responses_non_streaming_and_streaming(fake, twin, proxy):
    with oai(proxy.url + "/v1") as via, oai(twin.base_url + "/v1") as direct:
        a = via.responses.create(model="gpt-5", input="say hi")
        b = direct.responses.create(model="gpt-5", input="say hi")
        assert stable(a.model_dump()) == stable(b.model_dump())
        via_events = [e.type for e in via.responses.create(model="gpt-5", input="say hi", stream=True)]
        direct_events = [e.type for e in direct.responses.create(model="gpt-5", input="say hi", stream=True)]
    assert via_events == direct_events and via_events[-1] == "response.completed"
    lines = proxy.lines(2)
    assert [l["provider"] for l in lines] == ["openai", "openai"]
    assert lines[1]["isSSE"] is True and lines[1]["usage"]["output_tokens"] == 2
    assert fake.seen[-1]["target"] == "/v1/responses"


def test_openai_chat_completions(fake, twin, proxy):
    with oai(proxy.url + "/v1") as via, oai(twin.base_url + "/v1") as direct:
        a = via.chat.completions.create(model="gpt-4.1", messages=MESSAGES)
        b = direct.chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    assert stable(a.model_dump()) == stable(b.model_dump())
    assert proxy.lines(1)[0]["model"] == "gpt-4.1"


def test_sdk_sees_upstream_error_status(fake, proxy):
    with claude(proxy.url) as client:
        with pytest.raises(anthropic.RateLimitError):
            client.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=MESSAGES,
                                   extra_headers={"x-fake-mode": "status:429"})
    assert proxy.lines(1)[0]["status"] == 429


def test_sdk_sees_proxy_502_for_dead_upstream(make_proxy):
    proxy = make_proxy(ANTHROPIC_BASE_URL="http://127.0.0.1:9")
    with claude(proxy.url) as client:
        with pytest.raises(anthropic.InternalServerError) as info:
            client.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=MESSAGES)
    assert info.value.status_code == 502
