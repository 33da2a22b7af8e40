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
API Wallet 0x... does not exist."). Sans I/O; ``eth_account`` does the curve
maths (with ``coincurve`` installed, a recovery takes ~0.3 ms).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.crypto import keccak

_HEX = re.compile(r"0x[0-9a-fA-F]{1,64}")
ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")

_DOMAIN_TYPES = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
_ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"

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
    return bytes(keccak(data))


def l1_payload(connection_id: bytes, mainnet: bool) -> dict[str, Any]:
    return {
        "domain": {
            "chainId": 1337,
            "name": "Exchange",
            "verifyingContract": _ZERO_ADDRESS,
            "version": "1",
        },
        "types": {
            "Agent": [
                {"name": "source", "type": "string"},
                {"name": "connectionId", "type": "bytes32"},
            ],
            "EIP712Domain": _DOMAIN_TYPES,
        },
        "primaryType": "Agent",
        "message": {"source": "a" if mainnet else "b", "connectionId": connection_id},
    }


def user_signed_payload(kind: str, action: Mapping[str, Any], mainnet: bool) -> dict[str, Any]:
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
    return _recover(l1_payload(connection_id, mainnet), signature)


def recover_user_signed(
    kind: str, action: Mapping[str, Any], signature: Signature, *, mainnet: bool
) -> str:
    """The (lower-case) address that signed a user-signed action of type ``kind``."""
    return _recover(user_signed_payload(kind, action, mainnet), signature)


def _recover(payload: dict[str, Any], signature: Signature) -> str:
    try:
        message = encode_typed_data(full_message=payload)
        address: str = Account.recover_message(
            message, vrs=(signature.v, int(signature.r, 16), int(signature.s, 16))
        )
    except Exception as exc:  # eth_keys raises several kinds for impossible signatures
        raise SignatureError(f"signature cannot be recovered: {exc.__class__.__name__}") from None
    return address.lower()
