"""Settings typed once: the environment, a TOML file and flags converted into Settings,
with every bad setting named at once (`hlgateway check-config`)."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from hlgateway.auth import issue_token
from hlgateway.config import (
    NotifierSettings,
    Settings,
    SettingsError,
    env_name,
    load_notifier_settings,
    load_settings,
    notifier_env_name,
    notifier_setting_names,
    setting_names,
)

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


def rsa_public_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def test_the_auth_table_and_its_environment(tmp_path: Path) -> None:
    key = tmp_path / "pub.pem"
    key.write_text(rsa_public_pem())
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


def test_an_upstream_that_is_no_network_or_url_is_a_bad_setting() -> None:
    for good in ("sim", "mainnet", "testnet", "ws://10.0.0.5:9000/ws", "wss://h.example/ws"):
        assert load_settings(SECRET, upstream=good).upstream == good
    for bad in ("bogus", "http://h.example/ws", "ws://"):
        with pytest.raises(SettingsError, match="sim, mainnet, testnet or a ws") as caught:
            load_settings(SECRET, upstream=bad)
        assert "upstream (HLGATEWAY_UPSTREAM)" in str(caught.value)


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
    env = {"PATH": "/usr/bin:/bin", "XDG_STATE_HOME": str(tmp_path / "state"), **SECRET}
    code, out, _ = await run_cli("check-config", "--config", str(good), env=env)
    assert code == 0 and "config OK" in out and "9000" in out
    # Where `serve` would keep its state: the default directory of that address.
    assert f"state in {tmp_path / 'state' / 'hlgateway' / 'gateway-127.0.0.1-9000'}" in out
    code, out, _ = await run_cli("check-config", "--state-dir", "none", env=env)
    assert code == 0 and "state in memory only" in out
    code, _, err = await run_cli(
        "check-config", "--state-dir", str(tmp_path), "--broker", "redis://h:1/0", env=env
    )
    assert code == 2 and "no state directory is used" in err
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
    code, _, err = await run_cli("serve", "--upstream", "bogus", env=env)
    assert code == 2 and "1 bad setting(s)" in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["serve", "simulate"])
async def test_a_port_in_use_is_one_line(command: str, tmp_path: Path) -> None:
    """Another process (another gateway, a `make serve` left running) holds the port:
    one line that names the address, exit 2, no traceback."""
    env = {"PATH": "/usr/bin:/bin", "XDG_STATE_HOME": str(tmp_path / "state"), **SECRET}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["--port", str(port)] + (["--state-dir", "none"] if command == "serve" else [])
        code, _, err = await run_cli(command, *args, env=env)
    assert code == 2, err
    assert err.strip().splitlines()[-1] == (
        f"hlgateway: cannot listen on 127.0.0.1:{port}: address already in use "
        "(another process has it: stop it, or pick another --port)"
    )
    assert "Traceback" not in err and "Exception ignored" not in err


async def test_an_algorithm_the_key_does_not_fit_is_named_by_check_config_and_stops_serve(
    tmp_path: Path,
) -> None:
    """RS256 and ES256 with an RSA key: ES256 tokens could never be checked (tests/security/
    test_token_keys.py). Named with the other bad settings; the key itself never."""
    pem = rsa_public_pem()
    key = tmp_path / "pub.pem"
    key.write_text(pem)
    env = {
        "PATH": "/usr/bin:/bin",
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "JWT_ALGORITHMS": "RS256,ES256",
        "JWT_PUBLIC_KEY_FILE": str(key),
        "HLGATEWAY_MAX_ROOMS": "-1",
    }
    for command in ("check-config", "serve"):
        code, out, err = await run_cli(command, "--state-dir", "none", env=env)
        assert code == 2 and "2 bad setting(s)" in err, (out, err)
        assert (
            "JWT_ALGORITHMS: ES256 needs an EC public key on P-256 (secp256r1); "
            "JWT_PUBLIC_KEY is an RSA public key (2048 bits)"
        ) in err
        assert "HLGATEWAY_MAX_ROOMS" in err
        for line in pem.splitlines()[1:-1]:
            assert line not in out + err
    # Without ES256 (and the bad limit) the same key is fine.
    fine = {**env, "JWT_ALGORITHMS": "RS256", "HLGATEWAY_MAX_ROOMS": "20"}
    code, out, err = await run_cli("check-config", "--state-dir", "none", env=fine)
    assert code == 0 and "config OK" in out, err


# -- the notifier's settings, in the same system ----------------------------------------

NOTIFIER_ENV = {"TELEGRAM_BOT_TOKEN": "1:bot", "JWT_SECRET": "s" * 32}


def test_the_notifier_reads_flags_environment_and_its_table(tmp_path: Path) -> None:
    assert set(notifier_setting_names()) >= {"gateway", "database", "info_url", "bot_token"}
    path = write(
        tmp_path,
        'port = 9001\n[notifier]\ngateway = "wss://gw.example/ws"\ncoalesce_ms = 100\n'
        'max_watches = 3\nwebhook_listen = "127.0.0.1:9443"\n',
    )
    env = {**NOTIFIER_ENV, "HLGATEWAY_NOTIFIER_COALESCE_MS": "200", "HLGATEWAY_CONFIG": str(path)}
    s = load_notifier_settings(env, coalesce_ms=300)
    assert (s.gateway, s.coalesce_ms, s.max_watches) == ("wss://gw.example/ws", 300, 3)
    assert load_notifier_settings(env).coalesce_ms == 200
    assert s.webhook_address == ("127.0.0.1", 9443)
    assert s.bot_token == "1:bot" and s.jwt_secret == "s" * 32
    assert s.info_url is None and s.poll_timeout == NotifierSettings.poll_timeout
    # The gateway reads the same file and leaves the [notifier] table alone.
    assert load_settings(SECRET, config_file=path).port == 9001
    assert notifier_env_name("database") == "HLGATEWAY_NOTIFIER_DATABASE"
    assert notifier_env_name("webhook_secret") == "TELEGRAM_WEBHOOK_SECRET"


def test_the_notifier_signs_with_the_auth_secret_of_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[auth]\nsecret = "from-the-file"\n')
    env = {"TELEGRAM_BOT_TOKEN": "1:bot"}
    assert load_notifier_settings(env, config_file=path).jwt_secret == "from-the-file"
    assert load_notifier_settings(env, dev_secret=lambda: "dev").jwt_secret == "dev"
    token = issue_token("x" * 32, "svc", role="admin")
    s = load_notifier_settings({**env, "HLGATEWAY_NOTIFIER_TOKEN": token})
    assert s.token == token and s.jwt_secret is None


def test_every_bad_notifier_setting_is_named_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, '[notifier]\ncoalesce_ms = "soon"\nnonsense = 1\n')
    env = {
        "HLGATEWAY_NOTIFIER_TOKEN": "not-a-jwt",
        "HLGATEWAY_NOTIFIER_GATEWAY": "http://gw/ws",
        "HLGATEWAY_NOTIFIER_INFO_URL": "ftp://x/info",
        "HLGATEWAY_NOTIFIER_DATABASE": "mysql://db",
        "HLGATEWAY_NOTIFIER_POLL_TIMEOUT": "99",
        "HLGATEWAY_NOTIFIER_WEBHOOK_LISTEN": "nowhere",
        "HLGATEWAY_LOG_LEVEL": "LOUD",
    }
    with pytest.raises(SettingsError) as caught:
        load_notifier_settings(env, config_file=path)
    problems = "\n".join(caught.value.problems)
    for named in (
        "coalesce_ms",
        "nonsense: unknown setting",
        "TELEGRAM_BOT_TOKEN is required",
        "HLGATEWAY_NOTIFIER_TOKEN is not a JWT",
        "HLGATEWAY_NOTIFIER_GATEWAY",
        "HLGATEWAY_NOTIFIER_INFO_URL",
        "HLGATEWAY_NOTIFIER_DATABASE",
        "HLGATEWAY_NOTIFIER_POLL_TIMEOUT",
        "HLGATEWAY_NOTIFIER_WEBHOOK_LISTEN",
        "HLGATEWAY_LOG_LEVEL",
    ):
        assert named in problems, named
    assert len(caught.value.problems) == 10
    with pytest.raises(SettingsError, match=r"HLGATEWAY_NOTIFIER_TOKEN \(an admin token"):
        load_notifier_settings({"TELEGRAM_BOT_TOKEN": "1:bot"})


async def test_check_config_checks_the_notifier_too(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", **SECRET}
    code, out, _ = await run_cli("check-config", env=env)
    assert code == 0 and "notifier: not configured" in out
    good = write(tmp_path, '[notifier]\ngateway = "ws://10.0.0.5:8080/ws"\n')
    code, out, _ = await run_cli(
        "check-config", "--config", str(good), env={**env, "TELEGRAM_BOT_TOKEN": "1:bot"}
    )
    assert code == 0 and "notifier config OK" in out and "ws://10.0.0.5:8080/ws" in out
    assert "info API from the gateway" in out
    code, _, err = await run_cli("check-config", env={**env, "HLGATEWAY_NOTIFIER_INFO_URL": "nope"})
    assert code == 2
    assert "hlgateway notifier: 2 bad setting(s)" in err  # no bot token, a bad URL
    assert "TELEGRAM_BOT_TOKEN" in err and "HLGATEWAY_NOTIFIER_INFO_URL" in err
    # `hlgateway notifier` refuses the same way, before starting anything.
    code, _, err = await run_cli("notifier", env={**env, "HLGATEWAY_NOTIFIER_INFO_URL": "nope"})
    assert code == 2 and "2 bad setting(s)" in err
