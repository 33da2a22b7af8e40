"""Logs: text lines or JSON objects, one a line, tokens redacted either way."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from hlgateway import logs
from tests.helpers import Client, GatewayProcess, alice_token, free_port

TOKEN = alice_token()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_the_fields_an_operator_filters_on(restore_logging: None) -> None:
    stream = io.StringIO()
    logs.configure("INFO", "json", stream)
    log = logging.getLogger("hlgateway.test")
    log.info("client %s connected", "c1", extra={"client_id": "c1", "ip": "10.0.0.9", "user": "al"})
    log.debug("not at INFO")
    try:
        raise ValueError(f"bad token={TOKEN}")
    except ValueError:
        log.exception("failed for Bearer %s", TOKEN)
    first, second = lines(stream)
    assert first["level"] == "INFO" and first["logger"] == "hlgateway.test"
    assert first["msg"] == "client c1 connected"
    assert (first["client_id"], first["ip"], first["user"]) == ("c1", "10.0.0.9", "al")
    assert str(first["ts"]).endswith("Z") and "T" in str(first["ts"])
    assert second["level"] == "ERROR" and "ValueError" in str(second["exc"])
    assert TOKEN not in stream.getvalue() and "[redacted]" in str(second["msg"])
    assert "[redacted]" in str(second["exc"])


def test_text_lines_stay_as_before(restore_logging: None) -> None:
    stream = io.StringIO()
    logs.configure("INFO", "text", stream)
    logging.getLogger("hlgateway.test").warning("GET /ws?token=%s", TOKEN)
    text = stream.getvalue()
    assert " WARNING hlgateway.test: GET /ws?token=[redacted]" in text and TOKEN not in text


async def test_a_gateway_process_logs_json_with_the_clients_fields(tmp_path: Path) -> None:
    gateway = GatewayProcess(
        free_port(), "--log-format", "json", log_file=tmp_path / "log", HLGATEWAY_LOG_LEVEL="INFO"
    )
    await gateway.start()
    client = await Client.connect(gateway.ws, TOKEN)
    welcome = await client.recv_type("welcome")
    await client.close()
    assert await gateway.terminate() == 0
    records = [json.loads(line) for line in gateway.logs().splitlines()]  # every line is JSON
    connected = next(
        r for r in records if str(r["msg"]).startswith("client ") and "connected" in r["msg"]
    )
    assert connected["client_id"] == welcome["clientId"] and connected["user"] == "alice"
    assert connected["ip"] == "127.0.0.1"
    health = next(r for r in records if r["logger"] == "aiohttp.access")
    assert health["ip"] == "127.0.0.1" and "/health" in str(health["msg"])
    assert TOKEN not in gateway.logs()
