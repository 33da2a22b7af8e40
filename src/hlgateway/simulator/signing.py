"""Who signed an ``/exchange`` request: Hyperliquid's two signing schemes, checked.

L1 actions (orders, cancels, leverage, ...) are signed through a "phantom
agent": the keccak of ``msgpack(action) + nonce (8 bytes) + vault flag
[+ vault address] [+ 0x00 + expiresAfter (8 bytes)]`` becomes the
``connectionId`` of an EIP-712 ``Agent`` message (domain ``Exchange``, chain
1337) whose ``source`` is ``"a"`` on mainnet and ``"b"`` elsewhere.
User-signed actions (``approveAgent``, ``usdSend``, ``withdraw3``) are EIP-712
messages of their own types under the domain ``HyperliquidSignTransaction``,
on the chain the action names in ``signatureChainId``; the verifier puts its
own ``hyperliquidChain`` in, so an action signed for another network recovers
a stranger.

Recovery never fails on a well-formed signature: a wrong one recovers some
other address, which the exchange then does not know (Hyperliquid's "User or
API Wallet 0x... does not exist."). Sans I/O. The stand-in shares the cores of
what it is measured against, so the check is kept cheap: the EIP-712 hashes are
computed here for the few fixed types (type hashes and the L1 domain once, at
import) and coincurve recovers the key, ~0.1 ms a post where eth_account's
general encoder and recovery took ~0.6 ms. It accepts and refuses exactly what
eth_account did (tests/simulator/test_signing.py keeps eth_account as the oracle).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack
from coincurve import PublicKey
from Crypto.Hash.keccak import new as _keccak_new

_HEX = re.compile(r"0x[0-9a-fA-F]{1,64}")
ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")

_DOMAIN_TYPES = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
_ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
_AGENT_FIELDS = [
    {"name": "source", "type": "string"},
    {"name": "connectionId", "type": "bytes32"},
]

# User-signed action type -> (EIP-712 primary type, its fields), as Hyperliquid defines them.
USER_SIGNED_TYPES: dict[str, tuple[str, list[dict[str, str]]]] = {
    "approveAgent": (
        "HyperliquidTransaction:ApproveAgent",
        [
            {"name": "hyperliquidChain", "type": "string"},
            {"name": "agentAddress", "type": "address"},
            {"name": "agentName", "type": "string"},
            {"name": "nonce", "type": "uint64"},
        ],
    ),
    "usdSend": (
        "HyperliquidTransaction:UsdSend",
        [
            {"name": "hyperliquidChain", "type": "string"},
            {"name": "destination", "type": "string"},
            {"name": "amount", "type": "string"},
            {"name": "time", "type": "uint64"},
        ],
    ),
    "withdraw3": (
        "HyperliquidTransaction:Withdraw",
        [
            {"name": "hyperliquidChain", "type": "string"},
            {"name": "destination", "type": "string"},
            {"name": "amount", "type": "string"},
            {"name": "time", "type": "uint64"},
        ],
    ),
}


class SignatureError(ValueError):
    """A signature that is not even well-formed (or that no key could have made)."""


@dataclass(frozen=True, slots=True)
class Signature:
    """As ``parse`` leaves it: r and s hex of at most 32 bytes, v 27 or 28 (0, 1 read too)."""

    r: str
    s: str
    v: int

    @classmethod
    def parse(cls, raw: Any) -> Signature:
        """``{"r": "0x..", "s": "0x..", "v": 27|28}``, as the SDKs send it."""
        if not isinstance(raw, Mapping) or set(raw) != {"r", "s", "v"}:
            raise SignatureError("signature must be an object with r, s and v")
        r, s, v = raw["r"], raw["s"], raw["v"]
        if not (
            isinstance(r, str) and _HEX.fullmatch(r) and isinstance(s, str) and _HEX.fullmatch(s)
        ):
            raise SignatureError("signature r and s must be 0x-prefixed hex of at most 32 bytes")
        if isinstance(v, bool) or not isinstance(v, int) or v not in (0, 1, 27, 28):
            raise SignatureError("signature v must be 27 or 28")
        return cls(r, s, v if v >= 27 else v + 27)


def action_hash(
    action: Any, vault_address: str | None, nonce: int, expires_after: int | None
) -> bytes:
    """The phantom agent's connectionId (Hyperliquid's L1 action hash)."""
    data: bytes = msgpack.packb(action)
    data += nonce.to_bytes(8, "big")
    if vault_address is None:
        data += b"\x00"
    else:
        data += b"\x01" + bytes.fromhex(vault_address[2:])
    if expires_after is not None:
        data += b"\x00" + expires_after.to_bytes(8, "big")
    return _keccak(data)


def l1_payload(connection_id: bytes, mainnet: bool) -> dict[str, Any]:
    """The phantom agent as EIP-712 typed data (what a wallet is asked to sign)."""
    return {
        "domain": {
            "chainId": 1337,
            "name": "Exchange",
            "verifyingContract": _ZERO_ADDRESS,
            "version": "1",
        },
        "types": {
            "Agent": _AGENT_FIELDS,
            "EIP712Domain": _DOMAIN_TYPES,
        },
        "primaryType": "Agent",
        "message": {"source": "a" if mainnet else "b", "connectionId": connection_id},
    }


def user_signed_payload(kind: str, action: Mapping[str, Any], mainnet: bool) -> dict[str, Any]:
    """A user-signed action as EIP-712 typed data, with the verifier's own chain in."""
    primary, fields = USER_SIGNED_TYPES[kind]
    message = dict(action)
    message["hyperliquidChain"] = "Mainnet" if mainnet else "Testnet"
    return {
        "domain": {
            "name": "HyperliquidSignTransaction",
            "version": "1",
            "chainId": int(str(action["signatureChainId"]), 16),
            "verifyingContract": _ZERO_ADDRESS,
        },
        "types": {primary: fields, "EIP712Domain": _DOMAIN_TYPES},
        "primaryType": primary,
        "message": message,
    }


def l1_digest(connection_id: bytes, mainnet: bool) -> bytes:
    """The EIP-712 hash an L1 action's signer signed (``l1_payload``'s, encoded)."""
    struct = _keccak(_AGENT_TYPE_HASH + _SOURCE_HASH[mainnet] + connection_id)
    return _keccak(b"\x19\x01" + _L1_DOMAIN + struct)


def user_signed_digest(kind: str, action: Mapping[str, Any], mainnet: bool) -> bytes:
    """The EIP-712 hash a user-signed action's signer signed (``user_signed_payload``'s).

    ``action`` as ``parse_action`` leaves it: strings where the type says string, an
    address as 0x and 40 hex digits, a uint64 as an int; anything else is a SignatureError.
    """
    type_hash, fields = _USER_SIGNED_ENCODING[kind]
    chain_id = int(str(action["signatureChainId"]), 16)
    try:
        domain = _user_domain(chain_id)
        encoded = [type_hash]
        for name, type_ in fields:
            value = _HYPERLIQUID_CHAIN[mainnet] if name == "hyperliquidChain" else action[name]
            encoded.append(_encode_field(type_, value))
    except (KeyError, ValueError, OverflowError) as exc:
        # No JSON body gets here (parse_action refuses such values, JSON cannot carry a
        # string that is not UTF-8); named as eth_account's failure was, all the same.
        raise SignatureError(f"signature cannot be recovered: {exc.__class__.__name__}") from None
    return _keccak(b"\x19\x01" + domain + _keccak(b"".join(encoded)))


def recover_l1(
    action: Any,
    signature: Signature,
    *,
    vault_address: str | None,
    nonce: int,
    expires_after: int | None,
    mainnet: bool,
) -> str:
    """The (lower-case) address that signed an L1 action."""
    connection_id = action_hash(action, vault_address, nonce, expires_after)
    return _recover(l1_digest(connection_id, mainnet), signature)


def recover_user_signed(
    kind: str, action: Mapping[str, Any], signature: Signature, *, mainnet: bool
) -> str:
    """The (lower-case) address that signed a user-signed action of type ``kind``."""
    return _recover(user_signed_digest(kind, action, mainnet), signature)


# -- EIP-712, for the few fixed types above ------------------------------------------------
def _keccak(data: bytes) -> bytes:
    # pycryptodome's C keccak, called directly: eth_utils' keccak wraps the same call
    # in type dispatch that costs more than the hash (~13 us against ~7 us).
    return _keccak_new(digest_bits=256, data=data).digest()


def _type_hash(primary: str, fields: list[dict[str, str]]) -> bytes:
    """EIP-712 ``typeHash``: keccak of ``Name(type1 name1,type2 name2,...)``."""
    members = ",".join(f"{field['type']} {field['name']}" for field in fields)
    return _keccak(f"{primary}({members})".encode())


def _domain_separator(name: str, chain_id: int) -> bytes:
    """EIP-712 ``hashStruct(domain)`` for ``_DOMAIN_TYPES`` (version "1", contract zero)."""
    return _keccak(
        _DOMAIN_TYPE_HASH
        + _keccak(name.encode())
        + _keccak(b"1")
        + chain_id.to_bytes(32, "big")
        + bytes(32)
    )


def _encode_field(type_: str, value: Any) -> bytes:
    """One atomic field's 32-byte EIP-712 encoding (the three types the actions use)."""
    if type_ == "string" and isinstance(value, str):
        return _keccak(value.encode())
    if type_ == "address" and isinstance(value, str) and ADDRESS.fullmatch(value):
        return bytes(12) + bytes.fromhex(value[2:])
    if type_ == "uint64" and isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value < 1 << 64:
            raise OverflowError(value)
        return value.to_bytes(32, "big")
    raise ValueError(f"cannot encode {value!r} as {type_}")


_DOMAIN_TYPE_HASH = _type_hash("EIP712Domain", _DOMAIN_TYPES)
_L1_DOMAIN = _domain_separator("Exchange", 1337)
_AGENT_TYPE_HASH = _type_hash("Agent", _AGENT_FIELDS)
_SOURCE_HASH = {True: _keccak(b"a"), False: _keccak(b"b")}
_HYPERLIQUID_CHAIN = {True: "Mainnet", False: "Testnet"}
_USER_SIGNED_ENCODING = {
    kind: (_type_hash(primary, fields), [(field["name"], field["type"]) for field in fields])
    for kind, (primary, fields) in USER_SIGNED_TYPES.items()
}


@functools.lru_cache(maxsize=16)
def _user_domain(chain_id: int) -> bytes:
    # Clients sign with one chain id or two (0x66eee, 0xa4b1): the separator is reused.
    return _domain_separator("HyperliquidSignTransaction", chain_id)


# -- secp256k1 recovery ----------------------------------------------------------------------
_CURVE_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
# What eth_account said of every signature no key could have made (eth_keys' BadSignature),
# kept so that answers stay word for word as they were.
_UNRECOVERABLE = "signature cannot be recovered: BadSignature"


def _recover(digest: bytes, signature: Signature) -> str:
    """The address whose key made ``signature`` over ``digest``, as eth_account recovers it.

    eth_keys (under ``Account.recover_message``) refuses r or s outside [0, N) and then
    hands r || s || v-27 to coincurve, which refuses a zero r or s and a point not on the
    curve; high s is accepted (recovery is not verification). The same checks, minus the
    checksummed address and the layers of conversion around them. (eth_account also
    reads a v of 35 and up as a transaction's EIP-155 v; ``Signature.parse`` never gives
    one, and here it is refused.)
    """
    r, s, v = int(signature.r, 16), int(signature.s, 16), signature.v
    if not (0 <= r < _CURVE_ORDER and 0 <= s < _CURVE_ORDER and v in (0, 1, 27, 28)):
        raise SignatureError(_UNRECOVERABLE)
    compact = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes((v % 27,))
    try:
        public = PublicKey.from_signature_and_message(compact, digest, hasher=None)
    except ValueError:
        raise SignatureError(_UNRECOVERABLE) from None
    return "0x" + _keccak(public.format(compressed=False)[1:])[-20:].hex()
