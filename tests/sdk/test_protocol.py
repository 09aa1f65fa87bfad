"""Request signatures are standard compact JWS: what joserfc makes we accept, and back."""

from __future__ import annotations

import base64
import json
import time

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from tongcha.sdk import protocol

BODY = b'{"task_id":"t_1","number":"+8613800138000","bound_from":"2000-01-01T00:00:00+08:00"}'
PATH = "/tongcha/v1/bindings/count"


def claims(**extra: object) -> dict[str, object]:
    now = int(time.time())
    return {
        "iss": protocol.HUB_ISSUER,
        "aud": "JD",
        "iat": now,
        "exp": now + 60,
        "jti": "j-1",
        "htm": "POST",
        "htu": PATH,
        "bsh": protocol.body_hash(BODY),
        **extra,
    }


def verify(token: str, key: object) -> protocol.Verified:
    keys = protocol.key_set({"keys": [key.as_dict(private=False)]})  # type: ignore[attr-defined]
    return protocol.verify(token, keys, audience="JD", path=PATH, body=BODY, issuer=protocol.HUB_ISSUER)


def test_our_signatures_are_read_by_joserfc() -> None:
    key = protocol.new_signing_key("hub-1")
    token = protocol.sign(key, issuer=protocol.HUB_ISSUER, audience="JD", path=PATH, body=BODY)
    public = ECKey.import_key(protocol.public_jwk(key))
    decoded = jwt.decode(token, public, algorithms=["ES256"])
    assert decoded.header == {"alg": "ES256", "kid": "hub-1", "typ": protocol.TOKEN_TYPE}
    assert decoded.claims["aud"] == "JD" and decoded.claims["bsh"] == protocol.body_hash(BODY)


def test_joserfc_signatures_are_accepted() -> None:
    key = protocol.new_signing_key("hub-1")
    header = {"alg": "ES256", "kid": "hub-1", "typ": protocol.TOKEN_TYPE}
    token = jwt.encode(header, claims(), key, algorithms=["ES256"])
    assert verify(token, key).jti == "j-1"


def test_a_platform_may_sign_with_rsa() -> None:
    key = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"}, private=True)
    header = {"alg": "RS256", "kid": "rsa-1", "typ": protocol.TOKEN_TYPE}
    token = jwt.encode(header, claims(), key, algorithms=["RS256"])
    assert verify(token, key).kid == "rsa-1"


def _part(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda h, p, s: f"{h}.{p}.{s[:-4]}", id="short signature"),
        pytest.param(lambda h, p, s: f"{h}.{p}.{s}==", id="padded signature"),
        pytest.param(lambda h, p, s: f"{h}.{p}.{s[:10]}+/{s[12:]}", id="base64 not base64url"),
        pytest.param(lambda h, p, s: f"{h}.{_part(claims(aud='JD', jti='j-2'))}.{s}", id="claims swapped"),
        pytest.param(lambda h, p, s: f"{_part({'alg': 'none', 'kid': 'hub-1'})}.{p}.", id="alg none"),
        pytest.param(lambda h, p, s: f"{_part({'alg': 'HS256', 'kid': 'hub-1'})}.{p}.{s}", id="alg HS256"),
        pytest.param(
            lambda h, p, s: (
                f"{_part({'alg': 'ES256', 'kid': 'hub-1', 'typ': protocol.TOKEN_TYPE, 'crit': ['x']})}.{p}.{s}"
            ),
            id="unknown critical header",
        ),
        pytest.param(lambda h, p, s: f"{h}.{p}", id="two parts"),
    ],
)
def test_a_mangled_signature_is_refused(mangle: object) -> None:
    key = protocol.new_signing_key("hub-1")
    token = protocol.sign(key, issuer=protocol.HUB_ISSUER, audience="JD", path=PATH, body=BODY)
    header, payload, signature = token.split(".")
    with pytest.raises(protocol.SignatureError):
        verify(mangle(header, payload, signature), key)  # type: ignore[operator]


def test_a_signature_by_another_key_with_the_same_kid_is_refused() -> None:
    signer, published = protocol.new_signing_key("hub-1"), protocol.new_signing_key("hub-1")
    token = protocol.sign(signer, issuer=protocol.HUB_ISSUER, audience="JD", path=PATH, body=BODY)
    with pytest.raises(protocol.SignatureError, match="bad signature"):
        verify(token, published)
