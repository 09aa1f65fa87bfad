"""A citizen's requests: which platform calls each kind makes, about which tenure, by when.

The rules that protect people live here:
- a citizen acts only on numbers they hold now (history: numbers they held before);
- an unbind sends ``bound_before`` = the start of the current holder's first tenure of
  the number (local midnight of its first day: the tenure in force at the end of a day
  owns that day), so a binding made at or after it is never touched by that call; when
  others held the number between two of the holder's tenures (A, then B, then A again),
  what was bound in between is listed and each listed account unbound alone, so the
  holder's bindings from before (theirs too) are never touched (``unbind_plan``);
- history asks only about [start, end) of the citizen's own old tenure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from tongcha.kit.errors import InvalidArgument, NotFound, PermissionDenied
from tongcha.kit.phone import e164
from tongcha.kit.workdays import WorkCalendar, local_midnight
from tongcha.ledger import repository as ledger_repo
from tongcha.ledger.models import Tenure
from tongcha.platforms import fanout
from tongcha.platforms import repository as platforms_repo
from tongcha.platforms.fanout import Callee, Target, TaskCall
from tongcha.platforms.models import FINAL_STATES
from tongcha.requests import repository as repo
from tongcha.requests.models import Request, RequestKind, RequestState
from tongcha.sdk.protocol import Operation

DEFAULT_SLA_DAYS = {
    RequestKind.inquiry: 2,
    RequestKind.detail: 2,
    RequestKind.unbind: 5,
    RequestKind.dispute: 5,
    RequestKind.history: 2,
}
OPERATIONS = {
    RequestKind.inquiry: Operation.bindings_count,
    RequestKind.detail: Operation.bindings_list,
    RequestKind.unbind: Operation.bindings_unbind,
    RequestKind.dispute: Operation.account_action,
    RequestKind.history: Operation.bindings_count,
}


@dataclass(frozen=True, slots=True)
class Citizen:
    holder_digest: str
    number: int
    # The citizen session the token stands for, so it can be revoked.
    session_id: int


@dataclass(frozen=True, slots=True)
class Ask:
    """What the citizen asked for; which fields matter depends on the kind."""

    kind: RequestKind
    number: int | None = None
    platform: str | None = None
    platforms: tuple[str, ...] | None = None
    account_ref: str | None = None
    action: str | None = None
    # The tenure a number_ref named: history asks about that one, not the latest.
    tenure_seq: int | None = None


def _tenure_held_now(session: Session, holder: str, number: int) -> Tenure:
    current = ledger_repo.current_tenure(session, number)
    if current is None or current.holder_digest != holder:
        raise PermissionDenied("you can act only on numbers you hold now")
    return current


def _former_tenure(session: Session, holder: str, number: int, seq: int | None) -> Tenure:
    if seq is None:
        former = ledger_repo.former_tenure(session, holder, number)
    else:
        former = ledger_repo.tenure_at(session, number, seq)
    if former is None or former.holder_digest != holder or former.ended_on is None:
        raise PermissionDenied("history is for numbers you held before")
    return former


def _held_since(session: Session, current: Tenure) -> date:
    """The first day of the holder's unbroken hold of the number: their current tenure's,
    or an earlier one of theirs when nobody else held the number in between (a number
    cancelled and activated again for the same person). What they bound then is theirs."""
    since = current.started_on
    for earlier in ledger_repo.latest_tenures(session, current.number, current.seq + 1):
        if earlier.seq >= current.seq:
            continue
        if earlier.holder_digest != current.holder_digest:
            break
        since = earlier.started_on
    return since


def _check_listed(session: Session, holder: str, number: str, platform: str, account_ref: str, since: datetime) -> None:
    """A dispute names an account the holder saw in their own details of the number,
    bound while they held it. The action carries no tenure (API.md), so the hub makes
    sure it never reaches an account a previous holder left on the number."""
    for params, answer in repo.answered_details(session, holder, platform):
        if not isinstance(params, dict) or params.get("number") != number or not isinstance(answer, dict):
            continue
        for account in answer.get("accounts") or ():
            if not isinstance(account, dict) or account.get("account_ref") != account_ref:
                continue
            bound_at = fanout.aware_moment(account.get("bound_at"))
            if bound_at is not None and bound_at >= since:
                return
    raise PermissionDenied(
        "you can dispute only an account that a details request listed on this number as bound "
        "since you hold it: ask for details first"
    )


@dataclass(frozen=True, slots=True)
class UnbindPlan:
    """Which bindings an unbind detaches, in days of the ledger (local midnights).

    ``bound_before``: the first day the holder held the number; everything bound before
    it was bound before they ever held it. ``spans``: ``[from, until)`` stretches where
    others held the number between two of the holder's own tenures. A stretch starts the
    day after the holder's earlier tenure ended (on that day the holder still held it in
    the morning, so nothing bound then is touched) and ends where their next one began.
    """

    bound_before: date
    spans: tuple[tuple[date, date], ...] = ()


class HeldTenure(Protocol):
    """What a plan reads of a tenure: a stored one, or one replay made."""

    @property
    def seq(self) -> int: ...
    @property
    def holder_digest(self) -> str: ...
    @property
    def started_on(self) -> date: ...
    @property
    def ended_on(self) -> date | None: ...


def unbind_plan(tenures: Sequence[HeldTenure], holder: str) -> UnbindPlan:
    """The plan for ``holder``, the current holder, from the number's tenures up to the
    current one (any order). The protocol's unbind has no lower bound (API.md), so a
    stretch between two of the holder's tenures cannot be one ``bindings/unbind``."""
    ordered = sorted(tenures, key=lambda t: t.seq)
    mine = [t for t in ordered if t.holder_digest == holder]
    if not mine:
        raise PermissionDenied("you can act only on numbers you hold now")
    spans: list[tuple[date, date]] = []
    mine_ended: date | None = None
    others_since = False
    for tenure in ordered:
        if tenure.holder_digest != holder:
            others_since = mine_ended is not None
            continue
        if mine_ended is not None and others_since:
            start = mine_ended + timedelta(days=1)
            if start < tenure.started_on:
                spans.append((start, tenure.started_on))
        others_since = False
        mine_ended = tenure.ended_on
    return UnbindPlan(mine[0].started_on, tuple(spans))


def unbind_cutoff(started_on: date, zone: ZoneInfo) -> datetime:
    """``bound_before`` for an unbind of the previous holders' bindings: the start of the
    day the holder's first tenure of the number began (``UnbindPlan.bound_before``)."""
    return local_midnight(started_on, zone)


def _pick(callees: Sequence[Callee], codes: tuple[str, ...] | None) -> list[Callee]:
    if codes is None:
        return list(callees)
    known = {c.code: c for c in callees}
    missing = [code for code in codes if code not in known]
    if missing:
        raise NotFound(f"no platform {missing[0]!r} takes requests")
    return [known[code] for code in dict.fromkeys(codes)]


def _comparable(params: dict[str, Any]) -> dict[str, Any]:
    # The platforms of an unbind are a set: the same ones in another order ask the same.
    if isinstance(params.get("platforms"), list):
        return {**params, "platforms": sorted(params["platforms"])}
    return params


def _same_open_request(session: Session, holder: str, kind: RequestKind, params: dict[str, Any]) -> Request | None:
    wanted = _comparable(params)
    for request in repo.open_requests_of(session, holder, kind):
        if isinstance(request.params, dict) and _comparable(request.params) == wanted:
            return request
    return None


def open_citizen_request(
    session: Session,
    *,
    citizen: Citizen,
    ask: Ask,
    callees: Sequence[Callee],
    calendar: WorkCalendar,
    zone: ZoneInfo,
    now: datetime,
    claim_for: timedelta | None,
    give_up_after: timedelta,
) -> tuple[Request, list[TaskCall]]:
    """Check the citizen may ask this, then store the request and its platform tasks.

    A request identical to one of the holder's that is still open (same kind, same
    parameters) opens nothing: that request comes back, with no task calls to make.
    """
    holder = citizen.holder_digest
    bodies: list[tuple[Callee, dict[str, Any]]] = []
    # An unbind's stretches between two of the holder's tenures: listed, then unbound alone.
    listings: list[tuple[Callee, dict[str, Any]]] = []
    params: dict[str, Any] = {}
    if ask.kind is RequestKind.inquiry:
        tenures = ledger_repo.held_now(session, holder)
        if not tenures:
            raise PermissionDenied("no number is held under your ID now")
        params["numbers"] = [e164(t.number) for t in tenures]
        for tenure in tenures:
            since = local_midnight(tenure.started_on, zone).isoformat()
            bodies += [(c, {"number": e164(tenure.number), "bound_from": since}) for c in callees]
    elif ask.kind is RequestKind.history:
        assert ask.number is not None
        former = _former_tenure(session, holder, ask.number, ask.tenure_seq)
        assert former.ended_on is not None
        span = {
            "number": e164(former.number),
            "bound_from": local_midnight(former.started_on, zone).isoformat(),
            "bound_until": local_midnight(former.ended_on, zone).isoformat(),
        }
        params.update(span)
        bodies = [(c, dict(span)) for c in callees]
    else:
        assert ask.number is not None
        current = _tenure_held_now(session, holder, ask.number)
        number = e164(current.number)
        start = local_midnight(current.started_on, zone).isoformat()
        if ask.kind is RequestKind.detail:
            assert ask.platform is not None
            chosen = _pick(callees, (ask.platform,))
            params.update(number=number, platform=ask.platform, bound_from=start)
            bodies = [(c, {"number": number, "bound_from": start}) for c in chosen]
        elif ask.kind is RequestKind.unbind:
            chosen = _pick(callees, ask.platforms)
            plan = unbind_plan(ledger_repo.latest_tenures(session, current.number, current.seq), holder)
            cutoff = unbind_cutoff(plan.bound_before, zone).isoformat()
            params.update(number=number, bound_before=cutoff, platforms=[c.code for c in chosen])
            bodies = [(c, {"number": number, "bound_before": cutoff}) for c in chosen]
            if plan.spans:
                # Listed, then each listed account unbound alone (fanout's follow-ups).
                spans = [
                    {
                        "bound_from": local_midnight(low, zone).isoformat(),
                        "bound_until": local_midnight(high, zone).isoformat(),
                    }
                    for low, high in plan.spans
                ]
                params["unbind_between"] = spans
                listings = [(c, {"number": number, **span}) for c in chosen for span in spans]
        elif ask.kind is RequestKind.dispute:
            assert ask.platform is not None and ask.account_ref is not None and ask.action is not None
            chosen = _pick(callees, (ask.platform,))
            held_from = local_midnight(_held_since(session, current), zone)
            _check_listed(session, holder, number, ask.platform, ask.account_ref, held_from)
            params.update(number=number, platform=ask.platform, account_ref=ask.account_ref, action=ask.action)
            body = {"number": number, "account_ref": ask.account_ref, "action": ask.action}
            bodies = [(c, dict(body)) for c in chosen]
        else:
            raise InvalidArgument(f"unknown request kind {ask.kind}")
    if not bodies:
        raise NotFound("no platform takes requests yet")
    # The same request again while the first is open is that request: no second SMS, no
    # second round of platform calls (a twice-clicked button, a retried POST).
    repo.lock_holder_requests(session, holder)
    asked_already = _same_open_request(session, holder, ask.kind, params)
    if asked_already is not None:
        return asked_already, []

    def due(callee: Callee) -> datetime:
        days = callee.sla_overrides.get(ask.kind.value, DEFAULT_SLA_DAYS[ask.kind])
        return calendar.due_by(now, int(days), zone)

    targets = [Target(c, body, due(c)) for c, body in bodies]
    targets += [Target(c, body, due(c), Operation.bindings_list) for c, body in listings]
    return fanout.open_request(
        session,
        kind=ask.kind,
        params=params,
        operation=OPERATIONS[ask.kind],
        targets=targets,
        now=now,
        give_up_after=give_up_after,
        claim_for=claim_for,
        holder_digest=holder,
        due_by=max(t.due_by for t in targets if t.due_by is not None),
        notify_number=citizen.number,
    )


def request_of(session: Session, holder: str, public_id: str) -> Request:
    """A request of this holder's; another holder's is as unknown as a missing one."""
    request = repo.request_of(session, holder, public_id)
    if request is None:
        raise NotFound("no such request")
    return request


def requests_of(session: Session, holder: str, limit: int = 100) -> list[Request]:
    return repo.requests_of(session, holder, limit)


# ----- the operator's list ------------------------------------------------------------

MAX_PAGE = 500


@dataclass(frozen=True, slots=True)
class RequestSummary:
    """One request as the operator's list shows it: no holder, no numbers, no answers."""

    request_id: str
    kind: str
    state: str
    created_at: datetime
    due_by: datetime | None
    completed_at: datetime | None
    platforms: int
    pending: list[str]
    # Marked overdue by the sweep: still open past its due time, or answered after it.
    overdue: list[str]


@dataclass(frozen=True, slots=True)
class RequestPage:
    requests: list[RequestSummary]
    # Pass as ``before`` for the next page; None on the last one.
    next_before: str | None


def operator_requests(
    session: Session,
    *,
    limit: int = 50,
    before: str | None = None,
    state: RequestState | None = None,
    kind: RequestKind | None = None,
    overdue: bool = False,
    platform: str | None = None,
) -> RequestPage:
    """Every party's requests, newest first, one page of them: for the operator, who
    watches what is open and which platforms are late. ``overdue`` keeps the requests
    with a task still open past its due time; ``platform`` those with a task for it."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidArgument(
            f"limit is 1 to {MAX_PAGE}", [{"field": "limit", "issue": f"not between 1 and {MAX_PAGE}"}]
        )
    before_id = None
    if before is not None:
        older_than = repo.request_by_public_id(session, before)
        if older_than is None:
            raise InvalidArgument("before names no request", [{"field": "before", "issue": "no such request"}])
        before_id = older_than.id
    platform_id = None
    if platform is not None:
        callee = platforms_repo.platform_by_code(session, platform)
        if callee is None:
            raise InvalidArgument("platform names no platform", [{"field": "platform", "issue": "no such platform"}])
        platform_id = callee.id
    # One more than a page: whether there is a next one.
    rows = repo.latest_requests(
        session,
        limit=limit + 1,
        before=before_id,
        state=state.value if state is not None else None,
        kind=kind.value if kind is not None else None,
        overdue=overdue,
        platform_id=platform_id,
    )
    page = rows[:limit]
    tasks: dict[int, list[tuple[str, str, bool]]] = {r.id: [] for r in page}
    for request_pk, code, task_state, late in repo.task_states_of(session, list(tasks)):
        tasks[request_pk].append((code, task_state, bool(late)))
    return RequestPage(
        requests=[
            RequestSummary(
                request_id=r.public_id,
                kind=r.kind,
                state=r.state,
                created_at=r.created_at,
                due_by=r.due_by,
                completed_at=r.completed_at,
                # A platform may have several tasks (an inquiry's numbers, an unbind's
                # listings): each platform is named once.
                platforms=len({code for code, _, _ in tasks[r.id]}),
                pending=list(dict.fromkeys(code for code, state, _ in tasks[r.id] if state not in FINAL_STATES)),
                overdue=list(dict.fromkeys(code for code, _, late in tasks[r.id] if late)),
            )
            for r in page
        ],
        next_before=page[-1].public_id if len(rows) > limit else None,
    )
