"""RSA PKCS#1 v1.5 with SHA-256, base64 signatures: Alipay's RSA2 and WeChat Pay v3 use the same,
and the same rule for the keys they are configured with."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import TypeVar

from cryptography.exceptions import InvalidSignature as BadRsaSignature
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from heyon_site.config import MissingSetting

K = TypeVar("K", rsa.RSAPrivateKey, rsa.RSAPublicKey)


def checked_key(load: Callable[[], object], kind: type[K], name: str, what: str) -> K:
    """The key ``load`` reads from the setting ``name`` when it is ``kind`` of 2048 bits or more;
    otherwise MissingSetting naming the variable. ``from None``: no library text about the value
    reaches the message. A MissingSetting from ``load`` itself passes through as it is."""
    try:
        key = load()
    except MissingSetting:
        raise
    except (ValueError, TypeError, UnicodeEncodeError, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, kind) or key.key_size < 2048:
        raise MissingSetting(f"{name} is not {what} of 2048 bits or more (PEM)") from None
    return key


def sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode("ascii")


def verify(key: rsa.RSAPublicKey, message: bytes, signature: str) -> bool:
    """False for a wrong signature and for one that is not even base64: both mean "not theirs"."""
    try:
        key.verify(base64.b64decode(signature, validate=True), message, padding.PKCS1v15(), hashes.SHA256())
    except (binascii.Error, ValueError, BadRsaSignature):
        return False
    return True
