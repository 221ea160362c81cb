"""The trust list (who may sign events, with which keys, for which divisions) and a party's own keys.

The trust list is configuration (``TRUST_LIST_FILE``, YAML), never learned from events: it names
the exchange's event-signing keys and, per division, the keys of the registry trusted for it (its
event-signing keys, the X25519 keys notifications to it are encrypted to, and the one URL its
certificate-signing keys may be fetched from). Every key has a validity window, so a key can be
rotated with overlap: the new one is listed before it is used, the old one stays listed until
nothing signed with it is still in flight.

A party's private keys (``EVENT_KEYS_FILE``, YAML, from a Kubernetes Secret in production) are
kept apart from the list: the list is public, the keys file is not.
"""

from __future__ import annotations

import datetime as dt
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import yaml
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.ed25519 import Signer, Verifier
from shared.signing import b64u_decode

EXCHANGE = "exchange"  # the party name of the national exchange (events with source "/exchange")
VERIFICATION = "verification"  # the verification service (its disclosure events, source "/verification")
Party = str  # "exchange", "verification" or a six-digit division code


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PublicKey(_Frozen):
    """A public key with the window in which it may be used."""

    kid: str = Field(min_length=1, max_length=100)
    public_key: str = Field(description="base64url of the 32 raw key bytes")
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None

    @field_validator("public_key")
    @classmethod
    def _raw_32(cls, value: str) -> str:
        if len(b64u_decode(value)) != 32:
            raise ValueError("public_key must be base64url of 32 raw bytes")
        return value

    @property
    def raw(self) -> bytes:
        return b64u_decode(self.public_key)

    def valid_at(self, when: dt.datetime) -> bool:
        return (self.not_before is None or self.not_before <= when) and (
            self.not_after is None or when <= self.not_after
        )


class DivisionTrust(_Frozen):
    signing_keys: list[PublicKey] = []
    encryption_keys: list[PublicKey] = []
    # Where this division's certificate-signing keys (JWKS) are published: the only source the
    # verification service takes them from. https outside the cluster (see ``bound_key_url``).
    key_url: str | None = None


class ExchangeTrust(_Frozen):
    signing_keys: list[PublicKey] = []


class TrustList(_Frozen):
    """The whole list; ``signer`` finds the party a key id speaks for."""

    exchange: ExchangeTrust = ExchangeTrust()
    # The verification service signs only the disclosures it reports (a certificate was checked).
    verification: ExchangeTrust = ExchangeTrust()
    divisions: dict[str, DivisionTrust] = {}

    @field_validator("divisions")
    @classmethod
    def _division_codes(cls, value: dict[str, DivisionTrust]) -> dict[str, DivisionTrust]:
        for code in value:
            if not (len(code) == 6 and code.isdigit()):
                raise ValueError(f"divisions: {code[:20]!r} is not a six-digit division code")
        return value

    @cached_property
    def _signers(self) -> dict[str, tuple[Party, PublicKey, Verifier]]:
        out: dict[str, tuple[Party, PublicKey, Verifier]] = {}
        parties: list[tuple[Party, list[PublicKey]]] = [
            (EXCHANGE, self.exchange.signing_keys),
            (VERIFICATION, self.verification.signing_keys),
        ]
        parties += [(code, d.signing_keys) for code, d in self.divisions.items()]
        for party, keys in parties:
            for key in keys:
                if key.kid in out:
                    raise ValueError(f"trust list: kid {key.kid!r} is listed twice")
                out[key.kid] = (party, key, Verifier(key.raw))
        return out

    def signer(self, kid: str) -> tuple[Party, PublicKey, Verifier] | None:
        """The party a signing key speaks for, the key's entry and the key itself."""
        return self._signers.get(kid)

    def encryption_key(self, division: str, when: dt.datetime) -> PublicKey | None:
        """The newest encryption key of a division usable at ``when``."""
        d = self.divisions.get(division)
        usable = [k for k in (d.encryption_keys if d else []) if k.valid_at(when)]
        return max(usable, key=_newest) if usable else None

    def key_urls(self) -> dict[str, str]:
        """Division -> the URL of its certificate-signing keys, for divisions that name one."""
        return {code: d.key_url for code, d in self.divisions.items() if d.key_url}


def _newest(key: PublicKey) -> dt.datetime:
    return key.not_before or dt.datetime.min.replace(tzinfo=dt.UTC)


def load_trust_list(path: str | Path) -> TrustList:
    trust = TrustList.model_validate(yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {})
    _ = trust._signers  # duplicate kids are refused at load, not at the first event
    return trust


class PrivateKey(_Frozen):
    """One of this party's private keys (signing or encryption), with its validity."""

    party: str = Field(description='"exchange", "verification" or a division code')
    kid: str
    private_key: str = Field(description="base64url of the 32 raw key bytes")
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    use: Literal["sign", "encrypt"] = "sign"


class Keyring(_Frozen):
    """This process's own keys (the contents of ``EVENT_KEYS_FILE``)."""

    keys: list[PrivateKey] = []

    def signing_key(self, party: Party, when: dt.datetime) -> tuple[str, Signer] | None:
        """The newest signing key of ``party`` valid at ``when``."""
        usable = [k for k in self.keys if k.use == "sign" and k.party == party and _valid(k, when)]
        if not usable:
            return None
        best = max(usable, key=lambda k: k.not_before or dt.datetime.min.replace(tzinfo=dt.UTC))
        return best.kid, _ed25519(best.private_key)

    def decryption_keys(self, division: str) -> dict[str, X25519PrivateKey]:
        """Every encryption key of a division this process holds, by kid (old ones still decrypt)."""
        return {
            k.kid: _x25519(k.private_key) for k in self.keys if k.use == "encrypt" and k.party == division
        }

    def parties(self) -> set[Party]:
        return {k.party for k in self.keys if k.use == "sign"}


@lru_cache(maxsize=64)
def _ed25519(private_key: str) -> Signer:
    """A signer, made once: making one derives its public half (a scalar multiplication)."""
    return Signer(b64u_decode(private_key))


@lru_cache(maxsize=64)
def _x25519(private_key: str) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(b64u_decode(private_key))


def _valid(key: PrivateKey, when: dt.datetime) -> bool:
    return (key.not_before is None or key.not_before <= when) and (
        key.not_after is None or when <= key.not_after
    )


def load_keyring(path: str | Path) -> Keyring:
    return Keyring.model_validate(yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {})


@lru_cache(maxsize=8)
def keyring_of(path: str | None) -> Keyring:
    """This process's keys, read once; none configured holds none."""
    return load_keyring(path) if path else Keyring()


def bound_key_url(url: str, environment: str) -> str:
    """A key URL as the verification service may use it: https, or http only inside the cluster
    (a dotless service name, ``*.svc`` / ``*.svc.cluster.local``) or, in development and tests,
    on the loopback interface."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme == "https":
        return url
    inside = "." not in host or host.endswith((".svc", ".svc.cluster.local"))
    loopback = host in ("127.0.0.1", "localhost", "::1") and environment != "production"
    if parts.scheme == "http" and (inside or loopback):
        return url
    raise ValueError(f"key URL of {host or 'an unnamed host'} must be https outside the cluster")
