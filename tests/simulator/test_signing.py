"""The simulator's signature checks against the official SDK's signing functions."""

from __future__ import annotations

import copy
from typing import Any

import eth_account
import pytest
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
    recover_l1,
    recover_user_signed,
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
