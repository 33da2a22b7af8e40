"""The security settings: parsed from the environment, refused when they cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest

from hlgateway.config import AuthSettings, SettingsError, settings_from_env

AUTH = AuthSettings(secret="x" * 32)


def test_defaults_are_the_seeds() -> None:
    s = settings_from_env({}, auth=AUTH)
    assert s.new_connections_per_minute == 10
    assert (s.max_connections_per_ip, s.max_connections_per_user) == (100, 20)
    assert (s.message_rate, s.message_burst) == (20.0, 100)
    assert s.allow_missing_origin and s.trusted_proxies == ()
    assert s.tls_cert is None and s.tls_key is None


def test_from_the_environment(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("c")
    key.write_text("k")
    s = settings_from_env(
        {
            "HLGATEWAY_NEW_CONNECTIONS_PER_MINUTE": "30",
            "HLGATEWAY_MESSAGE_RATE": "2.5",
            "HLGATEWAY_TRUSTED_PROXIES": "10.0.0.0/8, ::1",
            "HLGATEWAY_ALLOW_MISSING_ORIGIN": "false",
            "HLGATEWAY_REQUEST_HEAD_TIMEOUT": "3",
            "HLGATEWAY_TLS_CERT": str(cert),
        },
        auth=AUTH,
        tls_key=str(key),  # a flag
    )
    assert s.new_connections_per_minute == 30 and s.message_rate == 2.5
    assert s.trusted_proxies == ("10.0.0.0/8", "::1")
    assert not s.allow_missing_origin and s.request_head_timeout == 3
    assert (s.tls_cert, s.tls_key) == (str(cert), str(key))


@pytest.mark.parametrize(
    "env",
    [
        {"HLGATEWAY_TRUSTED_PROXIES": "10.0.0.0/33"},
        {"HLGATEWAY_TRUSTED_PROXIES": "proxy.local"},
        {"HLGATEWAY_ALLOW_MISSING_ORIGIN": "maybe"},
        {"HLGATEWAY_TLS_CERT": "/nonexistent/cert.pem"},
        {"HLGATEWAY_HANDSHAKE_TIMEOUT": "0"},
        {"HLGATEWAY_MESSAGE_BURST": "many"},
    ],
)
def test_settings_that_cannot_work_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        settings_from_env(env, auth=AUTH)
