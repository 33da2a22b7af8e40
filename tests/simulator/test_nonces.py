"""Hyperliquid's nonce rule, per signer (sans I/O)."""

from __future__ import annotations

import pytest

from hlgateway.simulator.nonces import DAY_MS, NonceError, Nonces

NOW = 1_800_000_000_000


def use(nonces: Nonces, signer: str, nonce: int) -> None:
    nonces.check(signer, nonce, NOW)
    nonces.use(signer, nonce)


def test_a_nonce_is_used_once_per_signer() -> None:
    nonces = Nonces()
    use(nonces, "a", NOW)
    with pytest.raises(NonceError, match=f"duplicate nonce {NOW}"):
        nonces.check("a", NOW, NOW)
    use(nonces, "b", NOW)  # another signer has nonces of its own


def test_out_of_order_nonces_pass_until_the_kept_set_is_full() -> None:
    nonces = Nonces(kept=3)
    for nonce in (NOW + 5, NOW + 1, NOW + 9):
        use(nonces, "a", nonce)
    use(nonces, "a", NOW + 3)  # above the smallest kept (NOW + 1): fine, and evicts it
    with pytest.raises(NonceError, match="nonce too low"):
        nonces.check("a", NOW + 2, NOW)  # below the smallest of the 3 kept (NOW + 3)
    nonces.check("a", NOW + 4, NOW)


def test_the_window_is_two_days_back_and_one_day_ahead() -> None:
    nonces = Nonces()
    nonces.check("a", NOW - 2 * DAY_MS + 1, NOW)
    nonces.check("a", NOW + DAY_MS - 1, NOW)
    with pytest.raises(NonceError, match="too low"):
        nonces.check("a", NOW - 2 * DAY_MS, NOW)
    with pytest.raises(NonceError, match="too high"):
        nonces.check("a", NOW + DAY_MS, NOW)


def test_a_check_changes_nothing_and_forget_clears_a_signer() -> None:
    nonces = Nonces()
    nonces.check("a", NOW, NOW)
    nonces.check("a", NOW, NOW)  # not recorded by a check
    use(nonces, "a", NOW)
    nonces.forget("a")
    use(nonces, "a", NOW)
