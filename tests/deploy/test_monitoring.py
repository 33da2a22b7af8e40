"""deploy/: the Grafana board and the alert rules name only metrics a live gateway exports,
counters through rate()/increase() and gauges as levels; /metrics passes promtool;
the example config passes check-config; the deploy files name only real settings."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hlgateway.config import CONFIG_ENV, env_name, load_settings, setting_names
from tests.helpers import Client, GatewayServer, alice_token, check_metrics

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


async def metrics_text(server: GatewayServer) -> str:
    """A live gateway's /metrics, after data has flowed to a client."""
    client = await Client.connect(server.ws, alice_token())
    try:
        await client.recv_type("welcome")
        await client.request({"type": "subscribe", "channel": "prices"})
        await client.data("prices")  # the labelled counters exist from the first message
        async with aiohttp.ClientSession() as http, http.get(f"{server.http}/metrics") as resp:
            return await resp.text()
    finally:
        await client.close()


def sample_names(text: str) -> set[str]:
    return {
        match.group(1)
        for line in text.splitlines()
        if line and not line.startswith("#") and (match := SAMPLE.match(line))
    }


def sample_types(text: str) -> dict[str, str]:
    """Each sample name and the type of its family (a histogram's _bucket is a histogram's)."""
    return {
        sample.name: family.type
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_every_query_names_a_metric_the_gateway_exports(server: GatewayServer) -> None:
    exported = sample_names(await metrics_text(server))
    queries = dashboard_queries() + alert_queries()
    assert len(dashboard_queries()) >= 10 and len(alert_queries()) >= 6
    named = {name for query in queries for name in METRIC.findall(query)}
    assert named, "no hlgateway metric named at all"
    assert named - exported == set(), f"not exported: {sorted(named - exported)}"


async def test_live_metrics_pass_promtool(server: GatewayServer) -> None:
    checked = check_metrics((await metrics_text(server)).encode())
    assert checked.returncode == 0 and not checked.stdout + checked.stderr, checked


# rate() and increase() want counters (they take a restart's reset as one); delta() and
# a plain value want gauges (rate() of a gauge is meaningless).
COUNTER_FUNCTION = re.compile(r"\b(rate|increase|irate)\((hlgateway_[a-z0-9_]+)")
GAUGE_FUNCTION = re.compile(r"\b(delta|deriv|idelta)\((hlgateway_[a-z0-9_]+)")


async def test_queries_treat_counters_as_counters(server: GatewayServer) -> None:
    typed = sample_types(await metrics_text(server))
    for query in dashboard_queries() + alert_queries():
        for function, name in COUNTER_FUNCTION.findall(query):
            assert typed[name] in ("counter", "histogram"), f"{function}() of a {typed[name]}"
        for function, name in GAUGE_FUNCTION.findall(query):
            assert typed[name] == "gauge", f"{function}({name}) of a {typed[name]}: use increase()"
        bare = set(METRIC.findall(query)) - {n for _, n in COUNTER_FUNCTION.findall(query)}
        for name in bare - {n for _, n in GAUGE_FUNCTION.findall(query)}:
            assert typed[name] == "gauge", f"{query}: a {typed[name]} read as a level"


def test_the_alerts_cover_what_an_operator_is_paged_for() -> None:
    covered = {name for query in alert_queries() for name in METRIC.findall(query)}
    for metric in (
        "hlgateway_upstream_degraded",
        "hlgateway_fills_recovered_total",
        "hlgateway_slow_consumer_closes_total",
        "hlgateway_queue_bytes",
        "hlgateway_delivery_latency_seconds_bucket",
    ):
        assert metric in covered, metric


def test_the_example_config_file_passes_check_config() -> None:
    settings = load_settings({}, config_file=DEPLOY / "hlgateway.toml", dev_secret=lambda: "x")
    assert settings.log_format == "json" and settings.upstream == "mainnet"


# Settings named by the deploy files before they existed (none left: HLGATEWAY_BROKER is real).
PENDING: set[str] = set()


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
