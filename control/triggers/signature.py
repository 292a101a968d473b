"""The webhook signature: HMAC-SHA256 of the raw body with a project secret, sent as
`X-FlowForge-Signature: sha256=<hex>`.

With `X-FlowForge-Timestamp: <unix seconds>` the MAC covers `<timestamp>.<body>`, and a
delivery whose timestamp is more than five minutes away from the server's clock is refused,
so a captured request cannot be replayed later (and within the window, the same signed
request is accepted once: see `WebhookServer`).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Final

SIGNATURE_HEADER: Final = "X-FlowForge-Signature"
TIMESTAMP_HEADER: Final = "X-FlowForge-Timestamp"
MAX_AGE_S: Final = 300
_PREFIX: Final = "sha256="


class SignatureRejected(Exception):
    """The delivery's signature or timestamp is missing or wrong; the message says which."""


def signed_bytes(body: bytes, timestamp: str | None) -> bytes:
    return body if timestamp is None else timestamp.encode("ascii") + b"." + body


def sign(secret: str, body: bytes, timestamp: str | None = None) -> str:
    """The `X-FlowForge-Signature` value for `body` (what a sender computes)."""
    mac = hmac.new(secret.encode("utf-8"), signed_bytes(body, timestamp), hashlib.sha256)
    return _PREFIX + mac.hexdigest()


def check_signature(
    secret: str,
    secret_name: str,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    now: datetime,
) -> None:
    """Raise SignatureRejected unless `signature` is the MAC of this delivery and its
    timestamp (when given) is within MAX_AGE_S of `now`."""
    if not signature:
        raise SignatureRejected(
            f"missing {SIGNATURE_HEADER} header: this webhook takes only deliveries signed "
            f"with the project secret {secret_name!r} (sha256=<hex HMAC-SHA256 of the body>)"
        )
    if not signature.startswith(_PREFIX):
        raise SignatureRejected(f"{SIGNATURE_HEADER} must read sha256=<hex>")
    if timestamp is not None:
        if not timestamp.isdigit():
            raise SignatureRejected(f"{TIMESTAMP_HEADER} must be whole unix seconds")
        age = now.timestamp() - int(timestamp)
        if abs(age) > MAX_AGE_S:
            raise SignatureRejected(
                f"{TIMESTAMP_HEADER} is {int(abs(age))} s {'old' if age > 0 else 'ahead'}; "
                f"deliveries more than {MAX_AGE_S} s from the server's clock are refused "
                "(replay protection): sign a fresh delivery"
            )
    expected = sign(secret, body, timestamp)
    if not hmac.compare_digest(expected.encode("ascii"), signature.strip().lower().encode()):
        what = f"{TIMESTAMP_HEADER} + '.' + body" if timestamp is not None else "the raw body"
        raise SignatureRejected(
            f"{SIGNATURE_HEADER} does not match: sign {what} with HMAC-SHA256 and the "
            f"project secret {secret_name!r}"
        )


__all__ = [
    "MAX_AGE_S",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "SignatureRejected",
    "check_signature",
    "sign",
    "signed_bytes",
]
