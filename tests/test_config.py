"""Settings typed once: the environment, a TOML file and flags converted into Settings,
with every bad setting named at once (`hlgateway check-config`)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from hlgateway.config import Settings, SettingsError, env_name, load_settings, setting_names

SECRET = {"JWT_SECRET": "s" * 32}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hlgateway.toml"
    path.write_text(text)
    return path


def test_every_setting_has_its_environment_variable_and_toml_key(tmp_path: Path) -> None:
    assert len(setting_names()) > 40 and "auth" not in setting_names()
    # One variable per field, converted to the field's type.
    s = load_settings(
        {**SECRET, env_name("upstream_max_links"): "3", env_name("compression"): "off"}
    )
    assert s.upstream_max_links == 3 and s.compression is False
    f = load_settings(SECRET, config_file=write(tmp_path, "upstream_max_links = 4\n"))
    assert f.upstream_max_links == 4


def test_flags_over_environment_over_file_over_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, 'port = 9001\nhost = "0.0.0.0"\nmessage_rate = 5\nlog_format = "json"\n')
    env = {**SECRET, "HLGATEWAY_PORT": "9002", "HLGATEWAY_CONFIG": str(path)}
    s = load_settings(env, port=9003)
    assert (s.port, s.host, s.message_rate, s.log_format) == (9003, "0.0.0.0", 5.0, "json")
    assert load_settings(env).port == 9002
    assert s.max_rooms == Settings.max_rooms  # untouched: the default


def test_lists_from_the_environment_and_from_toml(tmp_path: Path) -> None:
    s = load_settings({**SECRET, "HLGATEWAY_ALLOWED_ORIGINS": "https://a.example, https://b"})
    assert s.allowed_origins == ("https://a.example", "https://b")
    path = write(tmp_path, 'trusted_proxies = ["10.0.0.0/8", "::1"]\n')
    assert load_settings(SECRET, config_file=path).trusted_proxies == ("10.0.0.0/8", "::1")


def test_the_auth_table_and_its_environment(tmp_path: Path) -> None:
    key = tmp_path / "pub.pem"
    key.write_text("-----BEGIN PUBLIC KEY-----\n...\n")
    path = write(tmp_path, f'[auth]\nalgorithms = ["RS256"]\npublic_key_file = "{key}"\n')
    s = load_settings({"JWT_AUDIENCE": "desk"}, config_file=path)
    assert s.auth.uses_public_key and s.auth.public_key == key.read_text()
    assert s.auth.audience == "desk"


def test_the_dev_secret_is_asked_for_only_when_nothing_is_configured() -> None:
    asked: list[bool] = []

    def dev() -> str:
        asked.append(True)
        return "dev" * 11

    assert load_settings(SECRET, dev_secret=dev).auth.secret == SECRET["JWT_SECRET"]
    assert asked == []
    assert load_settings({}, dev_secret=dev).auth.secret == "dev" * 11
    assert asked == [True]


def test_every_bad_setting_is_named_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'port = "http"\nheartbeat_interval = -1\nlog_format = "xml"\nnonsense = 1\n'
        '[auth]\nleeway_seconds = "soon"\n',
    )
    env = {
        "HLGATEWAY_MESSAGE_RATE": "fast",
        "HLGATEWAY_COMPRESSION": "maybe",
        "HLGATEWAY_TRUSTED_PROXIES": "proxy.local",
        "HLGATEWAY_TLS_CERT": "/nonexistent/cert.pem",
    }
    with pytest.raises(SettingsError) as caught:
        load_settings(env, config_file=path)
    problems = "\n".join(caught.value.problems)
    for named in (
        "port",
        "heartbeat_interval",
        "log_format",
        "nonsense: unknown setting",
        "leeway_seconds",
        "HLGATEWAY_MESSAGE_RATE",
        "HLGATEWAY_COMPRESSION",
        "proxy.local",
        "--tls-key",  # a cert without its key
        "/nonexistent/cert.pem",
        "JWT_SECRET is required",
    ):
        assert named in problems, named
    assert len(caught.value.problems) == 11


def test_the_upstream_source_address_must_be_an_address_of_this_machine() -> None:
    assert load_settings(SECRET).upstream_source_address is None
    env = {**SECRET, env_name("upstream_source_address"): "127.0.0.2"}
    assert load_settings(env).upstream_source_address == "127.0.0.2"
    for bad, reason in (
        ("10.0.0.300", "not an IP address"),
        ("192.0.2.1", "not an address of this machine"),  # TEST-NET-1: never local
    ):
        with pytest.raises(SettingsError, match=reason) as caught:
            load_settings({**SECRET, env_name("upstream_source_address"): bad})
        assert "HLGATEWAY_UPSTREAM_SOURCE_ADDRESS" in str(caught.value)
    with pytest.raises(SettingsError, match="upstream_max_poll_interval"):
        load_settings(SECRET, upstream_poll_interval=10, upstream_max_poll_interval=5)


@pytest.mark.parametrize(
    "text", ["port = [", "[auth]\nalgorithms = 3\n", "auth = 1\n", "port = 70000\n"]
)
def test_a_bad_file_is_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(SettingsError):
        load_settings(SECRET, config_file=write(tmp_path, text))


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"nope\.toml"):
        load_settings(SECRET, config_file=tmp_path / "nope.toml")


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hlgateway",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_check_config_command(tmp_path: Path) -> None:
    good = write(tmp_path, 'port = 9000\nlog_format = "json"\n')
    env = {"PATH": "/usr/bin:/bin", **SECRET}
    code, out, _ = await run_cli("check-config", "--config", str(good), env=env)
    assert code == 0 and "config OK" in out and "9000" in out
    code, out, _ = await run_cli(
        "check-config", "--config", str(good), "--upstream-source-address", "127.0.0.3", env=env
    )
    assert code == 0 and "from 127.0.0.3" in out
    code, _, err = await run_cli("check-config", "--upstream-source-address", "192.0.2.1", env=env)
    assert code == 2 and "HLGATEWAY_UPSTREAM_SOURCE_ADDRESS" in err and "not an address" in err
    bad = tmp_path / "bad.toml"
    bad.write_text('port = "x"\nmax_rooms = -1\n')
    code, _, err = await run_cli(
        "check-config", "--config", str(bad), env={**env, "HLGATEWAY_WRITE_TIMEOUT": "0"}
    )
    assert code == 2
    assert "3 bad setting(s)" in err
    assert "port" in err and "max_rooms" in err and "HLGATEWAY_WRITE_TIMEOUT" in err
    # `serve` refuses the same settings the same way, before starting anything.
    code, _, err = await run_cli("serve", "--config", str(bad), env=env)
    assert code == 2 and "2 bad setting(s)" in err
