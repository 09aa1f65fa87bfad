"""A synthetic national-like ledger: realistic churn, quarantine, re-issue, ports, transfers.

Deterministic for a seed. Each number lives from its first activation to today through
tenures; a cancelled number rests in quarantine and is usually re-issued to someone new.
Holders often hold several numbers. Identities are valid resident ID numbers (checksum
and birth date) with generated names: nobody real.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from tongcha.kit.idcard import check_digit

REGIONS = ("110105", "110108", "310101", "310115", "440305", "440106", "330106", "510107", "420106", "320102")
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红"
PREFIXES = (
    "134",
    "135",
    "136",
    "137",
    "138",
    "139",
    "150",
    "151",
    "152",
    "157",
    "158",
    "159",
    "182",
    "183",
    "187",
    "188",
    "130",
    "131",
    "132",
    "155",
    "156",
    "185",
    "186",
    "133",
    "153",
    "180",
    "181",
    "189",
    "199",
    "177",
)


@dataclass(frozen=True, slots=True)
class Person:
    id_number: str
    name: str


def make_person(rng: random.Random, born_before: date) -> Person:
    born = date(1950, 1, 1) + timedelta(days=rng.randrange((born_before - date(1950, 1, 1)).days))
    first17 = f"{rng.choice(REGIONS)}{born:%Y%m%d}{rng.randrange(1000):03d}"
    name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))
    return Person(first17 + check_digit(first17), name)


@dataclass
class SynthConfig:
    numbers: int = 10_000
    seed: int = 7
    carriers: Sequence[str] = ("CMCC", "CUCC", "CTCC")
    start: date = date(2008, 1, 1)
    today: date = date(2026, 11, 1)
    mean_tenure_days: float = 5 * 365
    quarantine_days: int = 90
    reissue_probability: float = 0.85
    port_probability: float = 0.08
    transfer_probability: float = 0.03
    suspend_probability: float = 0.15
    numbers_per_person: float = 1.6


def _at(day: date, rng: random.Random) -> str:
    # Between 08:00 and 20:00 in Beijing, whose day the hub dates an event by: so the day
    # an event falls on is the day the history above gave it, and a number re-issued on
    # the 90th day after its cancellation is out of quarantine on that reading too.
    moment = datetime.combine(day, time(0, 0), UTC) + timedelta(seconds=rng.randrange(12 * 3600))
    return moment.isoformat().replace("+00:00", "Z")


def generate(cfg: SynthConfig) -> Iterator[dict[str, object]]:
    """Events, number by number, each in time order; ``carrier`` names the sender."""
    rng = random.Random(cfg.seed)
    people: list[Person] = []
    span = (cfg.today - cfg.start).days
    used: set[int] = set()
    for _ in range(cfg.numbers):
        number = _number(rng, used)
        day = cfg.start + timedelta(days=int(rng.random() ** 1.5 * span))
        carrier = rng.choice(cfg.carriers)
        holder = _holder(rng, people, cfg)
        eid = 0

        def event(kind: str, when: date, sender: str, number: int = number, **extra: object) -> dict[str, object]:
            nonlocal eid
            eid += 1
            return {
                "event_id": f"{number}-{eid}",
                "type": kind,
                "number": f"+86{number}",
                "occurred_at": _at(when, rng),
                "carrier": sender,
                **extra,
            }

        yield event("activated", day, carrier, holder={"id_number": holder.id_number, "name": holder.name})
        while True:
            length = max(1, int(rng.expovariate(1 / cfg.mean_tenure_days)))
            end = day + timedelta(days=length)
            if end >= cfg.today:
                end = cfg.today
            # Things that happen during the tenure, in order.
            cursor = day
            if rng.random() < cfg.suspend_probability and (end - cursor).days > 40:
                s = cursor + timedelta(days=rng.randrange(1, (end - cursor).days - 20))
                r = s + timedelta(days=rng.randrange(1, 20))
                yield event("suspended", s, carrier)
                yield event("resumed", r, carrier)
                cursor = r
            if rng.random() < cfg.port_probability and (end - cursor).days > 2 and len(cfg.carriers) > 1:
                p = cursor + timedelta(days=rng.randrange(1, (end - cursor).days))
                target = rng.choice([c for c in cfg.carriers if c != carrier])
                yield event("ported", p, carrier, to_carrier=target)
                carrier, cursor = target, p
            if rng.random() < cfg.transfer_probability and (end - cursor).days > 2:
                t = cursor + timedelta(days=rng.randrange(1, (end - cursor).days))
                holder = _holder(rng, people, cfg, fresh=True)
                yield event("transferred", t, carrier, holder={"id_number": holder.id_number, "name": holder.name})
                cursor = t
            if end >= cfg.today:
                break
            yield event("cancelled", end, carrier)
            if rng.random() > cfg.reissue_probability:
                break
            day = end + timedelta(days=cfg.quarantine_days + int(rng.expovariate(1 / 120)))
            if day >= cfg.today:
                break
            carrier = rng.choice(cfg.carriers)
            holder = _holder(rng, people, cfg, fresh=True)
            yield event("activated", day, carrier, holder={"id_number": holder.id_number, "name": holder.name})


def _number(rng: random.Random, used: set[int]) -> int:
    while True:
        n = int(rng.choice(PREFIXES) + f"{rng.randrange(100_000_000):08d}")
        if n not in used:
            used.add(n)
            return n


def _holder(rng: random.Random, people: list[Person], cfg: SynthConfig, fresh: bool = False) -> Person:
    reuse = 1 - 1 / cfg.numbers_per_person
    if people and not fresh and rng.random() < reuse:
        return rng.choice(people)
    person = make_person(rng, cfg.today - timedelta(days=18 * 365))
    people.append(person)
    return person


def by_carrier(events: Iterator[dict[str, object]]) -> dict[str, list[dict[str, object]]]:
    out: dict[str, list[dict[str, object]]] = {}
    for ev in events:
        sender = str(ev.pop("carrier"))
        out.setdefault(sender, []).append(ev)
    return out
