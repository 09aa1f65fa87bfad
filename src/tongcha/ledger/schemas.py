"""Shapes of the ledger's HTTP contracts (API.md), for validation and the OpenAPI."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class HolderIn(BaseModel):
    id_number: str = Field(description="Resident ID number; digested on receipt, never stored")
    name: str = Field(description="Holder's name; digested on receipt, never stored")


class CarrierEventIn(BaseModel):
    """One lifecycle event, as documented; the endpoint also takes NDJSON of the same."""

    model_config = ConfigDict(extra="allow")

    event_id: str
    type: Literal["activated", "cancelled", "ported", "transferred", "suspended", "resumed"]
    number: str = Field(examples=["+8613800138000"])
    occurred_at: str = Field(examples=["2024-05-01T09:30:00+08:00"])
    holder: HolderIn | None = None
    to_carrier: str | None = None


def events_body_schema() -> dict[str, Any]:
    """The JSON Schema of a batch of events, for the OpenAPI document: with the nested
    models written in place, since the document has no ``$defs`` for a ``$ref`` to find."""
    item = CarrierEventIn.model_json_schema()
    defs: dict[str, Any] = item.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                rest = {k: v for k, v in node.items() if k != "$ref"}
                return inline({**defs[ref.removeprefix("#/$defs/")], **rest})
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return {"type": "array", "items": inline(item)}


class RejectedEvent(BaseModel):
    event_id: str | None
    code: str
    rule: str = Field(description="which ledger rule refused it, e.g. tenure_open, in_quarantine")
    reason: str


class IngestOut(BaseModel):
    accepted: int
    duplicates: int
    rejected: list[RejectedEvent]
    revision: int = Field(
        description="the ledger revision that holds this batch; for a batch with no events, which writes "
        "nothing, the revision the ledger is at"
    )


class ReassignmentOut(BaseModel):
    number: str
    since: date
    result: Literal["yes", "no", "no_data"]
    last_change_on: date | None


class CamaraCheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phoneNumber: str = Field(examples=["+8613800138000"])  # noqa: N815 - CAMARA's field name
    specifiedDate: str = Field(examples=["2024-01-31"])  # noqa: N815


class CamaraCheckOut(BaseModel):
    phoneNumberRecycled: bool  # noqa: N815
