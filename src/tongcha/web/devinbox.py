"""The demo's on-screen phone: what the console SMS gateway "sent" to a number.

The app includes this router only on a dev hub whose gateway is the console one
(``inbox_enabled``): anywhere else the path does not exist. It reads out verification
codes, which is the point of a demo and would be a hole in anything else.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel

from tongcha.kit.phone import e164, parse_mobile
from tongcha.notify.sms import ConsoleGateway
from tongcha.web.deps import HubDep
from tongcha.web.state import HubState

router = APIRouter(include_in_schema=False)


def inbox_enabled(hub: HubState) -> bool:
    """Whether this hub shows the on-screen phone: development, console SMS."""
    return hub.settings.env == "dev" and isinstance(hub.sms, ConsoleGateway)


class InboxMessage(BaseModel):
    to: str
    text: str
    sent_at: datetime
    message_id: str


def dev_inbox(number: str, hub: HubDep) -> list[InboxMessage]:
    """The messages sent to ``number`` (E.164, or 11 digits), newest first."""
    gateway = hub.sms
    assert isinstance(gateway, ConsoleGateway)  # the router is included only then
    records = gateway.inbox(e164(parse_mobile(number)))
    return [InboxMessage(to=r.to, text=r.text, sent_at=r.sent_at, message_id=r.message_id) for r in reversed(records)]


router.add_api_route("/dev/inbox/{number}", dev_inbox, methods=["GET"])
