"""SMS gateways: each conforms and delivers; settings choose one; numbers are masked in logs."""

from __future__ import annotations

import inspect
import json
import logging
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from tests.notify.provider import Provider, provider_app
from tongcha.kit.clock import FixedClock
from tongcha.kit.settings import Settings
from tongcha.notify import sms
from tongcha.notify.sms import (
    ConsoleGateway,
    ConsoleInbox,
    FileGateway,
    HttpGateway,
    SmsConfigError,
    SmsError,
    SmsGateway,
    gateway_from_settings,
    mask_number,
)

AT = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)
NUMBER = "+8613800138000"
MASKED = "+86138****8000"
TEXT = "【通查】您的验证码是482913，5分钟内有效。请勿告诉他人。"
REAL_SECRET = "s" * 40


def fresh_number() -> str:
    """A number no other test sends to, for the process-wide inbox."""
    return f"+86139{uuid.uuid4().int % 10**8:08d}"


# ----- a provider on loopback ----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    port = free_port()
    found = Provider(url=f"http://127.0.0.1:{port}")
    server = uvicorn.Server(
        uvicorn.Config(
            provider_app(found.received),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=2,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "provider did not start"
        time.sleep(0.05)
    yield found
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def http_gateway(provider: Provider) -> Iterator[HttpGateway]:
    provider.received.clear()
    with HttpGateway(provider.endpoint("ok"), "key-123", "TONGCHA", timeout=2.0) as gateway:
        yield gateway


# ----- every implementation conforms and delivers -------------------------------------

GatewayFactory = Callable[[Path, Provider], SmsGateway]
Delivered = Callable[[SmsGateway, Path, Provider, str], list[tuple[str, str]]]


def _console(tmp_path: Path, provider: Provider) -> SmsGateway:
    return ConsoleGateway(FixedClock(AT), store=ConsoleInbox())


def _file(tmp_path: Path, provider: Provider) -> SmsGateway:
    return FileGateway(tmp_path / "sms.jsonl", FixedClock(AT))


def _http(tmp_path: Path, provider: Provider) -> SmsGateway:
    provider.received.clear()
    return HttpGateway(provider.endpoint("ok"), "key-123", "TONGCHA", timeout=2.0)


def _console_delivered(gateway: SmsGateway, tmp_path: Path, provider: Provider, to: str) -> list[tuple[str, str]]:
    assert isinstance(gateway, ConsoleGateway)
    return [(r.to, r.text) for r in gateway.inbox(to)]


def _file_delivered(gateway: SmsGateway, tmp_path: Path, provider: Provider, to: str) -> list[tuple[str, str]]:
    lines = (tmp_path / "sms.jsonl").read_text(encoding="utf-8").splitlines()
    return [(m["to"], m["text"]) for m in map(json.loads, lines)]


def _http_delivered(gateway: SmsGateway, tmp_path: Path, provider: Provider, to: str) -> list[tuple[str, str]]:
    return [(b["to"], b["text"]) for b in (json.loads(r["body"]) for r in provider.received)]


IMPLEMENTATIONS = pytest.mark.parametrize(
    ("make", "delivered"),
    [(_console, _console_delivered), (_file, _file_delivered), (_http, _http_delivered)],
    ids=["console", "file", "http"],
)


@IMPLEMENTATIONS
def test_every_gateway_conforms_to_the_protocol(
    make: GatewayFactory, delivered: Delivered, tmp_path: Path, provider: Provider
) -> None:
    gateway = make(tmp_path, provider)
    assert isinstance(gateway, SmsGateway)
    expected = inspect.signature(SmsGateway.send)
    actual = inspect.signature(type(gateway).send)
    assert list(actual.parameters) == list(expected.parameters)
    assert actual.return_annotation == expected.return_annotation


@IMPLEMENTATIONS
def test_every_gateway_delivers_and_returns_distinct_ids(
    make: GatewayFactory, delivered: Delivered, tmp_path: Path, provider: Provider
) -> None:
    gateway = make(tmp_path, provider)
    first = gateway.send(NUMBER, TEXT)
    second = gateway.send(NUMBER, "second")
    assert isinstance(first, str) and first and first != second
    assert delivered(gateway, tmp_path, provider, NUMBER) == [(NUMBER, TEXT), (NUMBER, "second")]


@IMPLEMENTATIONS
@pytest.mark.parametrize("to", ["13800138000", "8613800138000", "+86 138 0013 8000", "+0123456789", ""])
def test_every_gateway_refuses_a_number_not_in_e164(
    make: GatewayFactory, delivered: Delivered, tmp_path: Path, provider: Provider, to: str
) -> None:
    gateway = make(tmp_path, provider)
    with pytest.raises(SmsError, match=r"E\.164") as caught:
        gateway.send(to, TEXT)
    assert not caught.value.retryable
    if make is _http:
        assert provider.received == []


def test_mask_hides_the_four_digits_before_the_last_four() -> None:
    assert mask_number(NUMBER) == MASKED
    assert mask_number("+447911123456") == "+4479****3456"
    assert mask_number("13800138000") == "(not an E.164 number)"


# ----- console -------------------------------------------------------------------------


def test_console_inbox_keeps_number_text_time_and_id_newest_last() -> None:
    clock = FixedClock(AT)
    gateway = ConsoleGateway(clock, store=ConsoleInbox())
    first = gateway.send(NUMBER, TEXT)
    clock.set(datetime(2026, 11, 23, 4, 1, tzinfo=UTC))
    second = gateway.send(NUMBER, "later")
    gateway.send("+8613900139000", "someone else")
    records = gateway.inbox(NUMBER)
    assert [(r.to, r.text, r.sent_at, r.message_id) for r in records] == [
        (NUMBER, TEXT, AT, first),
        (NUMBER, "later", datetime(2026, 11, 23, 4, 1, tzinfo=UTC), second),
    ]
    assert gateway.inbox("+8613700137000") == []


def test_console_inbox_keeps_only_the_last_messages_of_each_number() -> None:
    gateway = ConsoleGateway(FixedClock(AT), store=ConsoleInbox(per_number=3))
    for n in range(5):
        gateway.send(NUMBER, f"message {n}")
    assert [r.text for r in gateway.inbox(NUMBER)] == ["message 2", "message 3", "message 4"]


def test_console_inbox_forgets_the_longest_quiet_number_beyond_its_bound() -> None:
    gateway = ConsoleGateway(FixedClock(AT), store=ConsoleInbox(max_numbers=2))
    gateway.send("+8613800000001", "a")
    gateway.send("+8613800000002", "b")
    gateway.send("+8613800000001", "a again")  # number 1 is now the most recent
    gateway.send("+8613800000003", "c")
    assert gateway.inbox("+8613800000002") == []
    assert [r.text for r in gateway.inbox("+8613800000001")] == ["a", "a again"]
    assert [r.text for r in gateway.inbox("+8613800000003")] == ["c"]


def test_console_inbox_loses_nothing_when_threads_send_at_once() -> None:
    # Eight threads meet at a barrier, then all send to the same new number: each round
    # they race to open its box (without the lock, one opening replaces another's box).
    # The shortest switch interval makes the interleaving likely.
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    gateway = ConsoleGateway(FixedClock(AT), store=ConsoleInbox())
    numbers = [fresh_number() for _ in range(1000)]
    together = threading.Barrier(8)
    ids: list[str] = []

    def send_all(worker: int) -> None:
        for number in numbers:
            together.wait()
            ids.append(gateway.send(number, f"from {worker}"))

    threads = [threading.Thread(target=send_all, args=(w,)) for w in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(previous)
    assert len(set(ids)) == 8 * len(numbers)
    assert [len(gateway.inbox(number)) for number in numbers] == [8] * len(numbers)


def test_the_module_inbox_shows_what_any_console_gateway_in_the_process_sent() -> None:
    to = fresh_number()
    ConsoleGateway(FixedClock(AT)).send(to, "one")
    gateway_from_settings(Settings(env="dev"), clock=FixedClock(AT)).send(to, "two")
    assert [r.text for r in sms.inbox(to)] == ["one", "two"]


def test_console_logs_the_masked_number_and_keeps_the_text_below_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="tongcha.notify.sms")
    message_id = ConsoleGateway(FixedClock(AT), store=ConsoleInbox()).send(NUMBER, TEXT)
    info = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert len(info) == 1 and MASKED in info[0] and message_id in info[0]
    assert all(NUMBER not in line and "482913" not in line for line in info)
    assert all(NUMBER not in r.getMessage() for r in caplog.records)


# ----- file ----------------------------------------------------------------------------


def test_file_gateway_appends_one_json_line_per_message(tmp_path: Path) -> None:
    path = tmp_path / "sms.jsonl"
    gateway = FileGateway(path, FixedClock(AT))
    first = gateway.send(NUMBER, TEXT)
    second = gateway.send("+8613900139000", "two")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [
        {"to": NUMBER, "text": TEXT, "sent_at": "2026-11-23T04:00:00+00:00", "id": first},
        {"to": "+8613900139000", "text": "two", "sent_at": "2026-11-23T04:00:00+00:00", "id": second},
    ]
    assert "验证码" in lines[0]  # readable Chinese, not \\u escapes


def test_file_gateway_that_cannot_write_raises_a_retryable_error(tmp_path: Path) -> None:
    gateway = FileGateway(tmp_path / "missing" / "sms.jsonl", FixedClock(AT))
    with pytest.raises(SmsError, match="cannot append") as caught:
        gateway.send(NUMBER, TEXT)
    assert caught.value.retryable


def test_file_gateway_never_logs_the_text_or_the_number(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    FileGateway(tmp_path / "sms.jsonl", FixedClock(AT)).send(NUMBER, TEXT)
    lines = [r.getMessage() for r in caplog.records]
    assert any(MASKED in line for line in lines)
    assert all(NUMBER not in line and "482913" not in line for line in lines)


# ----- http ----------------------------------------------------------------------------


def test_http_gateway_posts_json_with_the_bearer_key_and_returns_the_provider_id(
    http_gateway: HttpGateway, provider: Provider
) -> None:
    message_id = http_gateway.send(NUMBER, TEXT)
    [request] = provider.received
    assert message_id == "prov-1"
    assert request["method"] == "POST" and request["path"] == "/ok"
    assert request["headers"]["authorization"] == "Bearer key-123"
    assert request["headers"]["content-type"] == "application/json"
    assert json.loads(request["body"]) == {"to": NUMBER, "text": TEXT, "sender": "TONGCHA"}


@pytest.mark.parametrize(
    ("behaviour", "reason", "retryable"),
    [
        ("broken", "HTTP 500", True),
        ("busy", "HTTP 429", True),
        ("rejected", "HTTP 400", False),
        ("no-id", "without a message id", False),
        ("not-json", "without a message id", False),
    ],
)
def test_http_gateway_turns_anything_but_a_2xx_with_an_id_into_an_sms_error(
    provider: Provider, behaviour: str, reason: str, retryable: bool
) -> None:
    with (
        HttpGateway(provider.endpoint(behaviour), "key-123", "TONGCHA", timeout=2.0) as gateway,
        pytest.raises(SmsError, match=reason) as caught,
    ):
        gateway.send(NUMBER, TEXT)
    assert caught.value.retryable is retryable


def test_http_gateway_gives_up_after_its_timeout_and_says_a_retry_may_work(provider: Provider) -> None:
    with HttpGateway(provider.endpoint("slow"), "key-123", "TONGCHA", timeout=0.2) as gateway:
        started = time.monotonic()
        with pytest.raises(SmsError, match=r"did not answer within 0.2s") as caught:
            gateway.send(NUMBER, TEXT)
    assert time.monotonic() - started < 0.9
    assert caught.value.retryable


def test_http_gateway_that_cannot_connect_says_a_retry_may_work() -> None:
    unused = f"http://127.0.0.1:{free_port()}/sms"
    with (
        HttpGateway(unused, "key-123", "TONGCHA", timeout=2.0) as gateway,
        pytest.raises(SmsError, match="cannot reach the provider") as caught,
    ):
        gateway.send(NUMBER, TEXT)
    assert caught.value.retryable


def test_http_gateway_logs_masked_numbers_only(provider: Provider, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with HttpGateway(provider.endpoint("ok"), "key-123", "TONGCHA") as ok:
        ok.send(NUMBER, TEXT)
    with HttpGateway(provider.endpoint("broken"), "key-123", "TONGCHA") as broken, pytest.raises(SmsError):
        broken.send(NUMBER, TEXT)
    lines = [r.getMessage() for r in caplog.records]
    assert sum(MASKED in line for line in lines) == 2
    assert all(NUMBER not in line and "482913" not in line and "key-123" not in line for line in lines)


# ----- settings choose -----------------------------------------------------------------


def test_console_is_the_default_backend() -> None:
    assert isinstance(gateway_from_settings(Settings(env="dev")), ConsoleGateway)


def test_settings_choose_the_file_backend(tmp_path: Path) -> None:
    gateway = gateway_from_settings(Settings(sms_backend="file", sms_file=tmp_path / "out.jsonl"))
    assert isinstance(gateway, FileGateway) and gateway.path == tmp_path / "out.jsonl"


def test_settings_from_the_environment_choose_the_http_backend(
    monkeypatch: pytest.MonkeyPatch, provider: Provider
) -> None:
    provider.received.clear()
    monkeypatch.setenv("TONGCHA_SMS_BACKEND", "http")
    monkeypatch.setenv("TONGCHA_SMS_URL", provider.endpoint("ok"))
    monkeypatch.setenv("TONGCHA_SMS_API_KEY", "env-key")
    monkeypatch.setenv("TONGCHA_SMS_SENDER", "TONGCHA-TEST")
    settings = Settings(_env_file=None)
    assert "env-key" not in repr(settings)
    gateway = gateway_from_settings(settings)
    assert isinstance(gateway, HttpGateway)
    gateway.send(NUMBER, TEXT)
    [request] = provider.received
    assert request["headers"]["authorization"] == "Bearer env-key"
    assert json.loads(request["body"])["sender"] == "TONGCHA-TEST"


def test_console_is_refused_in_production() -> None:
    with pytest.raises(SmsConfigError, match="TONGCHA_SMS_BACKEND=console sends no SMS"):
        gateway_from_settings(Settings(env="production", secret_key=REAL_SECRET))


def test_file_and_https_backends_are_accepted_in_production(tmp_path: Path) -> None:
    common: dict[str, Any] = {"env": "production", "secret_key": REAL_SECRET}
    file_settings = Settings(**common, sms_backend="file", sms_file=tmp_path / "out.jsonl")
    assert isinstance(gateway_from_settings(file_settings), FileGateway)
    https = Settings(**common, sms_backend="http", sms_url="https://sms.example/send", sms_api_key="k")
    assert isinstance(gateway_from_settings(https), HttpGateway)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"sms_backend": "file"}, "needs TONGCHA_SMS_FILE"),
        ({"sms_backend": "file", "sms_file": Path("/nonexistent-dir/sms.jsonl")}, "does not exist"),
        ({"sms_backend": "http", "sms_api_key": "k"}, "needs TONGCHA_SMS_URL"),
        ({"sms_backend": "http", "sms_url": "https://sms.example/send"}, "needs TONGCHA_SMS_API_KEY"),
        ({"sms_backend": "http", "sms_url": "ftp://sms.example/", "sms_api_key": "k"}, "http\\(s\\) URL"),
        (
            {"env": "production", "secret_key": REAL_SECRET, "sms_backend": "http"}
            | {"sms_url": "http://sms.example/send", "sms_api_key": "k"},
            "must be https in production",
        ),
    ],
)
def test_incomplete_sms_settings_are_refused_saying_what_is_missing(overrides: dict[str, Any], reason: str) -> None:
    with pytest.raises(SmsConfigError, match=reason):
        gateway_from_settings(Settings(**overrides))
