"""The subscription registry: keys by channel + params, re-keying, merging, orphans (no sockets)."""

from __future__ import annotations

from hlgateway.client.registry import Registry, key_of, normalize


def test_normal_form() -> None:
    assert normalize("prices", {"symbols": ["eth", "BTC", "eth"], "throttle": 0}) == {
        "symbols": ["BTC", "eth"]
    }
    assert normalize("prices", {"symbols": []}) == {}
    assert normalize("orderbook", {"symbol": "BTC", "depth": None}) == {"symbol": "BTC"}
    assert list(normalize("orderbook", {"symbol": "BTC", "depth": 5})) == ["depth", "symbol"]


def test_two_orderbooks_are_two_subscriptions() -> None:
    """The seed's client keys by channel and loses one of these; here both are kept."""
    reg: Registry[str] = Registry()
    assert reg.add("orderbook", {"symbol": "BTC", "depth": 5}, "a").send
    assert reg.add("orderbook", {"symbol": "BTC", "depth": 10}, "b").send
    assert reg.add("orderbook", {"symbol": "ETH"}, "c").send
    assert len(reg) == 3
    assert {e.params["symbol"] for e in reg} == {"BTC", "ETH"}


def test_same_params_share_an_entry() -> None:
    reg: Registry[str] = Registry()
    first = reg.add("prices", {"symbols": ["BTC", "ETH"]}, "a")
    second = reg.add("prices", {"symbols": ["ETH", "BTC"]}, "b")
    assert first.send and not second.send
    assert second.entry is first.entry and first.entry.handles == ["a", "b"]


def test_confirm_rekeys_to_canonical_params_and_routes_data() -> None:
    reg: Registry[str] = Registry()
    entry = reg.add("orderbook", {"symbol": "btc"}, "a").entry
    entry.in_flight = True
    canonical = {"depth": 10, "symbol": "BTC"}
    assert reg.confirm(entry, canonical) is entry
    assert entry.confirmed and entry.live and entry.params == canonical
    assert reg.route("orderbook", {"symbol": "BTC", "depth": 10}) is entry
    assert reg.route("orderbook", {"symbol": "btc"}) is None


def test_spellings_of_one_subscription_merge_on_confirm() -> None:
    reg: Registry[str] = Registry()
    one = reg.add("prices", {"symbols": ["eth"]}, "a").entry
    two = reg.add("prices", {"symbols": ["ETH"]}, "b").entry
    assert one is not two
    first = reg.confirm(one, {"symbols": ["ETH"]})
    second = reg.confirm(two, {"symbols": ["ETH"]})
    assert first is second is two and len(reg) == 1
    assert sorted(two.handles) == ["a", "b"] and not one.handles
    assert reg.route("prices", {"symbols": ["ETH"]}) is two


def test_release_unsubscribes_only_with_the_last_handle() -> None:
    reg: Registry[str] = Registry()
    entry = reg.add("trades", {"symbol": "SOL"}, "a").entry
    reg.add("trades", {"symbol": "SOL"}, "b")
    reg.confirm(entry, {"symbol": "SOL"})
    assert reg.release("a") is None
    assert reg.release("b") is entry
    assert len(reg) == 0


def test_release_while_disconnected_sends_nothing() -> None:
    reg: Registry[str] = Registry()
    entry = reg.add("trades", {"symbol": "SOL"}, "a").entry
    reg.confirm(entry, {"symbol": "SOL"})
    reg.disconnected()
    assert not entry.live
    assert reg.release("a") is None and len(reg) == 0


def test_orphan_is_dropped_after_its_reply_unless_shared() -> None:
    reg: Registry[str] = Registry()
    live = reg.add("prices", {"symbols": ["ETH"]}, "a").entry
    reg.confirm(live, {"symbols": ["ETH"]})
    pending = reg.add("prices", {"symbols": ["eth"]}, "b").entry
    pending.in_flight = True
    assert reg.release("b") is None  # its reply is still coming
    assert reg.confirm(pending, {"symbols": ["ETH"]}) is None
    # The gateway holds one subscription, still used by "a": do not drop it.
    assert not reg.orphan_confirmed(pending, {"symbols": ["ETH"]})
    lone = reg.add("trades", {"symbol": "btc"}, "c").entry
    lone.in_flight = True
    reg.release("c")
    assert reg.confirm(lone, {"symbol": "BTC"}) is None
    assert reg.orphan_confirmed(lone, {"symbol": "BTC"})


def test_refused_entries_are_forgotten() -> None:
    reg: Registry[str] = Registry()
    entry = reg.add("user_fills", {"userId": "bob"}, "a").entry
    assert reg.refuse(entry) == ["a"]
    assert len(reg) == 0 and reg.get("user_fills", {"userId": "bob"}) is None


def test_key_ignores_param_order() -> None:
    assert key_of("orderbook", {"symbol": "BTC", "depth": 5}) == key_of(
        "orderbook", {"depth": 5, "symbol": "BTC"}
    )
