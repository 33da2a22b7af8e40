"""The state directory: where it is, and one process at a time in it.

The default is per listening address, under the user's state directory
(`$XDG_STATE_HOME/hlgateway/`, else `~/.local/state/hlgateway/`), so that two
gateways on two ports of one machine each keep their own. `--state-dir none`
keeps everything in memory (tests, benchmarks).

A process holds the directory with an advisory lock (`flock`) on its `lock`
file, in which it writes who it is; the kernel lets go of the lock when the
process ends, however it ends (kill -9 too), so a stale file never blocks a
restart. A second process pointed at a held directory refuses to start and
names the holder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hlgateway.broker.base import EngineStartError

LOCK_FILE = "lock"


class StateDirInUse(EngineStartError):
    """Another process holds the state directory (the message names it)."""


def user_state_home(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    state = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "hlgateway"


def default_state_dir(host: str, port: int, env: Mapping[str, str] | None = None) -> Path:
    """The default directory of a gateway listening on host:port."""
    # An IPv6 address or a host name: a file name all the same.
    where = re.sub(r"[^A-Za-z0-9._-]", "_", host or "any")
    return user_state_home(env) / f"gateway-{where}-{port}"


def state_dir_of(
    state_dir: str | None, host: str, port: int, env: Mapping[str, str] | None = None
) -> Path | None:
    """The directory a setting names: None for `none` (in memory only)."""
    if state_dir is None or not state_dir.strip():
        return default_state_dir(host, port, env)
    if state_dir.strip().lower() == "none":
        return None
    return Path(state_dir).expanduser()


class DirectoryLock:
    """This process's hold on a state directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, about: Mapping[str, Any]) -> None:
        """Hold the directory, or raise StateDirInUse naming the holder. `about`
        is written into the lock file for the next one to read (no secrets)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise StateDirInUse(
                f"the state directory {self.directory} is in use by {holder}; "
                "stop that process, or give this one another --state-dir "
                "(HLGATEWAY_STATE_DIR)"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **about,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing lets go of the flock

    @property
    def held(self) -> bool:
        return self._fd is not None


def _read_holder(fd: int) -> str:
    try:
        raw = os.pread(fd, 4096, 0)
        record = json.loads(raw) if raw else {}
    except (OSError, ValueError):
        record = {}
    if not isinstance(record, dict) or "pid" not in record:
        return "another process"
    what = f"process {record['pid']}"
    if record.get("host"):
        what += f" on {record['host']}"
    if record.get("listen"):
        what += f" (hlgateway serve, listening on {record['listen']})"
    if record.get("since"):
        what += f", since {record['since']}"
    return what
