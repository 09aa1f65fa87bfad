"""SMS gateways: one ``SmsGateway`` interface, chosen by ``TONGCHA_SMS_BACKEND``.

``console`` (the default) sends nothing: it keeps each number's messages in memory for
the demo's on-screen phone inbox. ``file`` appends one JSON line per message. ``http``
posts to a provider. Texts carry verification codes, so no gateway logs a text at INFO
or above, and numbers are logged masked (``+86138****8000``).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr

from tongcha.kit.clock import Clock, SystemClock
from tongcha.kit.settings import InsecureSettingsError, Settings

log = logging.getLogger("tongcha.notify.sms")

# E.164: a plus, a country code that does not start with 0, at most 15 digits in all.
_E164 = re.compile(r"\+[1-9]\d{6,14}")


class SmsError(Exception):
    """A message was not sent. ``retryable`` says whether sending it again may work."""

    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class SmsConfigError(InsecureSettingsError):
    """The SMS settings cannot work in this environment (refused at start-up)."""


@runtime_checkable
class SmsGateway(Protocol):
    """Sends one text message."""

    def send(self, to: str, text: str) -> str:
        """Send ``text`` to ``to`` (E.164, like ``+8613800138000``); return the message id.

        Raises ``SmsError`` with the reason, and whether a retry may help, when the
        message cannot be sent.
        """
        ...


@dataclass(frozen=True, slots=True)
class SmsRecord:
    """One message as a gateway delivered it."""

    to: str
    text: str
    sent_at: datetime
    message_id: str


def mask_number(number: str) -> str:
    """``+8613800138000`` → ``+86138****8000``: the four digits before the last four hidden."""
    if not _E164.fullmatch(number):
        return "(not an E.164 number)"  # never echo what might be something else entirely
    return number[:-8] + "****" + number[-4:]


def _check(to: str, text: str) -> None:
    if not _E164.fullmatch(to):
        raise SmsError("the number is not in E.164 form (like +8613800138000)", retryable=False)
    if not text:
        raise SmsError("the text is empty", retryable=False)


class ConsoleInbox:
    """The last messages to each number, newest last; thread-safe and bounded."""

    def __init__(self, per_number: int = 200, max_numbers: int = 10_000) -> None:
        self._per_number = per_number
        self._max_numbers = max_numbers
        self._boxes: OrderedDict[str, deque[SmsRecord]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, record: SmsRecord) -> None:
        with self._lock:
            box = self._boxes.get(record.to)
            if box is None:
                box = self._boxes[record.to] = deque(maxlen=self._per_number)
                # A long demo or simulation must not grow without bound: forget the
                # number that has waited longest for a message.
                while len(self._boxes) > self._max_numbers:
                    self._boxes.popitem(last=False)
            else:
                self._boxes.move_to_end(record.to)
            box.append(record)

    def messages(self, number: str) -> list[SmsRecord]:
        """The messages to ``number`` (E.164), oldest first."""
        with self._lock:
            return list(self._boxes.get(number, ()))

    def clear(self) -> None:
        with self._lock:
            self._boxes.clear()


# One per process, so that the web pages see what any console gateway in the process
# (the API's, a worker's) has sent; the inbox is in memory, so not across processes.
_process_inbox = ConsoleInbox()


def inbox(number: str) -> list[SmsRecord]:
    """The messages console gateways of this process sent to ``number``, oldest first."""
    return _process_inbox.messages(number)


class ConsoleGateway:
    """Sends nothing: keeps messages for the on-screen inbox and logs that they went."""

    def __init__(self, clock: Clock | None = None, *, store: ConsoleInbox | None = None) -> None:
        self._clock: Clock = clock or SystemClock()
        self._store = store if store is not None else _process_inbox

    def send(self, to: str, text: str) -> str:
        """Keep the message in the inbox; return its id."""
        _check(to, text)
        message_id = f"console-{uuid.uuid4().hex}"
        self._store.add(SmsRecord(to, text, self._clock.now(), message_id))
        log.info("SMS %s to %s (%d characters) kept in the console inbox", message_id, mask_number(to), len(text))
        # The text only at DEBUG, and only here: the console gateway is refused in production.
        log.debug("SMS %s text: %s", message_id, text)
        return message_id

    def inbox(self, number: str) -> list[SmsRecord]:
        """The messages this gateway's inbox holds for ``number``, oldest first."""
        return self._store.messages(number)


class FileGateway:
    """Appends one JSON line per message: ``{"to", "text", "sent_at", "id"}``."""

    def __init__(self, path: Path, clock: Clock | None = None) -> None:
        self.path = path
        self._clock: Clock = clock or SystemClock()
        self._lock = threading.Lock()

    def send(self, to: str, text: str) -> str:
        """Append the message to the file; return its id."""
        _check(to, text)
        message_id = f"file-{uuid.uuid4().hex}"
        line = {"to": to, "text": text, "sent_at": self._clock.now().isoformat(), "id": message_id}
        data = (json.dumps(line, ensure_ascii=False) + "\n").encode()
        try:
            # One write in append mode: lines from several threads or processes never
            # interleave.
            with self._lock, self.path.open("ab") as out:
                out.write(data)
        except OSError as exc:
            # Retryable: a full disk or a missing directory is fixed by the operator,
            # after which the same message can go.
            raise SmsError(f"cannot append to {self.path} ({exc.__class__.__name__})", retryable=True) from None
        log.info("SMS %s to %s appended to %s", message_id, mask_number(to), self.path)
        return message_id


class HttpGateway:
    """A provider's HTTP API: ``POST url`` with ``{"to", "text", "sender"}`` and a bearer key.

    A 2xx answer with a JSON ``{"id": ...}`` means sent. Otherwise ``SmsError``:
    retryable for timeouts, connection failures, 408, 425, 429 and 5xx; not retryable
    for other 4xx (a bad key, a bad number) and for a 2xx without an id, since the
    provider may have sent that message and a retry could send it twice.
    """

    def __init__(
        self,
        url: str,
        api_key: str | SecretStr,
        sender_id: str,
        timeout: float = 5.0,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("the SMS provider URL must be http(s)")
        key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
        self.url = url
        self.sender_id = sender_id
        self.timeout = timeout
        # One client for the gateway's life: it pools connections and is thread-safe.
        self._client = httpx.Client(timeout=timeout, headers={"Authorization": f"Bearer {key}"}, transport=transport)

    def send(self, to: str, text: str) -> str:
        """Post the message to the provider; return the provider's message id."""
        _check(to, text)
        try:
            response = self._client.post(self.url, json={"to": to, "text": text, "sender": self.sender_id})
        except httpx.TimeoutException:
            raise SmsError(f"the provider did not answer within {self.timeout:g}s", retryable=True) from None
        except httpx.HTTPError as exc:
            # Only the class name: the message of a transport error can carry the URL.
            raise SmsError(f"cannot reach the provider ({exc.__class__.__name__})", retryable=True) from None
        status = response.status_code
        if not 200 <= status < 300:
            retryable = status in (408, 425, 429) or status >= 500
            log.warning("SMS to %s refused by the provider: HTTP %d", mask_number(to), status)
            raise SmsError(
                f"the provider answered HTTP {status} {response.reason_phrase}".rstrip(), retryable=retryable
            )
        message_id = _message_id(response)
        if message_id is None:
            raise SmsError(f"the provider answered HTTP {status} without a message id", retryable=False)
        log.info("SMS %s to %s accepted by the provider", message_id, mask_number(to))
        return message_id

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpGateway:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def _message_id(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    found = body.get("id") if isinstance(body, dict) else None
    if isinstance(found, bool) or not isinstance(found, str | int):
        return None
    return str(found) or None


def gateway_from_settings(settings: Settings, *, clock: Clock | None = None) -> SmsGateway:
    """The gateway ``TONGCHA_SMS_BACKEND`` names, or ``SmsConfigError`` saying what is missing.

    ``console`` is refused in production: it sends nothing, so no citizen would ever get
    a code. In production the provider URL must be https, since it carries the API key.
    """
    backend = settings.sms_backend
    if backend == "console":
        if settings.env == "production":
            raise SmsConfigError(
                "TONGCHA_SMS_BACKEND=console sends no SMS (messages stay in memory); "
                "set TONGCHA_SMS_BACKEND=http (or file) to run with TONGCHA_ENV=production"
            )
        return ConsoleGateway(clock)
    if backend == "file":
        if settings.sms_file is None:
            raise SmsConfigError("TONGCHA_SMS_BACKEND=file needs TONGCHA_SMS_FILE, the file to append messages to")
        if not settings.sms_file.parent.is_dir():
            raise SmsConfigError(f"TONGCHA_SMS_FILE: the directory {settings.sms_file.parent} does not exist")
        return FileGateway(settings.sms_file, clock)
    if not settings.sms_url:
        raise SmsConfigError("TONGCHA_SMS_BACKEND=http needs TONGCHA_SMS_URL, the provider's endpoint")
    if urlsplit(settings.sms_url).scheme not in ("http", "https"):
        raise SmsConfigError("TONGCHA_SMS_URL must be an http(s) URL")
    if settings.env == "production" and urlsplit(settings.sms_url).scheme != "https":
        raise SmsConfigError("TONGCHA_SMS_URL must be https in production: requests carry the API key")
    if settings.sms_api_key is None or not settings.sms_api_key.get_secret_value():
        raise SmsConfigError("TONGCHA_SMS_BACKEND=http needs TONGCHA_SMS_API_KEY")
    return HttpGateway(settings.sms_url, settings.sms_api_key, settings.sms_sender, settings.sms_timeout_seconds)
