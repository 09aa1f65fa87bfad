"""The operator manages the platform registry and the hub's keys over the operator API."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import bearer
from tongcha.kit.errors import Conflict, InvalidArgument
from tongcha.ledger.models import Carrier
from tongcha.ledger.repository import carrier_by_code
from tongcha.parties import add_carrier
from tongcha.platforms import service
from tongcha.platforms.models import Platform
from tongcha.sdk import protocol

BAIDU = {
    "code": "BAIDU",
    "name": "Baidu",
    "name_zh": "百度",
    "account_model": "unified",
    "base_url": "http://127.0.0.1:9/tongcha-base/",
    "apps": [
        {"code": "netdisk", "name_zh": "百度网盘", "name_en": "Baidu Netdisk"},
        {"code": "tieba", "name_zh": "百度贴吧", "name_en": "Baidu Tieba"},
    ],
}


def test_operator_adds_an_enterprise_with_apps_and_gets_a_working_credential(
    client: TestClient, operator: dict[str, str]
) -> None:
    r = client.post("/operator/v1/platforms", json=BAIDU, headers=operator)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["account_model"] == "unified"
    assert body["base_url"] == "http://127.0.0.1:9/tongcha-base"
    assert [a["code"] for a in body["apps"]] == ["netdisk", "tieba"]
    # the credential it was given works for checks at once
    check = client.get(
        "/platform/v1/reassignments/+8613800138000", params={"since": "2020-01-01"}, headers=bearer(body["credential"])
    )
    assert check.status_code == 200


def test_the_same_code_twice_is_a_conflict(client: TestClient, operator: dict[str, str]) -> None:
    assert client.post("/operator/v1/platforms", json=BAIDU, headers=operator).status_code == 201
    r = client.post("/operator/v1/platforms", json=BAIDU, headers=operator)
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "CONFLICT"


def test_bad_registry_input_is_a_400(client: TestClient, operator: dict[str, str]) -> None:
    for bad in (
        {**BAIDU, "code": "百度"},
        {**BAIDU, "account_model": "shared"},
        {**BAIDU, "base_url": "ftp://example"},
        {**BAIDU, "apps": [{"code": "x"}]},
    ):
        r = client.post("/operator/v1/platforms", json=bad, headers=operator)
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["error"]["code"] == "INVALID_ARGUMENT"
    assert client.get("/operator/v1/platforms/BAIDU", headers=operator).status_code == 404


def test_a_platform_code_that_is_not_in_capitals_is_a_400(client: TestClient, operator: dict[str, str]) -> None:
    # "acme2" was registered beside "ACME2": two platforms that read the same.
    assert client.post("/operator/v1/platforms", json={**BAIDU, "code": "ACME2"}, headers=operator).status_code == 201
    for code in ("acme2", "Acme2", "-ACME", "ACME 2", "ＡＣＭＥ"):
        r = client.post("/operator/v1/platforms", json={**BAIDU, "code": code}, headers=operator)
        assert r.status_code == 400, (code, r.text)
        assert r.json()["error"]["code"] == "INVALID_ARGUMENT"
        assert "capital letters" in r.json()["error"]["message"]
    codes = [p["code"] for p in client.get("/operator/v1/platforms", headers=operator).json()]
    assert "ACME2" in codes and "acme2" not in codes
    for code in ("58TONGCHENG", "CHINA_BROADNET", "MVNO-1"):
        r = client.post("/operator/v1/platforms", json={**BAIDU, "code": code}, headers=operator)
        assert r.status_code == 201, (code, r.text)


def test_a_code_registered_before_the_rule_is_taken_in_capitals_too(
    client: TestClient, operator: dict[str, str], sessions: sessionmaker[Session], clock: Any
) -> None:
    with sessions() as session, session.begin():
        session.add(
            Platform(
                code="acme2",
                name="Acme",
                account_model="independent",
                status="active",
                timeout_ms=3000,
                max_concurrency=32,
                sla_overrides={},
                created_at=clock.now(),
            )
        )
        session.add(Carrier(code="cmcc2", name="Old", quarantine_days=90, created_at=clock.now()))
    r = client.post("/operator/v1/platforms", json={**BAIDU, "code": "ACME2"}, headers=operator)
    assert r.status_code == 409, r.text
    assert r.json()["error"]["message"] == "a platform with code 'acme2' exists already"
    # the old code keeps working, and reads the same in capitals
    assert client.get("/operator/v1/platforms/acme2", headers=operator).status_code == 200
    assert client.get("/operator/v1/platforms/ACME2", headers=operator).json()["code"] == "acme2"
    with sessions() as session, pytest.raises(Conflict, match="'cmcc2'"):
        add_carrier(session, "CMCC2", "New", 90, clock.now())


def test_a_carrier_code_that_is_not_in_capitals_is_refused(sessions: sessionmaker[Session], clock: Any) -> None:
    with sessions() as session, session.begin():
        add_carrier(session, "CMCC2", "China Mobile", 90, clock.now())
        with pytest.raises(InvalidArgument, match="capital letters"):
            add_carrier(session, "cmcc2", "China Mobile", 90, clock.now())


def test_a_code_typed_in_small_letters_finds_the_platform(client: TestClient, operator: dict[str, str]) -> None:
    client.post("/operator/v1/platforms", json=BAIDU, headers=operator)
    got = client.get("/operator/v1/platforms/baidu", headers=operator)
    assert got.status_code == 200 and got.json()["code"] == "BAIDU", got.text
    r = client.patch("/operator/v1/platforms/Baidu", json={"timeout_ms": 900}, headers=operator)
    assert r.status_code == 200 and r.json()["timeout_ms"] == 900, r.text
    assert client.get("/operator/v1/platforms/bidu", headers=operator).status_code == 404


def test_a_carrier_code_typed_in_small_letters_finds_the_carrier(sessions: sessionmaker[Session], clock: Any) -> None:
    with sessions() as session, session.begin():
        add_carrier(session, "CMCC2", "China Mobile", 90, clock.now())
        found = carrier_by_code(session, "cmcc2")
        assert found is not None and found.code == "CMCC2"


def test_registry_text_with_a_nul_character_is_a_400(client: TestClient, operator: dict[str, str]) -> None:
    # PostgreSQL cannot store a NUL: these used to answer 500 there (and be stored on SQLite).
    app = {"code": "maps", "name_zh": "地图", "name_en": "Maps"}
    for bad in (
        {**BAIDU, "name": "Bai\x00du"},
        {**BAIDU, "name_zh": "百\x00度"},
        {**BAIDU, "base_url": "http://bai\x00du.example"},
        {**BAIDU, "apps": [{**app, "name_en": "Ma\x00ps"}]},
    ):
        r = client.post("/operator/v1/platforms", json=bad, headers=operator)
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["error"]["code"] == "INVALID_ARGUMENT"
    assert client.post("/operator/v1/platforms", json=BAIDU, headers=operator).status_code == 201
    r = client.patch("/operator/v1/platforms/BAIDU", json={"base_url": "http://a\x00.example"}, headers=operator)
    assert r.status_code == 400, r.text
    r = client.post("/operator/v1/platforms/BAIDU/apps", json={**app, "name_zh": "地\x00图"}, headers=operator)
    assert r.status_code == 400, r.text
    jwk = {**protocol.public_jwk(protocol.new_signing_key("k")), "kid": "k\x00"}
    r = client.post("/operator/v1/platforms/BAIDU/keys", json={"jwk": jwk}, headers=operator)
    assert r.status_code == 400, r.text
    got = client.get("/operator/v1/platforms/BAIDU", headers=operator).json()
    assert (got["base_url"], [a["code"] for a in got["apps"]], got["keys"]) == (
        "http://127.0.0.1:9/tongcha-base",
        ["netdisk", "tieba"],
        [],
    )


def test_registry_needs_an_operator_credential(client: TestClient, parties: dict[str, str]) -> None:
    assert client.get("/operator/v1/platforms").status_code == 401
    r = client.get("/operator/v1/platforms", headers=bearer(parties["JD"]))
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "UNAUTHENTICATED"
    # It said "a operator credential".
    assert r.json()["error"]["message"] == "this endpoint needs an operator credential"


def test_a_carrier_or_platform_endpoint_names_its_credential(client: TestClient, parties: dict[str, str]) -> None:
    r = client.post("/carrier/v1/events", json=[], headers=bearer(parties["JD"]))
    assert r.json()["error"]["message"] == "this endpoint needs a carrier credential"
    r = client.post("/platform/v1/reassignments:batch", content=b"", headers=bearer(parties["CMCC"]))
    assert r.json()["error"]["message"] == "this endpoint needs a platform credential"


def test_operator_suspends_and_tunes_a_platform(client: TestClient, operator: dict[str, str]) -> None:
    client.post("/operator/v1/platforms", json=BAIDU, headers=operator)
    r = client.patch(
        "/operator/v1/platforms/BAIDU",
        json={"status": "suspended", "timeout_ms": 800, "max_concurrency": 4, "sla_overrides": {"unbind": 3}},
        headers=operator,
    )
    assert r.status_code == 200, r.text
    got = client.get("/operator/v1/platforms/BAIDU", headers=operator).json()
    assert (got["status"], got["timeout_ms"], got["max_concurrency"]) == ("suspended", 800, 4)
    assert got["sla_overrides"] == {"unbind": 3}
    bad = client.patch("/operator/v1/platforms/BAIDU", json={"timeout_ms": 5}, headers=operator)
    assert bad.status_code == 400


def test_a_base_url_sent_as_null_is_removed_and_a_field_left_out_is_kept(
    client: TestClient, operator: dict[str, str]
) -> None:
    # null answered 200 and changed nothing.
    client.post("/operator/v1/platforms", json=BAIDU, headers=operator)
    client.patch("/operator/v1/platforms/BAIDU", json={"sla_overrides": {"unbind": 3}}, headers=operator)
    r = client.patch("/operator/v1/platforms/BAIDU", json={"base_url": None}, headers=operator)
    assert r.status_code == 200, r.text
    got = client.get("/operator/v1/platforms/BAIDU", headers=operator).json()
    assert got["base_url"] is None
    assert got["sla_overrides"] == {"unbind": 3}
    r = client.patch("/operator/v1/platforms/BAIDU", json={"sla_overrides": None}, headers=operator)
    assert r.status_code == 200, r.text
    assert r.json()["sla_overrides"] == {}


def test_a_field_that_cannot_be_empty_sent_as_null_is_a_400(client: TestClient, operator: dict[str, str]) -> None:
    client.post("/operator/v1/platforms", json=BAIDU, headers=operator)
    for name in ("status", "timeout_ms", "max_concurrency"):
        r = client.patch("/operator/v1/platforms/BAIDU", json={"base_url": None, name: None}, headers=operator)
        assert r.status_code == 400, (name, r.text)
        assert r.json()["error"]["code"] == "INVALID_ARGUMENT"
        assert r.json()["error"]["message"].startswith(f"{name} cannot be null")
    # nothing of a refused change was applied
    got = client.get("/operator/v1/platforms/BAIDU", headers=operator).json()
    assert (got["base_url"], got["status"], got["timeout_ms"]) == ("http://127.0.0.1:9/tongcha-base", "active", 3000)


def test_an_sla_for_a_kind_that_does_not_exist_is_a_400(client: TestClient, operator: dict[str, str]) -> None:
    # A misspelt kind used to be stored with a 200 and never apply.
    client.post("/operator/v1/platforms", json=BAIDU, headers=operator)
    r = client.patch("/operator/v1/platforms/BAIDU", json={"sla_overrides": {"unbnd": 3}}, headers=operator)
    assert r.status_code == 400, r.text
    assert "unbind" in r.json()["error"]["message"]
    assert client.get("/operator/v1/platforms/BAIDU", headers=operator).json()["sla_overrides"] == {}


@pytest.mark.parametrize("days", [True, False, "3", 2.0, 2.5, 0, 31, -1, None, [3]])
def test_an_sla_that_is_not_a_whole_number_of_working_days_in_range_is_a_400(
    client: TestClient, operator: dict[str, str], days: Any
) -> None:
    # {"inquiry": true} used to be stored as 1 working day, and "3" as 3.
    client.post("/operator/v1/platforms", json=BAIDU, headers=operator)
    r = client.patch("/operator/v1/platforms/BAIDU", json={"sla_overrides": {"inquiry": days}}, headers=operator)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "INVALID_ARGUMENT"
    assert any(d["field"].endswith("sla_overrides.inquiry") for d in error["details"]), error
    assert client.get("/operator/v1/platforms/BAIDU", headers=operator).json()["sla_overrides"] == {}


def test_the_widest_and_narrowest_slas_are_kept(client: TestClient, operator: dict[str, str]) -> None:
    client.post("/operator/v1/platforms", json=BAIDU, headers=operator)
    r = client.patch(
        "/operator/v1/platforms/BAIDU", json={"sla_overrides": {"inquiry": 1, "unbind": 30}}, headers=operator
    )
    assert r.status_code == 200, r.text
    assert r.json()["sla_overrides"] == {"inquiry": 1, "unbind": 30}


def test_the_service_refuses_a_bool_for_an_sla(sessions: sessionmaker[Session], clock: Any) -> None:
    # The command line and any other caller go through the service, not the API's schema.
    with sessions() as session, session.begin():
        service.add(session, service.PlatformSpec("ACME", "Acme"), clock.now())
        with pytest.raises(InvalidArgument) as refused:
            service.update(session, "ACME", service.PlatformUpdate(sla_overrides={"unbind": True}))
        assert refused.value.details == [
            {"field": "sla_overrides.unbind", "issue": "not a whole number of working days in range"}
        ]


def test_platform_keys_are_registered_public_only_and_retired(client: TestClient, operator: dict[str, str]) -> None:
    client.post("/operator/v1/platforms", json=BAIDU, headers=operator)
    key = protocol.new_signing_key("baidu-2026")
    private = dict(key.as_dict(private=True))
    refused = client.post("/operator/v1/platforms/BAIDU/keys", json={"jwk": private}, headers=operator)
    assert refused.status_code == 400
    assert "private" in refused.json()["error"]["message"]
    assert private["d"] not in refused.text  # the private part is not echoed
    ok = client.post("/operator/v1/platforms/BAIDU/keys", json={"jwk": protocol.public_jwk(key)}, headers=operator)
    assert ok.status_code == 201
    assert ok.json() == {"kid": "baidu-2026"}
    assert client.get("/operator/v1/platforms/BAIDU", headers=operator).json()["keys"] == ["baidu-2026"]
    gone = client.delete("/operator/v1/platforms/BAIDU/keys/baidu-2026", headers=operator)
    assert gone.status_code == 204
    assert client.get("/operator/v1/platforms/BAIDU", headers=operator).json()["keys"] == []
    again = client.delete("/operator/v1/platforms/BAIDU/keys/baidu-2026", headers=operator)
    assert again.status_code == 404


def test_garbage_jwk_is_a_400(client: TestClient, operator: dict[str, str]) -> None:
    client.post("/operator/v1/platforms", json=BAIDU, headers=operator)
    jwk: dict[str, Any]
    for jwk in ({"kty": "EC", "crv": "P-256", "x": "nope"}, {"keys": []}, {"kty": "oct"}):
        r = client.post("/operator/v1/platforms/BAIDU/keys", json={"jwk": jwk}, headers=operator)
        assert r.status_code == 400, (jwk, r.text)


def test_seed_registers_the_launch_enterprises_once(sessions: sessionmaker[Session], clock: Any) -> None:
    with sessions() as session, session.begin():
        added = service.seed(session, clock.now())
    assert {"TENCENT", "ALIBABA", "ALIPAY", "BAIDU", "KUAISHOU", "DOUYIN", "JD", "MEITUAN"} <= set(added)
    assert {"DIANPING", "WEIBO", "TOUTIAO", "XIAOMI"} <= set(added)
    with sessions() as session, session.begin():
        assert service.seed(session, clock.now()) == []
        baidu = service.get(session, "BAIDU")
        assert baidu.account_model == "unified"
        assert [a.code for a in service.apps_of(session, baidu.id)] == ["netdisk", "tieba"]
        alibaba = service.get(session, "ALIBABA")
        assert alibaba.account_model == "independent"
        assert [a.code for a in service.apps_of(session, alibaba.id)] == ["taobao", "xianyu", "dingtalk"]


def test_jwks_publishes_public_keys_and_rotation_keeps_the_old_one_until_retired(
    client: TestClient, operator: dict[str, str]
) -> None:
    first = client.get("/.well-known/jwks.json").json()["keys"]
    assert len(first) == 1
    assert "d" not in first[0]
    assert first[0]["kty"] == "EC"
    rotated = client.post("/operator/v1/hub-keys:rotate", headers=operator).json()
    assert len(rotated["live"]) == 2
    assert rotated["live"][0] == first[0]["kid"]
    state = client.app.state.hub  # type: ignore[attr-defined]
    state.keyring.reload()
    kids = [k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"]]
    assert kids == rotated["live"]
    assert state.keyring.signing_key().kid == rotated["live"][1]
    retired = client.post("/operator/v1/hub-keys:retire", headers=operator).json()
    assert retired["live"] == [rotated["live"][1]]
    assert retired["retired"] == [first[0]["kid"]]
    state.keyring.reload()
    assert [k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"]] == retired["live"]


def test_operator_adds_an_app_to_an_enterprise(client: TestClient, operator: dict[str, str]) -> None:
    client.post("/operator/v1/platforms", json={**BAIDU, "apps": []}, headers=operator)
    app = {"code": "wenku", "name_zh": "百度文库", "name_en": "Baidu Wenku"}
    r = client.post("/operator/v1/platforms/BAIDU/apps", json=app, headers=operator)
    assert r.status_code == 201, r.text
    assert [a["code"] for a in r.json()["apps"]] == ["wenku"]
    assert client.post("/operator/v1/platforms/BAIDU/apps", json=app, headers=operator).status_code == 409
    assert client.post("/operator/v1/platforms/NOPE/apps", json=app, headers=operator).status_code == 404
