"""Simulated platforms: accounts that agree with the ledger, served over loopback by the SDK."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from tests.sdk.fake_hub import CallbackReceiver, HubSigner, error_code
from tongcha.platforms.catalogue import EnterpriseEntry
from tongcha.sdk import protocol
from tongcha.sdk.protocol import CallbackBody, CountAnswer, ListAnswer, Operation, UnbindAnswer
from tongcha.sim.accounts import (
    AccountStore,
    SimAccount,
    Tenure,
    build_accounts,
    mask_name,
    synthetic_enterprises,
    tenures_from_events,
)
from tongcha.sim.ledger import SynthConfig, generate
from tongcha.sim.platforms import Knobs, PlatformFleet, SimPlatform, enterprise
from tongcha.sim.servers import ServerHost

LEDGER = SynthConfig(numbers=300, seed=5)
COUNT, LIST = Operation.bindings_count, Operation.bindings_list
UNBIND, ACTION = Operation.bindings_unbind, Operation.account_action
EPOCH = "2000-01-01T00:00:00Z"


@pytest.fixture(scope="module")
def tenures() -> dict[str, list[Tenure]]:
    return tenures_from_events(generate(LEDGER))


@pytest.fixture(scope="module")
def hub() -> HubSigner:
    return HubSigner()


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[CallbackReceiver, str]]:
    host = ServerHost()
    app = CallbackReceiver()
    yield app, host.serve(app).base_url
    host.close()


@pytest.fixture(scope="module")
def fleet(
    tenures: dict[str, list[Tenure]], hub: HubSigner, receiver: tuple[CallbackReceiver, str]
) -> Iterator[PlatformFleet]:
    with PlatformFleet(
        hub_url=receiver[1], hub_keys=hub.keys, tenures=tenures, today=LEDGER.today, seed=LEDGER.seed
    ) as f:
        yield f


def fresh(fleet: PlatformFleet, code: str, knobs: Knobs | None = None) -> SimPlatform:
    """A platform of its own for one test, so that its accounts start untouched."""
    return fleet.add(enterprise(code), knobs, code=f"{code}-{uuid.uuid4().hex[:6]}")


def task() -> str:
    return uuid.uuid4().hex


def call(hub: HubSigner, platform: SimPlatform, operation: Operation, **body: Any) -> httpx.Response:
    body.setdefault("task_id", task())
    for name, value in body.items():
        if isinstance(value, datetime):
            body[name] = value.isoformat()
    return hub.post(platform.base_url, platform.code, operation, body)


def current_tenure(history: Sequence[Tenure]) -> Tenure | None:
    return history[-1] if history and history[-1].ended_at is None else None


def leftovers(store: AccountStore, tenures: Mapping[str, Sequence[Tenure]]) -> dict[str, list[SimAccount]]:
    """Bindings on numbers someone holds now, made before that holder's tenure began."""
    found: dict[str, list[SimAccount]] = {}
    for number in store.numbers():
        now = current_tenure(tenures[number])
        if now is not None:
            old = [a for a in store.bound_to(number) if a.bound_at < now.started_at]
            if old:
                found[number] = old
    return found


# --- the accounts agree with the ledger --------------------------------------------


def test_tenures_follow_the_ledger_events(tenures: dict[str, list[Tenure]]) -> None:
    events = list(generate(LEDGER))
    assert set(tenures) == {str(e["number"]) for e in events}
    assert sum(map(len, tenures.values())) == sum(1 for e in events if e["type"] in ("activated", "transferred"))
    for history in tenures.values():
        assert all(t.ended_at is not None for t in history[:-1]), "only the last tenure may be open"
        for before, after in pairwise(history):
            assert before.ended_at is not None and before.ended_at <= after.started_at
            if before.ended_by == "transferred":
                assert before.ended_at == after.started_at


@pytest.mark.parametrize("code", ["ALIBABA", "BAIDU"])
def test_every_binding_lies_in_a_tenure_of_the_accounts_owner(tenures: dict[str, list[Tenure]], code: str) -> None:
    store = build_accounts(enterprise(code), tenures, seed=LEDGER.seed, today=LEDGER.today)
    assert len(store.accounts) > 100
    for account in store.accounts.values():
        bindings = [(b.number, b.bound_at) for b in account.former_bindings]
        if account.number is not None:
            bindings.append((account.number, account.bound_at))
        for number, bound_at in bindings:
            [tenure] = [t for t in tenures[number] if t.covers(bound_at)]
            assert tenure.holder_id == account.owner_id
            assert bound_at <= account.last_active_at <= (tenure.ended_at or datetime.max.replace(tzinfo=UTC))


def test_a_binding_outlives_its_tenure_only_after_a_cancellation(tenures: dict[str, list[Tenure]]) -> None:
    store = build_accounts(enterprise("TENCENT"), tenures, seed=LEDGER.seed, today=LEDGER.today)
    for account in store.accounts.values():
        for former in account.former_bindings:
            [tenure] = [t for t in tenures[former.number] if t.covers(former.bound_at)]
            assert former.detached_at == tenure.ended_at, "detached when the holder's tenure ended"
        if account.number is not None:
            [tenure] = [t for t in tenures[account.number] if t.covers(account.bound_at)]
            assert tenure.ended_at is None or tenure.ended_by == "cancelled"


def test_a_reissued_number_carries_bindings_from_before_its_current_tenure(tenures: dict[str, list[Tenure]]) -> None:
    store = build_accounts(enterprise("TENCENT"), tenures, seed=LEDGER.seed, today=LEDGER.today)
    stale = leftovers(store, tenures)
    assert len(stale) >= 10
    for number, accounts in stale.items():
        holder = current_tenure(tenures[number])
        assert holder is not None and all(
            a.owner_id != holder.holder_id or a.bound_at < holder.started_at for a in accounts
        )


def test_accounts_are_the_same_for_a_seed_and_differ_for_another(tenures: dict[str, list[Tenure]]) -> None:
    def snapshot(seed: int) -> list[tuple[str, str | None, datetime]]:
        store = build_accounts(enterprise("JD"), tenures, seed=seed, today=LEDGER.today)
        return [(a.account_ref, a.number, a.bound_at) for a in store.accounts.values()]

    assert snapshot(1) == snapshot(1)
    assert snapshot(1) != snapshot(2)


@pytest.mark.parametrize(
    ("name", "masked"), [("王芳", "王*"), ("林红洋", "林**"), ("tiger88", "t***8"), ("张 伟", "张*")]
)
def test_display_names_are_masked(name: str, masked: str) -> None:
    assert mask_name(name) == masked


# --- the operations over HTTP -------------------------------------------------------


def test_independent_apps_are_counted_one_by_one(fleet: PlatformFleet, hub: HubSigner) -> None:
    alibaba = fleet.platforms.get("ALIBABA") or fleet.add(enterprise("ALIBABA"))
    number = max(alibaba.accounts.numbers(), key=lambda n: len({a.app for a in alibaba.accounts.bound_to(n)}))
    response = call(hub, alibaba, COUNT, number=number, bound_from=EPOCH)
    counts = {c.app: c.count for c in CountAnswer.model_validate_json(response.content).counts}
    expected = {
        app: sum(a.app == app for a in alibaba.accounts.bound_to(number)) for app in ("taobao", "xianyu", "dingtalk")
    }
    assert counts == expected
    assert sum(1 for n in counts.values() if n) >= 2


def test_a_unified_enterprise_is_counted_once(fleet: PlatformFleet, hub: HubSigner) -> None:
    baidu = fleet.platforms.get("BAIDU") or fleet.add(enterprise("BAIDU"))
    number = baidu.accounts.numbers()[0]
    response = call(hub, baidu, COUNT, number=number, bound_from=EPOCH)
    answer = CountAnswer.model_validate_json(response.content)
    assert [(c.app, c.count) for c in answer.counts] == [("BAIDU", len(baidu.accounts.bound_to(number)))]


def test_count_and_list_keep_to_the_window_from_inclusive_until_exclusive(fleet: PlatformFleet, hub: HubSigner) -> None:
    tencent = fleet.platforms.get("TENCENT") or fleet.add(enterprise("TENCENT"))
    number = next(n for n in tencent.accounts.numbers() if len({a.bound_at for a in tencent.accounts.bound_to(n)}) >= 2)
    bound = sorted(tencent.accounts.bound_to(number), key=lambda a: a.bound_at)
    first, last = bound[0], bound[-1]
    listed = call(hub, tencent, LIST, number=number, bound_from=first.bound_at, bound_until=last.bound_at)
    accounts = ListAnswer.model_validate_json(listed.content).accounts
    refs = {a.account_ref for a in accounts}
    assert first.account_ref in refs and last.account_ref not in refs
    assert refs == {a.account_ref for a in bound if a.bound_at < last.bound_at}
    later = call(hub, tencent, COUNT, number=number, bound_from=last.bound_at + timedelta(seconds=1))
    assert sum(c.count for c in CountAnswer.model_validate_json(later.content).counts) == 0
    names = {a.account_ref: a.display_name for a in bound}
    assert all(a.display_name_masked == mask_name(names[a.account_ref]) for a in accounts)


def _number_with_old_and_new_bindings(
    platform: SimPlatform, tenures: Mapping[str, Sequence[Tenure]]
) -> tuple[str, Tenure]:
    for number, _ in leftovers(platform.accounts, tenures).items():
        holder = current_tenure(tenures[number])
        assert holder is not None
        if any(a.bound_at >= holder.started_at for a in platform.accounts.bound_to(number)):
            return number, holder
    raise AssertionError("the seeded ledger has no number with both a stale and a current binding")


def test_unbind_detaches_the_previous_holders_bindings_and_keeps_the_current_ones(
    fleet: PlatformFleet, hub: HubSigner, tenures: dict[str, list[Tenure]]
) -> None:
    tencent = fresh(fleet, "TENCENT")
    number, holder = _number_with_old_and_new_bindings(tencent, tenures)
    before = tencent.accounts.bound_to(number)
    old = {a.account_ref for a in before if a.bound_at < holder.started_at}
    accounts_before = set(tencent.accounts.accounts)

    response = call(hub, tencent, UNBIND, number=number, bound_before=holder.started_at)
    answer = UnbindAnswer.model_validate_json(response.content)

    assert set(answer.unbound) == old
    assert answer.kept == len(before) - len(old) > 0
    assert {a.account_ref for a in tencent.accounts.bound_to(number)} == {a.account_ref for a in before} - old
    assert set(tencent.accounts.accounts) == accounts_before, "no account is ever deleted"
    for ref in old:
        account = tencent.accounts.accounts[ref]
        assert account.number is None and account.status == "active"
        assert (account.former_bindings[-1].number, account.former_bindings[-1].detached_by) == (number, "unbind")


def test_a_binding_made_exactly_at_bound_before_is_kept(fleet: PlatformFleet, hub: HubSigner) -> None:
    jd = fresh(fleet, "JD")
    number = jd.accounts.numbers()[0]
    [account, *_] = jd.accounts.bound_to(number)
    answer = UnbindAnswer.model_validate_json(
        call(hub, jd, UNBIND, number=number, bound_before=account.bound_at).content
    )
    assert account.account_ref not in answer.unbound
    assert account.number == number
    gone = UnbindAnswer.model_validate_json(
        call(hub, jd, UNBIND, number=number, bound_before=account.bound_at + timedelta(seconds=1)).content
    )
    assert account.account_ref in gone.unbound


def test_the_same_unbind_task_acts_once_and_answers_the_same(
    fleet: PlatformFleet, hub: HubSigner, tenures: dict[str, list[Tenure]]
) -> None:
    tencent = fresh(fleet, "TENCENT")
    number, holder = _number_with_old_and_new_bindings(tencent, tenures)
    task_id = task()
    first = call(hub, tencent, UNBIND, task_id=task_id, number=number, bound_before=holder.started_at)
    second = call(hub, tencent, UNBIND, task_id=task_id, number=number, bound_before=holder.started_at)
    assert UnbindAnswer.model_validate_json(first.content).unbound, "the first run detached something"
    assert second.content == first.content
    assert [c.task_id for c in tencent.accounts.changes] == [task_id]


def test_actions_act_on_an_account_bound_to_the_number_and_refuse_anything_else(
    fleet: PlatformFleet, hub: HubSigner
) -> None:
    meituan = fresh(fleet, "MEITUAN")
    numbers = meituan.accounts.numbers()
    frozen, cancelled = meituan.accounts.bound_to(numbers[0])[0], meituan.accounts.bound_to(numbers[1])[0]
    elsewhere = meituan.accounts.bound_to(numbers[2])[0]

    def act(number: str, ref: str, action: str) -> dict[str, Any]:
        answer: dict[str, Any] = call(hub, meituan, ACTION, number=number, account_ref=ref, action=action).json()
        return answer

    assert act(numbers[0], frozen.account_ref, "freeze") == {"outcome": "done"}
    assert act(numbers[1], cancelled.account_ref, "cancel") == {"outcome": "done"}
    refused = act(numbers[0], elsewhere.account_ref, "unbind")
    assert refused["outcome"] == "refused" and refused["reason"]
    assert act(numbers[0], "no-such-account", "cancel")["outcome"] == "refused"

    assert (frozen.status, frozen.number) == ("frozen", numbers[0])
    assert (cancelled.status, cancelled.number) == ("cancelled", None)
    assert meituan.accounts.accounts[cancelled.account_ref] is cancelled, "a cancelled account keeps its record"
    assert elsewhere.number == numbers[2]


# --- knobs ----------------------------------------------------------------------------


def test_an_error_rate_of_one_answers_503_without_acting_and_a_retry_runs(fleet: PlatformFleet, hub: HubSigner) -> None:
    jd = fresh(fleet, "JD", Knobs(error_rate=1.0))
    number = jd.accounts.numbers()[0]
    task_id = task()
    failed = call(hub, jd, UNBIND, task_id=task_id, number=number, bound_before="2100-01-01T00:00:00Z")
    assert failed.status_code == 503 and error_code(failed) == "UNAVAILABLE"
    assert jd.accounts.changes == [] and jd.accounts.bound_to(number)
    jd.knobs.error_rate = 0.0
    retried = call(hub, jd, UNBIND, task_id=task_id, number=number, bound_before="2100-01-01T00:00:00Z")
    assert retried.status_code == 200 and jd.accounts.bound_to(number) == []


@pytest.mark.parametrize("operation", [COUNT, LIST, UNBIND, ACTION])
def test_malformed_answers_do_not_fit_the_answer_model(
    fleet: PlatformFleet, hub: HubSigner, operation: Operation
) -> None:
    platform = fresh(fleet, "DOUYIN", Knobs(malformed_rate=1.0, seed=3))
    number = platform.accounts.numbers()[0]
    bodies = {
        COUNT: {"bound_from": EPOCH},
        LIST: {"bound_from": EPOCH},
        UNBIND: {"bound_before": EPOCH},
        ACTION: {"account_ref": platform.accounts.bound_to(number)[0].account_ref, "action": "freeze"},
    }
    seen = set()
    for _ in range(12):
        response = call(hub, platform, operation, number=number, **bodies[operation])
        assert response.status_code == 200
        seen.add(response.content)
        with pytest.raises(ValidationError):
            protocol.ANSWER_TYPES[operation].model_validate_json(response.content)
    assert len(seen) >= 3, "several kinds of malformed answer"


def test_latency_delays_every_answer(fleet: PlatformFleet, hub: HubSigner) -> None:
    kuaishou = fresh(fleet, "KUAISHOU", Knobs(latency_ms=(150, 200)))
    started = time.perf_counter()
    assert call(hub, kuaishou, COUNT, number=kuaishou.accounts.numbers()[0], bound_from=EPOCH).status_code == 200
    assert time.perf_counter() - started >= 0.15


def test_a_hanging_call_outlasts_the_callers_timeout_and_a_retry_then_runs(
    fleet: PlatformFleet, hub: HubSigner
) -> None:
    weibo = fresh(fleet, "WEIBO", Knobs(hang_rate=1.0, hang_seconds=3))
    body = json.dumps({"task_id": task(), "number": weibo.accounts.numbers()[0], "bound_from": EPOCH}).encode()
    with pytest.raises(httpx.ReadTimeout):
        hub.post(weibo.base_url, weibo.code, COUNT, body, timeout=0.3)
    weibo.knobs.hang_rate = 0.0
    assert hub.post(weibo.base_url, weibo.code, COUNT, body).status_code == 200


def test_an_async_platform_accepts_then_reports_a_signed_answer(
    fleet: PlatformFleet, hub: HubSigner, receiver: tuple[CallbackReceiver, str]
) -> None:
    app, _ = receiver
    toutiao = fresh(fleet, "TOUTIAO", Knobs(async_rate=1.0, callback_delay_ms=50))
    number, task_id = toutiao.accounts.numbers()[0], task()
    accepted = call(hub, toutiao, COUNT, task_id=task_id, number=number, bound_from=EPOCH)
    assert accepted.status_code == 202 and accepted.json() == {"accepted": True}

    path = protocol.callback_path(task_id)
    deadline = time.monotonic() + 5
    while not [r for r in app.received if r.path == path]:
        assert time.monotonic() < deadline, "no callback arrived"
        time.sleep(0.02)
    [callback] = [r for r in app.received if r.path == path]
    keys = protocol.key_set({"keys": [toutiao.public_jwk]})
    token = callback.headers[protocol.SIGNATURE_HEADER.lower()]
    protocol.verify(token, keys, audience=protocol.HUB_ISSUER, issuer=toutiao.code, path=path, body=callback.body)
    answer = CountAnswer.model_validate(CallbackBody.model_validate_json(callback.body).answer)
    assert answer.counts[0].count == len(toutiao.accounts.bound_to(number))


def test_a_stopped_platform_refuses_connections_and_comes_back_on_its_port(
    fleet: PlatformFleet, hub: HubSigner
) -> None:
    xiaomi = fresh(fleet, "XIAOMI")
    port, number = xiaomi.port, xiaomi.accounts.numbers()[0]
    xiaomi.stop()
    assert not xiaomi.is_up
    with pytest.raises(httpx.ConnectError):
        call(hub, xiaomi, COUNT, number=number, bound_from=EPOCH)
    xiaomi.start()
    assert xiaomi.port == port
    assert call(hub, xiaomi, COUNT, number=number, bound_from=EPOCH).status_code == 200


def test_a_flapping_platform_is_down_and_up_in_turn(fleet: PlatformFleet, hub: HubSigner) -> None:
    dianping = fresh(fleet, "DIANPING", Knobs(flap=(0.3, 0.3)))
    number = dianping.accounts.numbers()[0]
    outcomes: set[str] = set()
    deadline = time.monotonic() + 3
    while outcomes != {"up", "down"} and time.monotonic() < deadline:
        try:
            call(hub, dianping, COUNT, number=number, bound_from=EPOCH)
            outcomes.add("up")
        except httpx.ConnectError:
            outcomes.add("down")
        time.sleep(0.05)
    dianping.stop()
    assert outcomes == {"up", "down"}


def test_twenty_synthetic_platforms_start_quickly_and_answer(
    tenures: dict[str, list[Tenure]], hub: HubSigner, receiver: tuple[CallbackReceiver, str]
) -> None:
    extra: Sequence[EnterpriseEntry] = synthetic_enterprises(20)
    assert [e.code for e in extra[:2]] == ["SIM01", "SIM02"]
    with PlatformFleet(hub_url=receiver[1], hub_keys=hub.keys, tenures=tenures, today=LEDGER.today) as sims:
        started = time.perf_counter()
        platforms = sims.add_all(extra)
        assert time.perf_counter() - started < 10
        assert len({p.port for p in platforms}) == 20
        for platform in platforms:
            number = platform.accounts.numbers()[0]
            answer = CountAnswer.model_validate_json(
                call(hub, platform, COUNT, number=number, bound_from=EPOCH).content
            )
            assert [c.app for c in answer.counts] == [platform.code.lower()]
