"""How a citizen sees an unbind that took a platform several calls: one line per
platform, open while any call is, then a count, and never the accounts a listing named."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tongcha.platforms.fanout import Progress, TaskView
from tongcha.requests.api import request_out

NOW = datetime(2026, 11, 23, 4, tzinfo=UTC)
LISTED = {
    "accounts": [
        {"app": "jd", "account_ref": "b9", "display_name_masked": "李*", "bound_at": "2019-05-05T04:00:00Z"},
        {"app": "jd", "account_ref": "b8", "display_name_masked": "李*", "bound_at": "2019-06-05T04:00:00Z"},
    ]
}


def task(platform: str, state: str, answer: dict[str, Any] | None, error: str | None = None) -> TaskView:
    return TaskView(platform, platform, f"t_{platform}", state, 1, answer, "sync", error, None, NOW, "+8613800000003")


def unbind(*tasks: TaskView) -> dict[str, Any]:
    progress = Progress("r_1", "unbind", "open", {}, NOW, None, list(tasks), NOW)
    return request_out(progress).model_dump(mode="json")


def test_while_a_listings_unbinds_are_open_the_platform_is_pending_with_no_result() -> None:
    out = unbind(
        task("JD", "done", {"unbound": ["z1"], "kept": 4}),
        task("JD", "done", LISTED),
        task("JD", "pending", None),
        task("MEITUAN", "done", {"unbound": [], "kept": 0}),
    )
    assert [(p["platform"], p["state"], p["answer"]) for p in out["platforms"]] == [
        ("JD", "pending", None),
        ("MEITUAN", "done", {"unbound": 0, "kept": 0}),
    ]
    assert out["pending"] == ["JD"]
    assert "b9" not in str(out) and "李" not in str(out)


def test_once_all_are_final_the_platform_shows_a_count_and_what_it_refused() -> None:
    out = unbind(
        task("JD", "done", {"unbound": ["z1"], "kept": 4}),
        task("JD", "done", LISTED),
        task("JD", "done", {"outcome": "done"}),
        task("JD", "done", {"outcome": "refused", "reason": "frozen by a court order"}),
    )
    assert [(p["state"], p["answer"], p["error"]) for p in out["platforms"]] == [
        ("done", {"unbound": 2, "refused": 1}, None)
    ]
    assert "b9" not in str(out)


def test_a_call_that_failed_makes_the_platform_failed_with_its_error() -> None:
    out = unbind(
        task("JD", "done", {"unbound": [], "kept": 1}),
        task("JD", "failed", None, "gave_up"),
    )
    assert [(p["state"], p["answer"], p["error"]) for p in out["platforms"]] == [("failed", {"unbound": 0}, "gave_up")]
