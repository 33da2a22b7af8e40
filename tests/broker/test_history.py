"""StreamHistory against a model: random publishes, trims and reads since a position."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hlgateway.broker.base import Retention
from hlgateway.broker.history import StreamHistory
from hlgateway.protocol.positions import Position

# (kind, value): publish after `value` seconds, or read since `value` (an offset).
steps = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.floats(min_value=0, max_value=30)),
        st.tuples(st.just("read"), st.integers(min_value=-3, max_value=60)),
        st.tuples(st.just("read_other_epoch"), st.integers(min_value=0, max_value=60)),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(
    steps=steps,
    size=st.integers(min_value=1, max_value=8),
    extra=st.integers(min_value=0, max_value=8),
    ttl=st.floats(min_value=1, max_value=60),
)
def test_history_matches_model(
    steps: list[tuple[str, float]], size: int, extra: int, ttl: float
) -> None:
    retention = Retention(size=size, ttl=ttl, max_size=size + extra)
    now = 0.0
    history = StreamHistory("e1", retention, now)
    model: list[tuple[int, float, bytes]] = []  # every message ever: offset, time, payload
    for kind, value in steps:
        if kind == "publish":
            now += value
            payload = b"m%d" % (len(model) + 1)
            assert history.append(payload, now) == len(model) + 1
            model.append((len(model) + 1, now, payload))
            continue
        offset = int(value)
        # The model's retention: the newest messages, dropped only when beyond
        # `size` and older than `ttl`, or beyond `max_size`.
        kept = _kept(model, retention, now)
        epoch = "e1" if kind == "read" else "e2"
        got = history.since(Position(offset, epoch)) if offset >= 0 else None
        if offset < 0:
            continue
        head = len(model)
        first = kept[0][0] if kept else head + 1
        if epoch != "e1" or offset > head or offset + 1 < first:
            assert got is None  # never a partial replay
        else:
            assert got is not None
            assert [(p.offset, p.payload) for p in got] == [
                (o, p) for o, _, p in kept if o > offset
            ]
        assert history.position == Position(head, "e1")


def _kept(
    model: list[tuple[int, float, bytes]], retention: Retention, now: float
) -> list[tuple[int, float, bytes]]:
    # Trimming happens at each append; between appends time passes without a
    # trim, so compute what the last append left (reads do not trim).
    kept: list[tuple[int, float, bytes]] = []
    for entry in model:
        kept.append(entry)
        at = entry[1]
        while len(kept) > retention.max_size or (
            len(kept) > retention.size and at - kept[0][1] > retention.ttl
        ):
            kept.pop(0)
    return kept


def test_trim_by_age_keeps_the_last_size_messages() -> None:
    history = StreamHistory("e", Retention(size=2, ttl=10, max_size=100), 0.0)
    for t in range(5):
        history.append(b"x", float(t))
    assert len(history) == 5
    history.trim(100.0)
    assert len(history) == 2 and history.first_offset == 4
    assert history.since(Position(3, "e")) is not None
    assert history.since(Position(2, "e")) is None


def test_empty_stream_recovers_from_zero() -> None:
    history = StreamHistory("e", Retention(), 0.0)
    assert history.since(Position(0, "e")) == []
    assert history.since(Position(1, "e")) is None  # an offset the stream never reached
