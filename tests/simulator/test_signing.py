"""The simulator's signature checks against the official SDK's signing functions, and its
fast path against eth_account's general EIP-712 encoder and recovery (the path it replaced)."""

from __future__ import annotations

import copy
import functools
import random
from collections.abc import Callable
from typing import Any

import eth_account
import pytest
from eth_account.messages import encode_typed_data
from eth_utils.crypto import keccak
from hyperliquid.utils.signing import (
    action_hash as sdk_action_hash,
)
from hyperliquid.utils.signing import (
    order_request_to_order_wire,
    order_wires_to_order_action,
    sign_agent,
    sign_l1_action,
    sign_usd_transfer_action,
    sign_withdraw_from_bridge_action,
)
from hyperliquid.utils.types import Cloid

from hlgateway.simulator.actions import (
    ActionError,
    ApproveAgent,
    ModifyOrders,
    PlaceOrders,
    UsdSend,
    parse_action,
)
from hlgateway.simulator.signing import (
    Signature,
    SignatureError,
    action_hash,
    l1_digest,
    l1_payload,
    recover_l1,
    recover_user_signed,
    user_signed_digest,
    user_signed_payload,
)

ACCOUNT = eth_account.Account.from_key("0x" + "11" * 32)
ADDRESS = ACCOUNT.address.lower()
VAULT = "0x" + "ab" * 20


def order_action(cloid: Cloid | None = None, trigger: bool = False) -> dict[str, Any]:
    order_type: Any = (
        {"trigger": {"triggerPx": 3100.0, "isMarket": True, "tpsl": "sl"}}
        if trigger
        else {"limit": {"tif": "Gtc"}}
    )
    wire = order_request_to_order_wire(
        {
            "coin": "ETH",
            "is_buy": True,
            "sz": 0.25,
            "limit_px": 3000.5,
            "order_type": order_type,
            "reduce_only": trigger,
            "cloid": cloid,
        },
        1,
    )
    action: dict[str, Any] = order_wires_to_order_action([wire])
    return action


@pytest.mark.parametrize("vault", [None, VAULT])
@pytest.mark.parametrize("expires_after", [None, 1_900_000_000_000])
def test_action_hash_is_the_sdks(vault: str | None, expires_after: int | None) -> None:
    action = order_action(Cloid.from_int(5))
    assert action_hash(action, vault, 123, expires_after) == sdk_action_hash(
        action, vault, 123, expires_after
    )


@pytest.mark.parametrize("mainnet", [True, False])
@pytest.mark.parametrize("trigger", [False, True])
def test_an_sdk_signed_order_recovers_its_signer(mainnet: bool, trigger: bool) -> None:
    action = order_action(Cloid.from_int(9), trigger=trigger)
    signature = sign_l1_action(ACCOUNT, action, None, 1_700_000_000_000, None, mainnet)
    parsed = parse_action(action)
    assert isinstance(parsed.request, PlaceOrders)
    signer = recover_l1(
        parsed.canonical,
        Signature.parse(signature),
        vault_address=None,
        nonce=1_700_000_000_000,
        expires_after=None,
        mainnet=mainnet,
    )
    assert signer == ADDRESS


def test_the_other_network_or_another_nonce_recovers_a_stranger() -> None:
    action = order_action()
    signature = Signature.parse(sign_l1_action(ACCOUNT, action, None, 5, None, False))
    canonical = parse_action(action).canonical
    mainnet = recover_l1(
        canonical, signature, vault_address=None, nonce=5, expires_after=None, mainnet=True
    )
    other_nonce = recover_l1(
        canonical, signature, vault_address=None, nonce=6, expires_after=None, mainnet=False
    )
    assert ADDRESS not in (mainnet, other_nonce)


def test_field_order_is_hyperliquids_not_the_senders() -> None:
    """A body whose keys arrive in another order (JSON allows it) still verifies: the
    exchange hashes its own canonical order, as Hyperliquid re-serializes its types."""
    action = order_action(Cloid.from_int(3))
    signature = Signature.parse(sign_l1_action(ACCOUNT, action, None, 7, None, False))
    shuffled = {
        "grouping": action["grouping"],
        "orders": [dict(reversed(list(o.items()))) for o in action["orders"]],
        "type": "order",
    }
    canonical = parse_action(shuffled).canonical
    assert list(canonical) == ["type", "orders", "grouping"]
    assert list(canonical["orders"][0]) == ["a", "b", "p", "s", "r", "t", "c"]
    signer = recover_l1(
        canonical, signature, vault_address=None, nonce=7, expires_after=None, mainnet=False
    )
    assert signer == ADDRESS


def test_a_tampered_action_recovers_a_stranger() -> None:
    action = order_action()
    signature = Signature.parse(sign_l1_action(ACCOUNT, action, None, 7, None, False))
    tampered = copy.deepcopy(action)
    tampered["orders"][0]["s"] = "25"
    canonical = parse_action(tampered).canonical
    signer = recover_l1(
        canonical, signature, vault_address=None, nonce=7, expires_after=None, mainnet=False
    )
    assert signer != ADDRESS


@pytest.mark.parametrize("name", [None, "bot"])
def test_approve_agent_as_the_sdk_signs_it(name: str | None) -> None:
    agent = eth_account.Account.create().address
    action: dict[str, Any] = {
        "type": "approveAgent",
        "agentAddress": agent,
        "agentName": name or "",
        "nonce": 99,
    }
    signature = sign_agent(ACCOUNT, action, False)
    if name is None:
        del action["agentName"]  # the SDK drops an empty name after signing
    parsed = parse_action(action)
    assert parsed.request == ApproveAgent(agent.lower(), name or "", 99)
    assert parsed.user_signed and parsed.nonce_field == 99
    signer = recover_user_signed(
        "approveAgent", parsed.canonical, Signature.parse(signature), mainnet=False
    )
    assert signer == ADDRESS
    on_mainnet = recover_user_signed(
        "approveAgent", parsed.canonical, Signature.parse(signature), mainnet=True
    )
    assert on_mainnet != ADDRESS


def test_usd_send_and_withdraw_as_the_sdk_signs_them() -> None:
    destination = "0x" + "cd" * 20
    send = {"destination": destination, "amount": "12.5", "time": 77, "type": "usdSend"}
    withdraw = {"destination": destination, "amount": "3", "time": 78, "type": "withdraw3"}
    send_sig = Signature.parse(sign_usd_transfer_action(ACCOUNT, send, False))
    withdraw_sig = Signature.parse(sign_withdraw_from_bridge_action(ACCOUNT, withdraw, False))
    parsed = parse_action(send)
    assert isinstance(parsed.request, UsdSend) and parsed.nonce_field == 77
    assert recover_user_signed("usdSend", send, send_sig, mainnet=False) == ADDRESS
    assert recover_user_signed("withdraw3", withdraw, withdraw_sig, mainnet=False) == ADDRESS


def test_modify_by_oid_and_by_cloid_parse() -> None:
    action = {
        "type": "batchModify",
        "modifies": [
            {"oid": 12, "order": order_action()["orders"][0]},
            {"oid": "0x" + "0a" * 16, "order": order_action()["orders"][0]},
        ],
    }
    parsed = parse_action(action)
    assert isinstance(parsed.request, ModifyOrders)
    assert [key for key, _ in parsed.request.modifies] == [12, "0x" + "0a" * 16]


@pytest.mark.parametrize(
    ("action", "detail"),
    [
        ({"type": "order", "orders": [], "grouping": "nope"}, "grouping"),
        ({"type": "order", "orders": [{"a": 1}], "grouping": "na"}, "missing field `b`"),
        ({"type": "cancel", "cancels": [{"a": 1, "o": -1}]}, "`o`"),
        ({"type": "cancel", "cancels": [{"a": 1, "o": 2, "x": 1}]}, "unknown field `x`"),
        ({"type": "cancelByCloid", "cancels": [{"asset": 1, "cloid": "0x1"}]}, "cloid"),
        ({"type": "updateLeverage", "asset": 1, "isCross": 1, "leverage": 3}, "isCross"),
        ({"type": "teleport"}, "unknown variant `teleport`"),
        ({"orders": []}, "missing field `type`"),
    ],
)
def test_malformed_actions_are_refused_with_the_field(action: Any, detail: str) -> None:
    with pytest.raises(ActionError, match=detail.replace("`", ".")):
        parse_action(action)


@pytest.mark.parametrize(
    "raw",
    [
        None,
        {"r": "0x1", "s": "0x2"},
        {"r": "zz", "s": "0x2", "v": 27},
        {"r": "0x1", "s": "0x2", "v": 29},
        {"r": "0x1", "s": "0x2", "v": True},
        {"r": "0x" + "1" * 65, "s": "0x2", "v": 27},
    ],
)
def test_malformed_signatures_are_refused(raw: Any) -> None:
    with pytest.raises(SignatureError):
        Signature.parse(raw)


# -- the fast path against eth_account, the general implementation it replaced -----------
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def _reference_digest(payload: dict[str, Any]) -> bytes:
    message = encode_typed_data(full_message=payload)
    return keccak(b"\x19" + message.version + message.header + message.body)


def _recover_reference(payload: dict[str, Any], signature: Signature) -> str:
    """signing.py's recovery as it was: eth_account's EIP-712 encoder and recover_message."""
    try:
        message = encode_typed_data(full_message=payload)
        address: str = eth_account.Account.recover_message(
            message, vrs=(signature.v, int(signature.r, 16), int(signature.s, 16))
        )
    except Exception as exc:
        raise SignatureError(f"signature cannot be recovered: {exc.__class__.__name__}") from None
    return address.lower()


def _outcome(recover: Callable[[], str]) -> str:
    """The address, or the refusal's words: what the exchange goes on to act on."""
    try:
        return recover()
    except SignatureError as exc:
        return f"refused: {exc}"


def _random_l1_action(rng: random.Random) -> dict[str, Any]:
    kind = rng.choice(["order", "cancel", "cancelByCloid", "updateLeverage", "noop"])
    if kind == "order":
        cloid = Cloid.from_int(rng.randrange(1 << 64)) if rng.random() < 0.5 else None
        return order_action(cloid, trigger=rng.random() < 0.3)
    if kind == "cancel":
        return {
            "type": "cancel",
            "cancels": [{"a": rng.randrange(200), "o": rng.randrange(1 << 40)}],
        }
    if kind == "cancelByCloid":
        cloid = "0x" + rng.randbytes(16).hex()
        return {"type": "cancelByCloid", "cancels": [{"asset": rng.randrange(200), "cloid": cloid}]}
    if kind == "updateLeverage":
        leverage = rng.randrange(1, 50)
        return {
            "type": "updateLeverage",
            "asset": 1,
            "isCross": rng.random() < 0.5,
            "leverage": leverage,
        }
    return {"type": "noop"}


@pytest.mark.parametrize("mainnet", [True, False])
def test_the_eip712_hashes_are_eth_accounts(mainnet: bool) -> None:
    for connection_id in (bytes(32), b"\xff" * 32, bytes(range(32))):
        assert l1_digest(connection_id, mainnet) == _reference_digest(
            l1_payload(connection_id, mainnet)
        )
    actions: list[tuple[str, dict[str, Any]]] = [
        ("approveAgent", {"agentAddress": "0x" + "Ab" * 20, "agentName": "", "nonce": 0}),
        ("approveAgent", {"agentAddress": "0x" + "00" * 20, "agentName": "bot ü ✓", "nonce": 1}),
        ("usdSend", {"destination": "0x" + "cd" * 20, "amount": "12.5", "time": (1 << 64) - 1}),
        ("withdraw3", {"destination": "0x" + "CD" * 20, "amount": "3", "time": 78}),
    ]
    for chain in ("0x66eee", "0xa4b1", "0x1", "0xffffffffffffffff"):
        for kind, fields in actions:
            action = {"type": kind, "signatureChainId": chain, "hyperliquidChain": "Testnet"}
            action.update(fields)
            assert user_signed_digest(kind, action, mainnet) == _reference_digest(
                user_signed_payload(kind, action, mainnet)
            )


def test_l1_recovery_is_eth_accounts_over_many_keys_and_actions() -> None:
    rng = random.Random(22)
    for _ in range(150):
        wallet = eth_account.Account.from_key(rng.randbytes(32))
        action = _random_l1_action(rng)
        vault = "0x" + rng.randbytes(20).hex() if rng.random() < 0.3 else None
        expires_after = rng.randrange(1 << 64) if rng.random() < 0.3 else None
        nonce = rng.randrange(1 << 64)
        mainnet = rng.random() < 0.5
        raw = sign_l1_action(wallet, action, vault, nonce, expires_after, mainnet)
        if rng.random() < 0.5:
            raw = {**raw, "v": raw["v"] - 27}  # 0/1, as some signers send it
        signature = Signature.parse(raw)
        canonical = parse_action(action).canonical
        signer = recover_l1(
            canonical,
            signature,
            vault_address=vault,
            nonce=nonce,
            expires_after=expires_after,
            mainnet=mainnet,
        )
        connection_id = action_hash(canonical, vault, nonce, expires_after)
        reference = _recover_reference(l1_payload(connection_id, mainnet), signature)
        assert signer == reference == wallet.address.lower()
        # Checked on the other network: both recover the same stranger.
        stranger = recover_l1(
            canonical,
            signature,
            vault_address=vault,
            nonce=nonce,
            expires_after=expires_after,
            mainnet=not mainnet,
        )
        other = l1_payload(connection_id, not mainnet)
        assert stranger == _recover_reference(other, signature) != signer


def test_user_signed_recovery_is_eth_accounts_over_many_keys() -> None:
    rng = random.Random(23)
    for _ in range(60):
        wallet = eth_account.Account.from_key(rng.randbytes(32))
        mainnet = rng.random() < 0.5
        destination = "0x" + rng.randbytes(20).hex()
        kind = rng.choice(["approveAgent", "usdSend", "withdraw3"])
        action: dict[str, Any]
        if kind == "approveAgent":
            name = rng.choice(["", "bot", "ünï ✓"])
            action = {"type": kind, "agentAddress": destination, "agentName": name}
            action["nonce"] = rng.randrange(1 << 64)
            raw = sign_agent(wallet, action, mainnet)
        elif kind == "usdSend":
            amount = str(rng.randrange(1, 10**6))
            action = {"type": kind, "destination": destination, "amount": amount}
            action["time"] = rng.randrange(1 << 64)
            raw = sign_usd_transfer_action(wallet, action, mainnet)
        else:
            action = {"type": kind, "destination": destination, "amount": "1.5"}
            action["time"] = rng.randrange(1 << 64)
            raw = sign_withdraw_from_bridge_action(wallet, action, mainnet)
        if rng.random() < 0.3:  # another wallet chain than the SDK's 0x66eee
            action["signatureChainId"] = hex(rng.randrange(1, 1 << 64))
            signed = wallet.sign_message(
                encode_typed_data(full_message=user_signed_payload(kind, action, mainnet))
            )
            raw = {"r": hex(signed.r), "s": hex(signed.s), "v": signed.v}
        signature = Signature.parse(raw)
        canonical = parse_action(action).canonical
        for network in (mainnet, not mainnet):
            reference = _recover_reference(user_signed_payload(kind, canonical, network), signature)
            assert recover_user_signed(kind, canonical, signature, mainnet=network) == reference
            assert (reference == wallet.address.lower()) is (network == mainnet)


def _edge_signatures(valid: Signature) -> list[Signature]:
    r, s = int(valid.r, 16), int(valid.s, 16)
    rng = random.Random(24)
    pairs = [
        (0, 0),
        (0, s),
        (r, 0),
        (N, s),
        (r, N),
        (N - 1, s),
        (r, N - 1),
        (N + 1, s),
        ((1 << 256) - 1, s),
        (r, (1 << 256) - 1),
        (r, N - s),  # the high-s twin of a low-s signature (or the reverse)
        (1, 1),
        (5, 5),
    ]
    pairs += [(rng.randrange(1, N), rng.randrange(1, N)) for _ in range(40)]
    return [Signature(hex(a), hex(b), v) for a, b in pairs for v in (27, 28)]


def test_edge_signatures_are_accepted_and_refused_as_eth_account_did() -> None:
    action = order_action()
    raw = sign_l1_action(ACCOUNT, action, None, 9, None, True)
    valid = Signature.parse(raw)
    canonical = parse_action(action).canonical
    payload = l1_payload(action_hash(canonical, None, 9, None), True)
    outcomes = []
    for signature in [valid, *_edge_signatures(valid)]:
        new = _outcome(functools.partial(_recover_l1_at_9, canonical, signature))
        assert new == _outcome(functools.partial(_recover_reference, payload, signature))
        outcomes.append(new)
    # Both kinds were met: refusals (r or s zero or out of range, r off the curve) and
    # recoveries (the high-s twin with the other v is the same key; random r, s strangers).
    high_s_twin = Signature(valid.r, hex(N - int(valid.s, 16)), 55 - valid.v)
    assert _recover_l1_at_9(canonical, high_s_twin) == ADDRESS
    assert _recover_reference(payload, high_s_twin) == ADDRESS
    assert any(o.startswith("refused") for o in outcomes)
    assert sum(o.startswith("0x") for o in outcomes) > 10


def _recover_l1_at_9(canonical: Any, signature: Signature) -> str:
    return recover_l1(
        canonical, signature, vault_address=None, nonce=9, expires_after=None, mainnet=True
    )


@pytest.mark.parametrize("v", [0, 1, 2, 26, 29, 34, 37, -1])
def test_a_v_that_parse_would_not_give_is_read_as_eth_account_read_it(v: int) -> None:
    action = order_action()
    valid = Signature.parse(sign_l1_action(ACCOUNT, action, None, 9, None, True))
    signature = Signature(valid.r, valid.s, v)
    canonical = parse_action(action).canonical
    payload = l1_payload(action_hash(canonical, None, 9, None), True)
    new = _outcome(functools.partial(_recover_l1_at_9, canonical, signature))
    reference = _outcome(functools.partial(_recover_reference, payload, signature))
    if v in (0, 1):
        assert new == reference  # 0/1 mean 27/28, as parse turns them
    elif v == 37:
        # eth_account reads 35+ as a transaction's EIP-155 v; no request carries one
        # (parse refuses it, as it refuses 29) and the fast path refuses it.
        assert reference.startswith("0x") and new.startswith("refused")
        with pytest.raises(SignatureError):
            Signature.parse({"r": valid.r, "s": valid.s, "v": v})
    else:
        # Refused by both; eth_account's words differ (its assert or ValueError), and no
        # request reaches this either: parse refuses such a v first, in words of its own.
        assert new.startswith("refused") and reference.startswith("refused")


def test_a_name_that_is_not_utf8_is_refused_by_both() -> None:
    """JSON bodies cannot carry one (msgspec refuses lone surrogates), but callers can."""
    action = {
        "type": "approveAgent",
        "signatureChainId": "0x66eee",
        "hyperliquidChain": "Testnet",
        "agentAddress": "0x" + "ab" * 20,
        "agentName": "bad \ud800",
        "nonce": 5,
    }
    signature = Signature("0x1", "0x1", 27)
    payload = user_signed_payload("approveAgent", action, False)
    reference = _outcome(functools.partial(_recover_reference, payload, signature))
    new = _outcome(
        functools.partial(recover_user_signed, "approveAgent", action, signature, mainnet=False)
    )
    assert new == reference == "refused: signature cannot be recovered: UnicodeEncodeError"
