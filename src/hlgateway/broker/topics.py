"""Topics as other processes see them: a short stable id, and a spec to rebuild one.

The id names the topic's Redis keys and PUB/SUB channel (a hash of the
topic's identity: channel, canonical params, wallets), so that keys stay short
whatever the params. The spec travels in the demand set (upstream/ownership.py):
the node that holds a topic's upstream lease may never have seen a client ask
for it, and rebuilds the topic from the spec alone.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from hlgateway.protocol.channels import Topic


class TopicSpec(msgspec.Struct, frozen=True, array_like=True):
    channel: str
    params_json: str
    wallets: tuple[str, ...]
    symbols: tuple[str, ...] | None
    depth: int
    throttle_ms: int


_encode = msgspec.json.Encoder().encode
_decode_spec = msgspec.json.Decoder(TopicSpec).decode
_decode_params = msgspec.json.Decoder(dict[str, Any]).decode


def topic_id(topic: Topic) -> str:
    identity = b"\0".join(
        (topic.channel.encode(), topic.params_json, ",".join(topic.wallets).encode())
    )
    return hashlib.blake2b(identity, digest_size=10).hexdigest()


def encode_topic(topic: Topic) -> bytes:
    return _encode(
        TopicSpec(
            topic.channel,
            topic.params_json.decode(),
            topic.wallets,
            topic.symbols,
            topic.depth,
            topic.throttle_ms,
        )
    )


def decode_topic(raw: bytes) -> Topic:
    """The topic a spec describes; raises msgspec.DecodeError/ValidationError if malformed."""
    spec = _decode_spec(raw)
    return Topic(
        channel=spec.channel,
        params_json=spec.params_json.encode(),
        wallets=spec.wallets,
        params=_decode_params(spec.params_json),
        symbols=spec.symbols,
        depth=spec.depth,
        throttle_ms=spec.throttle_ms,
    )
