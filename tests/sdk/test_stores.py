"""Every TaskStore keeps the same promises; the SQLite one keeps them across a restart."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tongcha.sdk.stores import MemoryTaskStore, SqliteTaskStore, StoredAnswer, TaskRecord, TaskStore

NOW = 1_800_000_000.0
LEASE = 300.0
DONE = StoredAnswer(200, b'{"counts":[]}')

StoreFactory = Callable[[], TaskStore]


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    opened: list[TaskStore] = []

    def make() -> TaskStore:
        store: TaskStore = MemoryTaskStore() if request.param == "memory" else SqliteTaskStore(tmp_path / "tasks.db")
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def claim(store: TaskStore, task_id: str, fingerprint: str = "fp", now: float = NOW) -> TaskRecord | None:
    return asyncio.run(store.claim(task_id, fingerprint, now=now, lease_seconds=LEASE))


def test_every_store_follows_the_protocol(make_store: StoreFactory) -> None:
    assert isinstance(make_store(), TaskStore)


def test_the_first_claim_wins_and_later_ones_see_it_running(make_store: StoreFactory) -> None:
    store = make_store()
    assert claim(store, "t1") is None
    assert claim(store, "t1") == TaskRecord("fp", None)


def test_a_finished_task_gives_back_its_answer(make_store: StoreFactory) -> None:
    store = make_store()
    claim(store, "t1")
    asyncio.run(store.finish("t1", DONE))
    assert claim(store, "t1") == TaskRecord("fp", DONE)
    assert claim(store, "t1", fingerprint="other") == TaskRecord("fp", DONE)


def test_a_released_claim_can_be_claimed_again(make_store: StoreFactory) -> None:
    store = make_store()
    claim(store, "t1")
    asyncio.run(store.release("t1"))
    assert claim(store, "t1") is None


def test_release_never_forgets_a_finished_answer(make_store: StoreFactory) -> None:
    store = make_store()
    claim(store, "t1")
    asyncio.run(store.finish("t1", DONE))
    asyncio.run(store.release("t1"))
    assert claim(store, "t1") == TaskRecord("fp", DONE)


def test_a_claim_left_past_its_lease_is_taken_over_only_by_the_same_request(make_store: StoreFactory) -> None:
    store = make_store()
    claim(store, "t1")
    later = NOW + LEASE + 1
    assert claim(store, "t1", fingerprint="other", now=later) == TaskRecord("fp", None)
    assert claim(store, "t1", now=later) is None
    assert claim(store, "t1", now=later) == TaskRecord("fp", None), "taken over, so running again"


def test_a_token_id_is_accepted_once_until_it_expires(make_store: StoreFactory) -> None:
    store = make_store()

    def first_use(jti: str, now: float) -> bool:
        return asyncio.run(store.first_use_of_jti(jti, expires_at=NOW + 90, now=now))

    assert first_use("j1", NOW) is True
    assert first_use("j1", NOW + 10) is False
    assert first_use("j2", NOW + 10) is True
    assert first_use("j1", NOW + 91) is True, "an expired token is refused by its signature check, not here"


def test_sqlite_keeps_answers_and_token_ids_across_a_reopen(tmp_path: Path) -> None:
    store = SqliteTaskStore(tmp_path / "tasks.db")
    claim(store, "t1")
    asyncio.run(store.finish("t1", DONE))
    claim(store, "t2")
    asyncio.run(store.first_use_of_jti("j1", expires_at=NOW + 90, now=NOW))
    store.close()

    reopened = SqliteTaskStore(tmp_path / "tasks.db")
    assert claim(reopened, "t1") == TaskRecord("fp", DONE)
    assert claim(reopened, "t2") == TaskRecord("fp", None)
    assert asyncio.run(reopened.first_use_of_jti("j1", expires_at=NOW + 90, now=NOW + 1)) is False
    reopened.close()


def test_memory_store_forgets_the_oldest_tasks_beyond_its_limit() -> None:
    store = MemoryTaskStore(max_tasks=2)
    for task_id in ("t1", "t2", "t3"):
        claim(store, task_id)
    assert claim(store, "t1") is None
    assert claim(store, "t3") == TaskRecord("fp", None)
