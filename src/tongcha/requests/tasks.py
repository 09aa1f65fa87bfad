"""Durable follow-up of requests: the result SMS, sent by the workers after completion."""

from __future__ import annotations

from collections import defaultdict
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from tongcha.kit import jobs
from tongcha.kit.clock import Clock
from tongcha.kit.phone import e164
from tongcha.kit.settings import get_settings
from tongcha.notify import templates
from tongcha.notify.sms import SmsGateway, gateway_from_settings
from tongcha.platforms import repository as platforms_repo
from tongcha.platforms.fanout import NOTIFY_JOB
from tongcha.platforms.models import TaskState
from tongcha.requests import repository as repo
from tongcha.requests.models import Request, RequestKind

_gateway: SmsGateway | None = None
_zone: ZoneInfo | None = None


def configure(gateway: SmsGateway, zone: ZoneInfo) -> None:
    """Choose where result messages go (the app and the worker call this at start)."""
    global _gateway, _zone
    _gateway, _zone = gateway, zone


def _sms() -> tuple[SmsGateway, ZoneInfo]:
    global _gateway, _zone
    if _gateway is None or _zone is None:
        settings = get_settings()
        _gateway, _zone = gateway_from_settings(settings), ZoneInfo(settings.timezone)
    return _gateway, _zone


def _app_names(session: Session) -> dict[tuple[int, str], str]:
    """(platform id, app code as counts name it) → the name people know it by."""
    names: dict[tuple[int, str], str] = {}
    apps: dict[int, list[str]] = defaultdict(list)
    for app in platforms_repo.all_apps(session):
        names[(app.platform_id, app.code)] = app.name_zh
        apps[app.platform_id].append(app.name_zh)
    for platform in platforms_repo.platforms(session):
        # A unified enterprise counts once, under its own code, for all its apps.
        label = platform.name_zh or platform.name
        listed = apps.get(platform.id, [])
        # Its apps are named when there are several; one app is the enterprise itself.
        names[(platform.id, platform.code)] = f"{label}（{'、'.join(listed)}）" if len(listed) > 1 else label
    return names


def inquiry_messages(session: Session, request: Request, zone: ZoneInfo) -> list[str]:
    """One 一证通查 2.0 message per number, from what the platforms answered, saying how
    many platforms could not answer about it (a task that failed or gave up, as one of a
    suspended platform does): a number no platform answered about still gets its message."""
    names = _app_names(session)
    per_number: dict[str, list[tuple[str, int]]] = {}
    unanswered: dict[str, set[int]] = defaultdict(set)
    for task in repo.tasks_of(session, request.id):
        number = task.body["number"]
        counts = per_number.setdefault(number, [])
        if task.state != TaskState.done.value or task.answer is None:
            unanswered[number].add(task.platform_id)
            continue
        for item in task.answer.get("counts", []):
            label = names.get((task.platform_id, item["app"]), item["app"])
            counts.append((label, int(item["count"])))
    as_of = (request.completed_at or request.created_at).astimezone(zone).date()
    return [
        templates.inquiry_result(
            as_of=as_of, tail4=number[-4:], counts=counts, unanswered=len(unanswered.get(number, ()))
        )
        for number, counts in sorted(per_number.items())
    ]


# One message of a result that takes several (an inquiry over several numbers).
RESULT_MESSAGE_JOB = "requests.result_message"


@jobs.register(NOTIFY_JOB)
def send_result(session: Session, payload: dict[str, Any], clock: Clock) -> None:
    """Send a completed request's result to the phone the citizen verified with.

    A result of one message is sent here. A result of several gets one job per message,
    queued in this job's transaction and sending nothing here: a job is retried whole, so
    a gateway failure on one message must retry that message alone, never resend one the
    citizen already has.
    """
    request = repo.request_by_id(session, int(payload["request_id"]))
    if request is None or request.notify_number is None:
        return
    gateway, zone = _sms()
    if request.kind == RequestKind.inquiry.value:
        texts = inquiry_messages(session, request, zone)
    else:
        texts = [templates.request_done(kind=request.kind, request_id=request.public_id, url=None)]
    if len(texts) == 1:
        gateway.send(e164(request.notify_number), texts[0])
        return
    # The text itself, not how to compose it: a retry sends what the first try would
    # have, even if an app is renamed in between.
    for text in texts:
        jobs.enqueue(
            session, RESULT_MESSAGE_JOB, {"request_id": request.id, "text": text}, clock.now(), group_id=request.id
        )


@jobs.register(RESULT_MESSAGE_JOB)
def send_result_message(session: Session, payload: dict[str, Any], clock: Clock) -> None:
    """Send one message of a result that takes several (queued by ``send_result``)."""
    request = repo.request_by_id(session, int(payload["request_id"]))
    if request is None or request.notify_number is None:
        return
    gateway, _ = _sms()
    gateway.send(e164(request.notify_number), str(payload["text"]))
