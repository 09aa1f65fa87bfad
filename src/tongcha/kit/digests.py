"""Keyed digests of identity (DESIGN.md "Identity without hoarding identity").

The hub never keeps a name or an ID number: it keeps HMAC-SHA-256 digests under an
operator-held key, each prefixed with the key version (``k1:...``) so the key can rotate.
"""

from __future__ import annotations

import base64
import hmac
import unicodedata
from dataclasses import dataclass

from tongcha.kit.settings import Settings


def normalise_name(name: str) -> str:
    """NFKC, trimmed, inner whitespace collapsed: how a name is compared."""
    return " ".join(unicodedata.normalize("NFKC", name).split())


@dataclass(frozen=True, slots=True)
class Digester:
    key: bytes
    version: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Digester:
        return cls(settings.secret_key.get_secret_value().encode(), settings.secret_key_version)

    def _mac(self, purpose: bytes, value: bytes) -> str:
        mac = hmac.digest(self.key, purpose + value, "sha256")
        return f"k{self.version}:" + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def holder(self, id_number: str) -> str:
        """Groups every number held under one ID."""
        return self._mac(b"holder\x00", id_number.encode())

    def kyc(self, id_number: str, name: str) -> str:
        """ID number and name together: what full verification matches."""
        return self._mac(b"kyc\x00", f"{id_number}\x00{normalise_name(name)}".encode())

    def tail(self, number: int, id_number: str) -> str:
        """A phone number with the last six digits of its holder's ID."""
        return self._mac(b"tail\x00", f"{number}\x00{id_number[-6:]}".encode())

    def code(self, verification_id: str, code: str) -> str:
        """A one-time SMS code, bound to its verification."""
        return self._mac(b"code\x00", f"{verification_id}\x00{code}".encode())

    def client(self, address: str) -> str:
        """A client's network address, for rate limits without keeping addresses."""
        return self._mac(b"client\x00", address.encode())

    def number(self, number: int) -> str:
        """A phone number, for logs that must not list numbers in the clear."""
        return self._mac(b"number\x00", str(number).encode())
