"""The single reassignment check without FastAPI's routing and dependency machinery.

`GET /platform/v1/reassignments/{number}?since=D` is the one request platforms make
millions of times a day, and on two cores FastAPI's per-request work was most of its
cost. This ASGI layer answers the well-formed, authorised case itself, with exactly the
route's body and the same check-log record; anything else (no or a bad credential, a
bad number or date, extra query parameters) falls through to the FastAPI route, which
gives the proper error. The route stays the documented contract.

It sits in front of all of the app's middleware (``web.app.HubApp``), so it sets
``x-correlator`` on its answers itself.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import unquote

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from tongcha.kit.correlator import correlator_of
from tongcha.kit.credentials import PartyKind
from tongcha.kit.db import UNAVAILABLE
from tongcha.kit.errors import ApiError

if TYPE_CHECKING:
    from tongcha.web.state import HubState

PREFIX = "/platform/v1/reassignments/"
_JSON = (b"content-type", b"application/json")
log = logging.getLogger("tongcha.ledger.fastpath")


class FastCheck:
    def __init__(self, app: ASGIApp, state: HubState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and scope["path"].startswith(PREFIX)
            and await self._answer(scope, send)
        ):
            return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, send: Send) -> bool:
        from tongcha.ledger.api import _check_one

        number = scope["path"][len(PREFIX) :]  # the server has percent-decoded the path
        query = scope["query_string"]
        if "/" in number or not query.startswith(b"since=") or b"&" in query:
            return False
        since = unquote(query[6:].decode("latin-1"))
        secret = None
        for key, value in scope["headers"]:
            if key == b"authorization":
                scheme, _, rest = value.decode("latin-1").partition(" ")
                secret = rest.strip() if scheme.lower() == "bearer" else None
                break
        if not secret:
            return False
        state = self.state
        try:
            caller = state.credentials.resolve(state, secret)
        except UNAVAILABLE:
            return False  # the database is away; the route answers 503
        if caller is None or caller.kind is not PartyKind.platform:
            return False
        value = correlator_of(scope)
        try:
            ans = await _check_one(state, await state.fresh_index(), caller.party_id, number, since, "single", value)
        except (ApiError, *UNAVAILABLE):
            return False  # nothing was recorded; the route answers with the error
        except Exception:  # nothing was answered; the route tries again and reports
            log.exception("fast check failed; handing the request to the route")
            return False
        body = orjson.dumps(ans.as_dict())
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [_JSON, (b"content-length", str(len(body)).encode()), (b"x-correlator", value.encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
        # No access line: at thousands of checks a second it cost the p99 a tenth or more
        # (docs/benchmarks.md §3); the check log holds this check with its correlator.
        return True
