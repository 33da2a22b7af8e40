"""deploy/: the Grafana board and the alert rules name only metrics a live gateway exports;
the example config passes check-config; the deploy files name only real settings."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hlgateway.config import CONFIG_ENV, env_name, load_settings, setting_names
from tests.helpers import Client, GatewayServer, alice_token

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRIC = re.compile(r"\bhlgateway_[a-z0-9_]+")
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)")


def dashboard_queries() -> list[str]:
    board = json.loads((DEPLOY / "grafana" / "hlgateway.json").read_text())
    queries: list[str] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            queries.extend(t["expr"] for t in panel.get("targets", []))
            walk(panel.get("panels", []))

    walk(board["panels"])
    return queries


def alert_queries() -> list[str]:
    text = (DEPLOY / "prometheus" / "alerts.yml").read_text()
    return [m.group(1).strip() for m in re.finditer(r"^\s+expr:\s*(.+)$", text, re.M)]


async def scrape(server: GatewayServer) -> set[str]:
    """The sample names on a live gateway's /metrics, after data has flowed to a client."""
    client = await Client.connect(server.ws, alice_token())
    try:
        await client.recv_type("welcome")
        await client.request({"type": "subscribe", "channel": "prices"})
        await client.data("prices")  # the labelled counters exist from the first message
        async with aiohttp.ClientSession() as http, http.get(f"{server.http}/metrics") as resp:
            text = await resp.text()
    finally:
        await client.close()
    return {
        match.group(1)
        for line in text.splitlines()
        if line and not line.startswith("#") and (match := SAMPLE.match(line))
    }


async def test_every_query_names_a_metric_the_gateway_exports(server: GatewayServer) -> None:
    exported = await scrape(server)
    queries = dashboard_queries() + alert_queries()
    assert len(dashboard_queries()) >= 10 and len(alert_queries()) >= 6
    named = {name for query in queries for name in METRIC.findall(query)}
    assert named, "no hlgateway metric named at all"
    assert named - exported == set(), f"not exported: {sorted(named - exported)}"


def test_the_alerts_cover_what_an_operator_is_paged_for() -> None:
    covered = {name for query in alert_queries() for name in METRIC.findall(query)}
    for metric in (
        "hlgateway_upstream_degraded",
        "hlgateway_fills_recovered",
        "hlgateway_slow_consumer_closes",
        "hlgateway_queue_bytes",
        "hlgateway_delivery_latency_seconds_bucket",
    ):
        assert metric in covered, metric


def test_the_example_config_file_passes_check_config() -> None:
    settings = load_settings({}, config_file=DEPLOY / "hlgateway.toml", dev_secret=lambda: "x")
    assert settings.log_format == "json" and settings.upstream == "mainnet"


# Settings the lead's scale-out work adds (docs/operations.md); named by compose already.
PENDING = {"HLGATEWAY_BROKER"}


@pytest.mark.parametrize(
    "name", ["Dockerfile", "compose.yml", "systemd/hlgateway.service", "hlgateway.toml"]
)
def test_deploy_files_name_only_real_settings(name: str) -> None:
    text = (DEPLOY / name).read_text()
    known = {env_name(n) for n in setting_names()} | {CONFIG_ENV}
    named = set(re.findall(r"\bHLGATEWAY_[A-Z0-9_]+", text))
    assert named - known - PENDING == set()
    if name.endswith(".toml"):
        keys = set(re.findall(r"^([a-z_]+)\s*=", text, re.M))
        assert keys - set(setting_names()) - {"algorithms", "public_key_file"} == set()
