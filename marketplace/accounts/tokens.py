"""Bearer secrets shared by API tokens and node tokens: `<prefix>.<secret>`, only a hash is stored."""

import hashlib
import hmac
import secrets
from dataclasses import dataclass


@dataclass(frozen=True)
class IssuedSecret:
    prefix: str
    plaintext: str  # shown once, never stored
    secret_hash: str


def secret_hash(secret: str) -> str:
    # Secrets are 256-bit random, so a fast hash is enough: no dictionary to attack.
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_issue(kind: str) -> IssuedSecret:
    prefix = kind + secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    return IssuedSecret(prefix=prefix, plaintext=f"{prefix}.{secret}", secret_hash=secret_hash(secret))


def secret_split(plaintext: str) -> tuple[str, str] | None:
    prefix, sep, secret = plaintext.strip().partition(".")
    if not sep or not prefix or not secret or len(prefix) > 12:
        return None
    return prefix, secret


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(secret_hash(secret), stored_hash)
