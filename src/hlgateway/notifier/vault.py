"""Agent keys: found in what a chat types, sealed at rest, kept out of logs.

A chat connects an agent (API wallet) by sending its private key in a private
message. That key exists in the clear only in this process's memory, for as long
as it takes to check it, seal it and later sign with it:

- `find_key` spots anything shaped like a private key (64 hex digits, with or
  without `0x`) in any text, so that the message is deleted and never echoed,
  whatever command it came with, in any chat.
- `Vault` seals a key with AES-GCM (from `cryptography`) under the notifier's
  own 256-bit key (`HLGATEWAY_NOTIFIER_KEY`, or a file), bound to its chat,
  wallet and agent address as associated data: a sealed key copied to another
  row does not open. The database holds only `v1:` + base64(nonce + ciphertext).
- `RedactKeys` is a logging filter that replaces key-shaped text in every
  record (message, arguments, traceback) before any handler writes it.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_RE = re.compile(r"(?<![0-9a-fA-Fx])(?:0x)?([0-9a-fA-F]{64})(?![0-9a-fA-F])")
SEALED_PREFIX = "v1:"
REDACTED = "[redacted key]"


class VaultError(ValueError):
    """The notifier's key is missing or malformed, or a sealed key does not open.
    The message never contains key material."""


def find_key(text: str) -> str | None:
    """The first private-key-shaped string in `text`, as `0x` + lower-case hex."""
    found = KEY_RE.search(text)
    return None if found is None else "0x" + found.group(1).lower()


def redact(text: str) -> str:
    return KEY_RE.sub(REDACTED, text)


def parse_master_key(text: str) -> bytes:
    """32 bytes, given as 64 hex digits or as base64."""
    raw = text.strip()
    try:
        key = bytes.fromhex(raw.removeprefix("0x")) if len(raw) in (64, 66) else b""
    except ValueError:
        key = b""
    if not key:
        try:
            key = base64.b64decode(raw + "=" * (-len(raw) % 4), altchars=b"-_", validate=False)
        except (binascii.Error, ValueError):
            key = b""
    if len(key) != 32:
        raise VaultError("the notifier's key must be 32 bytes: 64 hex digits or base64")
    return key


def load_master_key(key: str | None, key_file: str | None) -> bytes | None:
    """From HLGATEWAY_NOTIFIER_KEY, else HLGATEWAY_NOTIFIER_KEY_FILE; None when neither."""
    if key:
        return parse_master_key(key)
    if key_file:
        try:
            return parse_master_key(Path(key_file).read_text())
        except OSError as exc:
            raise VaultError(f"cannot read the key file {key_file}: {exc.strerror}") from None
    return None


def new_master_key() -> str:
    """A fresh key, as `hlgateway notifier --new-key` prints it (base64)."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


class Vault:
    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != 32:
            raise VaultError("the notifier's key must be 32 bytes")
        self._aead = AESGCM(master_key)

    def seal(self, secret: str, bound_to: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, secret.encode(), bound_to.encode())
        return SEALED_PREFIX + base64.b64encode(nonce + sealed).decode()

    def open(self, sealed: str, bound_to: str) -> str:
        if not sealed.startswith(SEALED_PREFIX):
            raise VaultError("not a sealed key")
        try:
            blob = base64.b64decode(sealed[len(SEALED_PREFIX) :], validate=True)
            return self._aead.decrypt(blob[:12], blob[12:], bound_to.encode()).decode()
        except (binascii.Error, ValueError, InvalidTag):
            raise VaultError(
                "a stored agent key does not open with this notifier's key "
                "(another HLGATEWAY_NOTIFIER_KEY, or the row was altered)"
            ) from None


class RedactKeys(logging.Filter):
    """Key-shaped text out of every log record (install on the handlers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if KEY_RE.search(message):
            record.msg, record.args = redact(message), None
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text, record.exc_info = redact(text), None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install_redaction() -> None:
    """On every handler of the root logger (call after logging is configured)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactKeys) for f in handler.filters):
            handler.addFilter(RedactKeys())
