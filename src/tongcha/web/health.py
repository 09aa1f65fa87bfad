"""Whether this hub can answer, for a load balancer or a supervisor: no credential, and
nothing in the answer but that its database answers. When it does not, the answer is
the hub's ``503 UNAVAILABLE`` (``web.errors``), as for every other request."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import text

from tongcha.kit.errors import responses
from tongcha.web.deps import HubDep

router = APIRouter()


class HealthOut(BaseModel):
    status: Literal["ok"]


@router.get(
    "/healthz",
    tags=["operations"],
    summary="Health: 200 while the hub and its database answer, 503 UNAVAILABLE otherwise",
    responses=responses(),
)
def healthz(hub: HubDep) -> HealthOut:
    with hub.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    return HealthOut(status="ok")
