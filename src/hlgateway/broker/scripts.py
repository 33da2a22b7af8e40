"""The Redis engine's Lua scripts: `.lua` files of this package, read once.

Each script is run by its SHA-1 (`EVALSHA`): the connection layer loads every
script when it connects (broker/redis_shard.py), and again when Redis says it
lost them (`NOSCRIPT`: a restarted or flushed Redis), so that the source never
travels with a command.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: bytes
    sha: str


def _load(name: str) -> Script:
    source = (resources.files("hlgateway.broker") / "lua" / f"{name}.lua").read_bytes()
    return Script(name, source, hashlib.sha1(source).hexdigest())


PUBLISH = _load("publish")
COMMIT = _load("commit")
READ = _load("read")
VERIFY = _load("verify")
LEASE_CLAIM = _load("lease_claim")
LEASE_RELEASE = _load("lease_release")

ALL = (PUBLISH, COMMIT, READ, VERIFY, LEASE_CLAIM, LEASE_RELEASE)
