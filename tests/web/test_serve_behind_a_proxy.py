"""`tongcha serve` behind a reverse proxy: a citizen's limits follow the address the proxy
forwards, when the proxy is one the hub was told to believe (``FORWARDED_ALLOW_IPS``),
and never an address anybody else writes in the header."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

PHONE = "+8613800000077"


@contextmanager
def served(tmp_path: Path, **env: str) -> Iterator[str]:
    """`tongcha serve` on a free loopback port over a fresh SQLite file."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TONGCHA_") and k != "FORWARDED_ALLOW_IPS"}
    environ.update(TONGCHA_DATABASE_URL=f"sqlite:///{tmp_path / 'hub.db'}", **env)
    tongcha = str(Path(sys.executable).with_name("tongcha"))
    subprocess.run([tongcha, "db", "upgrade"], env=environ, check=True, capture_output=True, timeout=60)
    server = subprocess.Popen(
        [tongcha, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "tongcha serve did not start"
            time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(10)


def ask(url: str, forwarded_for: str) -> int:
    r = httpx.post(
        f"{url}/v1/verifications",
        json={"phone": PHONE, "id_last6": "12345X"},
        headers={"x-forwarded-for": forwarded_for},
    )
    return r.status_code


@pytest.mark.parametrize(
    ("believed", "expected"),
    [
        # The proxy on the same host (the default): two citizens behind it, each with
        # their own limits.
        (None, [202, 429, 202]),
        # A proxy somewhere else is believed; this caller is not it, so whatever it
        # writes in the header, it is one client.
        ("192.0.2.1", [202, 429, 429]),
    ],
    ids=["proxy-on-this-host", "header-from-an-unknown-caller"],
)
def test_a_citizens_limits_follow_the_forwarded_address_only_from_a_believed_proxy(
    tmp_path: Path, believed: str | None, expected: list[int]
) -> None:
    env = {} if believed is None else {"FORWARDED_ALLOW_IPS": believed}
    with served(tmp_path, **env) as url:
        # The same client asks twice within the minute, then another client once.
        assert [ask(url, "203.0.113.7"), ask(url, "203.0.113.7"), ask(url, "198.51.100.9")] == expected
