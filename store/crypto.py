"""Encryption of credentials at rest.

Each ciphertext names the key that made it, so the server key can rotate: new
writes use the current key while older rows still decrypt until they are
re-encrypted. Ciphertexts are bound to their row through associated data, so a
ciphertext copied onto another connection does not decrypt there.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "enc:v1"
_NONCE_BYTES = 12


class DecryptionError(Exception):
    """A ciphertext could not be opened: unknown key id, wrong row, or tampering."""


def derive_key(secret: bytes, purpose: str) -> bytes:
    """A 32-byte key for one purpose, so no two uses of the server secret share a key."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(secret)


def _derive(secret: bytes) -> bytes:
    return derive_key(secret, "companion credentials v1")


class SecretBox:
    """Seals and opens small secrets with AES-256-GCM under a ring of keys."""

    def __init__(self, secrets: list[bytes]) -> None:
        if not secrets:
            raise ValueError("SecretBox needs at least one key")
        self._ring: dict[str, AESGCM] = {}
        self.current_key_id = ""
        for index, secret in enumerate(secrets):
            key = _derive(secret)
            key_id = hashlib.sha256(key).hexdigest()[:12]
            self._ring.setdefault(key_id, AESGCM(key))
            if index == 0:
                self.current_key_id = key_id

    def seal(self, plaintext: bytes, *, context: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._ring[self.current_key_id].encrypt(nonce, plaintext, context.encode())
        body = base64.urlsafe_b64encode(nonce + sealed).decode()
        return f"{PREFIX}:{self.current_key_id}:{body}"

    def open(self, token: str, *, context: str) -> bytes:
        try:
            prefix_a, prefix_b, key_id, body = token.split(":", 3)
        except ValueError:
            raise DecryptionError("not a sealed value") from None
        if f"{prefix_a}:{prefix_b}" != PREFIX:
            raise DecryptionError("not a sealed value")
        cipher = self._ring.get(key_id)
        if cipher is None:
            raise DecryptionError(f"sealed under key {key_id}, which this server does not hold")
        raw = base64.urlsafe_b64decode(body)
        try:
            return cipher.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode())
        except InvalidTag:
            raise DecryptionError("sealed value failed authentication") from None

    def seal_json(self, value: Any, *, context: str) -> str:
        return self.seal(json.dumps(value, separators=(",", ":")).encode(), context=context)

    def open_json(self, token: str, *, context: str) -> Any:
        return json.loads(self.open(token, context=context))

    def key_id_of(self, token: str) -> str:
        return token.split(":", 3)[2]

    def is_current(self, token: str) -> bool:
        return self.key_id_of(token) == self.current_key_id
