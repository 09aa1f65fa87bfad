"""Simulated platforms' accounts, consistent with the simulated number ledger.

The ledger (``tongcha.sim.ledger.generate``) says who held each number when; here each
holder opens accounts on an enterprise's apps during their tenure, binding them to the
number. When a tenure ends the holder usually detaches the number (changes their phone
number on the app), but after a cancellation the binding is sometimes left behind, and
the number's next holder inherits it: exactly the stale bindings Tongcha exists to find.
Deterministic for a seed.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Literal

from tongcha.platforms.catalogue import AccountModel, AppEntry, EnterpriseEntry

TenureEnd = Literal["cancelled", "transferred"]
AccountStatus = Literal["active", "frozen", "cancelled"]

# How likely a holder is to bind an account on this app (or unified enterprise) to the
# number during one tenure.
ADOPTION: Mapping[str, float] = {
    "wechat": 0.9,
    "qq": 0.55,
    "taobao": 0.7,
    "xianyu": 0.35,
    "dingtalk": 0.3,
    "alipay": 0.75,
    "BAIDU": 0.5,
    "kuaishou": 0.4,
    "douyin": 0.6,
    "jd": 0.5,
    "meituan": 0.6,
    "dianping": 0.3,
    "weibo": 0.4,
    "toutiao": 0.3,
    "XIAOMI": 0.25,
}
DEFAULT_ADOPTION = 0.4
# Someone with one account on an app sometimes opens a second on the same number.
SECOND_ACCOUNT_PROBABILITY = 0.08
# After a cancellation, how often the holder never detached the number from an account.
LEFTOVER_PROBABILITY = 0.3
_NICKNAMES = ("sunny", "tiger", "lucky", "panda", "xiaoyu", "mango", "river", "cloud", "dragon", "maple")


@dataclass(frozen=True, slots=True)
class Tenure:
    """One holder's time with a number: [started_at, ended_at), open when ended_at is None."""

    number: str
    holder_id: str
    holder_name: str
    started_at: datetime
    ended_at: datetime | None = None
    ended_by: TenureEnd | None = None

    def covers(self, moment: datetime) -> bool:
        return self.started_at <= moment and (self.ended_at is None or moment < self.ended_at)


def tenures_from_events(events: Iterable[Mapping[str, object]]) -> dict[str, list[Tenure]]:
    """Each number's tenures in time order, from carrier events as ``generate`` yields them.

    ``activated`` opens a tenure, ``cancelled`` closes it, ``transferred`` closes it and
    opens the new holder's at the same moment; ports, suspensions and resumptions change
    nobody's tenure.
    """
    by_number: dict[str, list[Mapping[str, object]]] = {}
    for event in events:
        by_number.setdefault(str(event["number"]), []).append(event)
    tenures: dict[str, list[Tenure]] = {}
    for number, history in by_number.items():
        closed: list[Tenure] = []
        current: Tenure | None = None
        for event in sorted(history, key=lambda e: _moment(e["occurred_at"])):
            kind, moment = event["type"], _moment(event["occurred_at"])
            if kind in ("cancelled", "transferred") and current is not None:
                ended_by: TenureEnd = "cancelled" if kind == "cancelled" else "transferred"
                closed.append(_close(current, moment, ended_by))
                current = None
            if kind in ("activated", "transferred"):
                holder = event["holder"]
                assert isinstance(holder, Mapping)
                current = Tenure(number, str(holder["id_number"]), str(holder["name"]), moment)
        tenures[number] = [*closed, current] if current is not None else closed
    return tenures


def _close(tenure: Tenure, moment: datetime, ended_by: TenureEnd) -> Tenure:
    return Tenure(tenure.number, tenure.holder_id, tenure.holder_name, tenure.started_at, moment, ended_by)


def _moment(value: object) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class FormerBinding:
    number: str
    bound_at: datetime
    detached_at: datetime
    # "holder": the holder changed their number; "unbind"/"action": the hub's task.
    detached_by: str


@dataclass(slots=True)
class SimAccount:
    """An account on a simulated platform. Detaching clears ``number`` and keeps the
    account; cancelling marks it cancelled and keeps it too: nothing is ever deleted."""

    account_ref: str
    # The app's code, or the enterprise's code when accounts are unified.
    app: str
    owner_id: str
    display_name: str
    number: str | None
    bound_at: datetime
    last_active_at: datetime
    status: AccountStatus = "active"
    former_bindings: list[FormerBinding] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Change:
    """One change made for the hub, so tests can see a task never acted twice."""

    task_id: str
    operation: str
    account_refs: tuple[str, ...]


class AccountStore:
    """One enterprise's accounts and which of them each number is bound to now.

    Thread-safe: the fleet changes it on its event loop while a test reads it.
    """

    def __init__(self, enterprise: EnterpriseEntry) -> None:
        self.enterprise = enterprise
        # What counts are reported per: each app, or the enterprise as one.
        self.units: tuple[str, ...] = (
            tuple(app.code for app in enterprise.apps)
            if enterprise.account_model is AccountModel.independent
            else (enterprise.code,)
        )
        self.accounts: dict[str, SimAccount] = {}
        self.changes: list[Change] = []
        self._bound: dict[str, list[SimAccount]] = {}
        self._lock = threading.Lock()

    def add(self, account: SimAccount) -> None:
        if account.app not in self.units:
            raise ValueError(f"{account.app!r} is not one of {self.enterprise.code}'s units {self.units}")
        with self._lock:
            if account.account_ref in self.accounts:
                raise ValueError(f"account {account.account_ref} exists")
            self.accounts[account.account_ref] = account
            if account.number is not None:
                self._bound.setdefault(account.number, []).append(account)

    def numbers(self) -> list[str]:
        """Numbers with at least one account bound now."""
        with self._lock:
            return [number for number, accounts in self._bound.items() if accounts]

    def bound_to(self, number: str) -> list[SimAccount]:
        with self._lock:
            return list(self._bound.get(normalize_number(number), ()))

    def bound_between(self, number: str, bound_from: datetime, bound_until: datetime | None) -> list[SimAccount]:
        """Accounts bound to the number now, bound in [bound_from, bound_until)."""
        low, high = _aware(bound_from), None if bound_until is None else _aware(bound_until)
        return [a for a in self.bound_to(number) if low <= a.bound_at and (high is None or a.bound_at < high)]

    def count(self, number: str, bound_from: datetime, bound_until: datetime | None) -> dict[str, int]:
        """Per unit (every unit listed, zeros too)."""
        counts = dict.fromkeys(self.units, 0)
        for account in self.bound_between(number, bound_from, bound_until):
            counts[account.app] += 1
        return counts

    def unbind(self, number: str, bound_before: datetime, *, task_id: str, at: datetime) -> tuple[list[str], int]:
        """Detach the number from accounts bound strictly before ``bound_before``; return
        their refs and how many bindings stay."""
        cutoff = _aware(bound_before)
        number = normalize_number(number)
        with self._lock:
            bound = self._bound.get(number, [])
            leaving = [a for a in bound if a.bound_at < cutoff]
            for account in leaving:
                _detach(account, at, "unbind")
            self._bound[number] = [a for a in bound if a.bound_at >= cutoff]
            refs = [a.account_ref for a in leaving]
            self.changes.append(Change(task_id, "unbind", tuple(refs)))
            return refs, len(self._bound[number])

    def act(
        self,
        number: str,
        account_ref: str,
        action: Literal["unbind", "freeze", "cancel"],
        *,
        task_id: str,
        at: datetime,
    ) -> str | None:
        """Do ``action`` to an account bound to ``number``; None when done, else why not."""
        number = normalize_number(number)
        with self._lock:
            account = self.accounts.get(account_ref)
            if account is None or account.number != number:
                return "no such account is bound to this number"
            if action == "freeze":
                if account.status == "frozen":
                    return "the account is already frozen"
                account.status = "frozen"
            else:
                # Cancelling an account frees its number too; the record stays.
                _detach(account, at, "action")
                self._bound[number] = [a for a in self._bound[number] if a is not account]
                if action == "cancel":
                    account.status = "cancelled"
            self.changes.append(Change(task_id, action, (account_ref,)))
            return None


def _detach(account: SimAccount, at: datetime, by: str) -> None:
    assert account.number is not None
    account.former_bindings.append(FormerBinding(account.number, account.bound_at, at, by))
    account.number = None


def _aware(moment: datetime) -> datetime:
    # RFC 3339 times carry an offset; one without is taken as UTC rather than refused.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def normalize_number(number: str) -> str:
    """``+86`` and 11 digits, as the ledger writes numbers; a bare 11-digit number too."""
    return f"+86{number}" if len(number) == 11 and number.isdigit() else number


def mask_name(name: str) -> str:
    """``王芳`` → ``王*``, ``tiger88`` → ``t***8``: enough for a holder to recognise."""
    name = name.replace(" ", "")
    if not name:
        return "*"
    if not name.isascii():
        return name[0] + "*" * max(1, len(name) - 1)
    return f"{name[0]}***{name[-1]}" if len(name) > 1 else f"{name}***"


def build_accounts(
    enterprise: EnterpriseEntry,
    tenures: Mapping[str, Sequence[Tenure]],
    *,
    seed: int,
    today: date,
    adoption: Mapping[str, float] = ADOPTION,
    leftover_probability: float = LEFTOVER_PROBABILITY,
) -> AccountStore:
    """An enterprise's accounts on the ledger's numbers, deterministic for ``seed``.

    In each tenure the holder may bind accounts (per app, or once for a unified
    enterprise) at a time inside the tenure, and use them until the tenure ends. When it
    ends by cancellation the binding is left behind with ``leftover_probability``;
    otherwise the number is detached from it when the tenure ends.
    """
    store = AccountStore(enterprise)
    rng = random.Random(f"{seed}:{enterprise.code}")
    now = datetime.combine(today, time(0), UTC)
    for history in tenures.values():
        for unit in store.units:
            share = adoption.get(unit, DEFAULT_ADOPTION)
            for tenure in history:
                until = tenure.ended_at or now
                if until <= tenure.started_at or rng.random() >= share:
                    continue
                accounts = 2 if rng.random() < SECOND_ACCOUNT_PROBABILITY else 1
                for _ in range(accounts):
                    account = _open_account(rng, store, unit, tenure, until)
                    if tenure.ended_at is not None:
                        left = tenure.ended_by == "cancelled" and rng.random() < leftover_probability
                        if not left:
                            _detach(account, tenure.ended_at, "holder")
                    store.add(account)
    return store


def _open_account(rng: random.Random, store: AccountStore, unit: str, tenure: Tenure, until: datetime) -> SimAccount:
    span = until - tenure.started_at
    # People sign up soon after getting a number more often than late in its life.
    bound_at = tenure.started_at + span * rng.random() ** 2
    last_active_at = bound_at + (until - bound_at) * rng.random()
    while True:
        ref = f"{unit.lower()}-{rng.getrandbits(48):012x}"
        if ref not in store.accounts:
            break
    if rng.random() < 0.5:
        display = tenure.holder_name
    else:
        display = f"{rng.choice(_NICKNAMES)}{rng.randrange(100)}"
    return SimAccount(
        account_ref=ref,
        app=unit,
        owner_id=tenure.holder_id,
        display_name=display,
        number=tenure.number,
        bound_at=_to_second(bound_at),
        last_active_at=_to_second(max(last_active_at, bound_at)),
    )


def _to_second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def synthetic_enterprises(count: int, *, prefix: str = "SIM") -> tuple[EnterpriseEntry, ...]:
    """Extra enterprises for benchmarks: ``SIM01``.. with one independent app each."""
    return tuple(
        EnterpriseEntry(
            code=f"{prefix}{i:02d}",
            name_zh=f"模拟平台{i:02d}",
            name_en=f"Simulated platform {i:02d}",
            account_model=AccountModel.independent,
            apps=(AppEntry(f"{prefix.lower()}{i:02d}", f"模拟应用{i:02d}", f"Simulated app {i:02d}"),),
        )
        for i in range(1, count + 1)
    )
