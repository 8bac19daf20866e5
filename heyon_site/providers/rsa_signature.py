"""RSA PKCS#1 v1.5 with SHA-256, base64 signatures: Alipay's RSA2 and WeChat Pay v3 use the same."""
from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidSignature as BadRsaSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode("ascii")


def verify(key: rsa.RSAPublicKey, message: bytes, signature: str) -> bool:
    """False for a wrong signature and for one that is not even base64: both mean "not theirs"."""
    try:
        key.verify(base64.b64decode(signature, validate=True), message, padding.PKCS1v15(), hashes.SHA256())
    except (binascii.Error, ValueError, BadRsaSignature):
        return False
    return True
