"""A carrier's client: send lifecycle events to the hub over HTTP."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson


@dataclass
class SendResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)


class CarrierClient:
    """Posts events as NDJSON to ``/carrier/v1/events`` with the carrier's bearer credential."""

    def __init__(self, base_url: str, secret: str, *, timeout: float = 60.0) -> None:
        self._http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {secret}"}, timeout=timeout)

    def send(self, events: Iterable[Mapping[str, Any]], *, correlator: str | None = None) -> SendResult:
        """Send a batch; raises ``httpx.HTTPStatusError`` when the hub refuses the whole batch."""
        body = b"".join(orjson.dumps(dict(e)) + b"\n" for e in events)
        headers = {"content-type": "application/x-ndjson"}
        if correlator:
            headers["x-correlator"] = correlator
        response = self._http.post("/carrier/v1/events", content=body, headers=headers)
        response.raise_for_status()
        data = response.json()
        return SendResult(data["accepted"], data["duplicates"], data["rejected"])

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CarrierClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
