"""The dashboard in Debian's Chromium against a real gateway process on the simulator."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from playwright.async_api import Page

from hlgateway.auth import issue_token
from hlgateway.cli import DEMO_USER, DEMO_WALLET
from hlgateway.notifier.database import open_database
from hlgateway.notifier.repository import Repository
from hlgateway.telegram.webapp import sign
from tests.browser.conftest import PHONE, Browser, gateway_process, screenshot
from tests.helpers import SECRET, Client, GatewayProcess, admin_token

NOT_A_TOKEN = "eyJ"  # every JWT starts so: none may reach an address or a log line


def demo_token() -> str:
    return issue_token(SECRET, DEMO_USER, wallets=[DEMO_WALLET], ttl_seconds=3600)


async def texts(page: Page, selector: str) -> list[str]:
    found: list[str] = await page.locator(selector).all_text_contents()
    return found


def number(text: str) -> float:
    return float(text.replace(",", "").replace("$", ""))


async def open_markets(browser: Browser, gateway: GatewayProcess, **viewport: int) -> Page:
    page = await browser.page(**viewport)
    await page.goto(f"{gateway.http}/")
    await page.wait_for_selector("#markets tbody tr[data-symbol='BTC'] td.price:not(:empty)")
    return page


async def test_markets_load_live_sortable_filterable(
    browser: Browser, gateway: GatewayProcess, tmp_path: Path
) -> None:
    page = await open_markets(browser, gateway)
    await page.wait_for_selector("#link-state[data-state='connected']")
    cell = page.locator("#markets tr[data-symbol='BTC'] td.price")
    first = await cell.text_content()
    # BTC's price changes within 5 s (the simulator ticks several times a second).
    await page.wait_for_function(
        "first => document.querySelector(\"#markets tr[data-symbol='BTC'] td.price\")"
        ".textContent !== first",
        arg=first,
        timeout=5000,
    )
    async with aiohttp.ClientSession() as http, http.get(f"{gateway.http}/health") as resp:
        assert (await resp.json())["upstream"]["marketsLoaded"]
    symbols = await texts(page, "#markets tbody td.symbol")
    assert len(symbols) >= 10 and "ETH" in symbols  # every listed perp
    await screenshot(page, "markets", tmp_path)

    await page.click("#markets th[data-sort='symbol']")
    by_name = await texts(page, "#markets tbody td.symbol")
    assert by_name == sorted(by_name)
    await page.click("#markets th[data-sort='change24h']")  # descending first
    changes = [number(t.rstrip("%")) for t in await texts(page, "#markets tbody td.change")]
    assert changes == sorted(changes, reverse=True)

    await page.fill("#market-filter", "et")
    assert await texts(page, "#markets tbody td.symbol") == ["ETH"]
    await page.fill("#market-filter", "")
    assert browser.errors == []


async def test_book_sorted_of_the_chosen_depth_with_spread_chart_and_trades(
    browser: Browser, gateway: GatewayProcess, tmp_path: Path
) -> None:
    page = await open_markets(browser, gateway)
    await page.click("#markets tr[data-symbol='BTC']")
    await page.wait_for_selector("#view-market:not([hidden])")
    for depth in (20, 5, 10):
        await page.select_option("#book-depth", str(depth))
        await page.wait_for_function(
            "d => document.querySelectorAll('#book-bids tr').length === d"
            " && document.querySelectorAll('#book-asks tr').length === d",
            arg=depth,
        )
        bids = [number(t) for t in await texts(page, "#book-bids tr td:first-child")]
        # Asks are shown best (lowest) at the bottom, next to the bids.
        asks = [number(t) for t in await texts(page, "#book-asks tr td:first-child")][::-1]
        assert bids == sorted(bids, reverse=True) and asks == sorted(asks)
        assert bids[0] < asks[0]
        sizes = [number(t) for t in await texts(page, "#book-bids tr td:nth-child(3)")]
        assert sizes == sorted(sizes)  # cumulative
    assert "spread" in (await page.text_content("#spread") or "")
    await page.wait_for_selector("#trades tr")
    # Both canvases have been drawn on (some pixel is not transparent).
    await page.wait_for_function(
        """() => ['price-chart', 'depth-chart'].every(id => {
             const c = document.getElementById(id);
             const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
             return data.some(v => v !== 0);
           })"""
    )
    # The chart is live: it grows with every price.
    await page.wait_for_function(
        "() => Number(document.getElementById('price-chart').dataset.points) >= 12",
        timeout=20_000,
    )
    await screenshot(page, "market", tmp_path)
    assert browser.errors == []


async def test_a_spot_markets_candles_with_an_interval_picker(
    browser: Browser, gateway: GatewayProcess, tmp_path: Path
) -> None:
    page = await open_markets(browser, gateway)
    # Every kind of market is listed; the kind filter keeps one.
    await page.wait_for_selector("#markets tr[data-symbol='HYPE/USDC'][data-kind='spot']")
    await page.wait_for_selector("#markets tr[data-symbol='xyz:XYZ100'][data-kind='dex-perp']")
    await page.select_option("#market-kind", "spot")
    spot = await texts(page, "#markets tbody td.symbol")
    assert set(spot) == {"PURR/USDC", "HYPE/USDC", "UBTC/USDC"}
    await page.click("#markets tr[data-symbol='HYPE/USDC']")
    await page.wait_for_selector("#view-market:not([hidden])")
    assert page.url.endswith("#market/HYPE%2FUSDC")
    assert await page.locator("#market-symbol").input_value() == "HYPE/USDC"

    async def candles_drawn(interval: str) -> None:
        # The last 500 candles of that interval, drawn: some pixel is not transparent.
        await page.wait_for_function(
            """i => { const c = document.getElementById('candle-chart');
                 if (c.dataset.interval !== i || Number(c.dataset.candles) < 500) return false;
                 return c.getContext('2d').getImageData(0, 0, c.width, c.height).data
                   .some(v => v !== 0); }""",
            arg=interval,
            timeout=20_000,
        )

    await candles_drawn("1m")
    await screenshot(page, "market-candles", tmp_path)
    for interval in ("1h", "1d", "1m"):
        await page.select_option("#candle-interval", interval)
        await candles_drawn(interval)
    # The pair's book and trades tape are there too.
    await page.wait_for_selector("#book-bids tr")
    await page.wait_for_selector("#trades tr", timeout=20_000)
    assert browser.errors == []


async def test_login_from_the_address_shows_the_demo_account(
    browser: Browser, gateway: GatewayProcess, tmp_path: Path
) -> None:
    token = demo_token()
    page = await browser.page()
    await page.goto(f"{gateway.http}/?token={token}#account")
    await page.wait_for_selector("#account:not([hidden])")
    assert NOT_A_TOKEN not in page.url and "token" not in page.url  # taken once, removed
    # Orders and fills of the demo wallet within 20 s (a fill at least every 10 s).
    await page.wait_for_selector("#order-updates li", timeout=20_000)
    await page.wait_for_selector("#fills tr", timeout=20_000)
    await page.wait_for_function(
        "() => document.querySelector('#margin .value') !== null", timeout=20_000
    )
    update = await page.text_content("#order-updates li")
    assert update is not None and any(w in update for w in ("created", "updated", "filled"))
    assert (await page.text_content("#who")) == f"logged in: {DEMO_USER}"
    await screenshot(page, "account", tmp_path)
    await page.click("#logout-button")
    await page.wait_for_selector("#login:not([hidden])")
    assert browser.errors == []
    # The address was replaced, not pushed: Back leads to where the tab was before.
    await page.go_back()
    assert page.url == "about:blank"
    assert token not in gateway.logs() and NOT_A_TOKEN not in gateway.logs()


async def test_a_gateway_restart_is_ridden_out(browser: Browser, tmp_path: Path) -> None:
    gateway = gateway_process(tmp_path)
    await gateway.start()
    page = await browser.page()
    await page.goto(f"{gateway.http}/?token={demo_token()}#market/ETH")
    await page.wait_for_selector("#link-state[data-state='connected']")
    await page.wait_for_selector("#book-bids tr")
    assert await gateway.terminate() == 0
    await page.wait_for_selector("#link-state[data-state='reconnecting']")
    await page.wait_for_function(
        "() => /reconnecting in \\d+ s/.test(document.getElementById('link-state').textContent)"
    )
    restarted = gateway_process(tmp_path, gateway.port)
    await restarted.start()
    try:
        await page.wait_for_selector(
            "#link-state[data-state='resynced'], #link-state[data-state='recovered']",
            timeout=30_000,
        )
        state = await page.text_content("#link-state")
        assert state is not None and "after a" in state
        # State back: the book (emptied by the restart's resubscribe) and the account.
        await page.wait_for_selector("#book-bids tr")
        await page.click("nav a[data-view='account']")  # the same page and client
        await page.wait_for_selector("#fills tr", timeout=20_000)
    finally:
        await restarted.terminate()
    # Only the browser's own reports of the refused connections while the gateway was down.
    unexpected = [
        e
        for e in browser.errors
        if "WebSocket connection to" not in e and "ERR_CONNECTION_REFUSED" not in e
    ]
    assert unexpected == []
    # (Chromium's own report quotes the WebSocket URL, token included: browsers cannot send
    # a WebSocket Authorization header, so the token rides in the query, the seed's way.)
    assert NOT_A_TOKEN not in restarted.logs() and NOT_A_TOKEN not in gateway.logs()


async def test_admin_view_shows_the_counts_and_publishes_to_a_room(
    browser: Browser, gateway: GatewayProcess, tmp_path: Path
) -> None:
    member = await Client.connect(gateway.ws, admin_token())
    try:
        await member.recv_type("welcome")
        await member.request({"type": "join_room", "room": "desk"})
        page = await browser.page()
        await page.goto(f"{gateway.http}/#account")
        await page.fill("#token-input", admin_token())  # pasted
        await page.click("#login-button")
        await page.wait_for_selector("#admin-tab:not([hidden])")
        await page.click("#admin-tab")
        await page.wait_for_selector("#admin-totals[data-clients]")
        async with aiohttp.ClientSession() as http, http.get(f"{gateway.http}/health") as resp:
            health = await resp.json()
        # The member and the page itself; the page's own count comes from the gateway.
        await page.wait_for_function(
            "n => document.getElementById('admin-totals').dataset.clients === String(n)",
            arg=health["websocket"]["clients"],
        )
        assert health["websocket"]["clients"] == 2
        clients = await texts(page, "#admin-clients tr td:nth-child(2)")
        assert sorted(clients) == ["root (admin)", "root (admin)"]
        assert "room" in await texts(page, "#admin-topics tr td:first-child")
        await page.wait_for_selector("#admin-links tr")
        await page.wait_for_function(
            "() => document.querySelector('#admin-rates').textContent.includes('messages/s')"
        )
        await page.fill("#publish-room", "desk")
        await page.fill("#publish-data", '{"note": "halt new longs"}')
        await page.click("#publish-button")
        await page.wait_for_function(
            "() => document.getElementById('publish-result').textContent === 'delivered to 1'"
        )
        message = await member.data("room")
        assert message["data"] == {"note": "halt new longs"}
        await screenshot(page, "admin", tmp_path)
        assert browser.errors == []
    finally:
        await member.close()


async def test_a_phone_sized_screen(
    browser: Browser, gateway: GatewayProcess, tmp_path: Path
) -> None:
    page = await open_markets(browser, gateway, **PHONE)

    async def fits() -> bool:
        width: Any = await page.evaluate(
            "() => [document.documentElement.scrollWidth, window.innerWidth]"
        )
        return bool(width[0] <= width[1])

    assert await fits()
    await screenshot(page, "phone-markets", tmp_path)
    await page.click("#markets tr[data-symbol='BTC']")
    await page.wait_for_selector("#book-bids tr")
    assert await fits()
    box = await page.locator("#book").bounding_box()
    assert box is not None and box["width"] <= PHONE["width"]
    await page.wait_for_selector("#trades tr")
    await screenshot(page, "phone-market", tmp_path)
    await page.goto(f"{gateway.http}/?token={demo_token()}#account")
    await page.wait_for_selector("#fills tr", timeout=20_000)
    assert await fits()  # wide tables scroll inside their panels
    assert browser.errors == []


async def test_the_dashboard_files_come_from_the_package(gateway: GatewayProcess) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{gateway.http}/") as resp:
            assert resp.status == 200
            csp = resp.headers["Content-Security-Policy"]
            host = gateway.http.removeprefix("http://")
            assert "default-src 'self'" in csp and f"ws://{host} wss://{host};" in csp
            assert resp.headers["Referrer-Policy"] == "no-referrer"
        for path, status in (
            ("/assets/dashboard.js", 200),
            ("/assets/charts.js", 200),
            ("/assets/dashboard.css", 200),
            ("/assets/..%2Fclient.js", 404),
            ("/assets/index.html", 404),
            ("/assets/missing.js", 404),
        ):
            async with http.get(f"{gateway.http}{path}") as resp:
                assert resp.status == status, path
        async with http.post(f"{gateway.http}/api/guest-token") as resp:
            guest = await resp.json()
    # A guest reads market data, and nothing of anyone's account.
    client = await Client.connect(gateway.ws, guest["token"])
    try:
        await client.recv_type("welcome")
        ok = await client.request({"type": "subscribe", "channel": "prices"})
        assert ok["type"] == "subscribed"
        refused = await client.request(
            {"type": "subscribe", "channel": "user_fills", "params": {"userId": DEMO_USER}}
        )
        assert refused["code"] == "FORBIDDEN", json.dumps(refused)
    finally:
        await client.close()


async def test_inside_telegram_the_chat_sees_its_watched_wallet(
    browser: Browser, tmp_path: Path
) -> None:
    """The Mini App: Telegram's signed initData in the fragment logs the page in."""
    bot, chat = "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11", 279058397
    database = tmp_path / "notifier.db"
    repo = Repository(open_database(str(database)))
    await repo.open()
    async with repo.transaction() as t:
        await t.watches.add(chat, DEMO_WALLET, "demo", int(time.time() * 1000))
    await repo.close()
    gateway = gateway_process(
        tmp_path,
        HLGATEWAY_TELEGRAM_BOT_TOKEN=bot,
        HLGATEWAY_TELEGRAM_DATABASE=str(database),
    )
    await gateway.start()
    try:
        fields = {
            "auth_date": str(int(time.time())),
            "user": json.dumps({"id": chat, "first_name": "V", "username": "vlad"}),
        }
        init_data = urlencode({**fields, "hash": sign(fields, bot)})
        page = await browser.page(**PHONE)
        fragment = urlencode({"tgWebAppData": init_data, "tgWebAppVersion": "8.0"})
        await page.goto(f"{gateway.http}/#{fragment}")
        await page.wait_for_function(
            "() => document.querySelector('#who').textContent.includes('tg-279058397')",
            timeout=10_000,
        )
        assert "tgWebAppData" not in page.url and page.url.endswith("#account")
        await page.wait_for_selector("#fills tr", timeout=20_000)
        assert browser.errors == []
        assert NOT_A_TOKEN not in gateway.logs() and "hash=" not in gateway.logs()
    finally:
        await gateway.terminate()
