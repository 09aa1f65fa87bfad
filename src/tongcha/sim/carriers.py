"""Simulated carriers: they generate lifecycles and send them to the hub over real HTTP.

Carriers send independently, so one carrier's event can reach the hub before the event
of another carrier that it depends on (a port, then a cancellation by the new carrier).
Like a real carrier, the simulator re-sends what was refused for ordering until nothing
more is accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tongcha.sdk.carrier import CarrierClient
from tongcha.sim.ledger import SynthConfig, generate

_RETRYABLE = {"not_serving_carrier", "no_open_tenure", "tenure_open", "contradicts_later", "in_quarantine"}


@dataclass
class FeedReport:
    accepted: int = 0
    rejected: int = 0
    rounds: int = 0


def feed(base_url: str, secrets: Mapping[str, str], cfg: SynthConfig, batch: int = 5_000) -> FeedReport:
    """Send a synthetic history month by month from every carrier, as carriers would have
    reported it over the years; re-send refused events while that helps.

    Within a month carriers send one after another, so an event that depends on another
    carrier's event of the same month may be refused once and accepted on re-sending.
    """
    months: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for event in sorted(generate(cfg), key=lambda e: str(e["occurred_at"])):
        sender = str(event.pop("carrier"))
        months.setdefault(str(event["occurred_at"])[:7], {}).setdefault(sender, []).append(event)
    report = FeedReport()
    clients = {code: CarrierClient(base_url, secret) for code, secret in secrets.items()}
    try:
        for month in sorted(months):
            pending = months[month]
            while pending:
                report.rounds += 1
                progress = 0
                retry: dict[str, list[dict[str, Any]]] = {}
                for code, events in pending.items():
                    by_id = {e["event_id"]: e for e in events}
                    for start in range(0, len(events), batch):
                        result = clients[code].send(events[start : start + batch])
                        progress += result.accepted
                        report.accepted += result.accepted
                        for rej in result.rejected:
                            if rej["rule"] in _RETRYABLE and rej["event_id"] in by_id:
                                retry.setdefault(code, []).append(by_id[rej["event_id"]])
                pending = retry
                if progress == 0:
                    report.rejected += sum(len(v) for v in retry.values())
                    break
    finally:
        for client in clients.values():
            client.close()
    return report
