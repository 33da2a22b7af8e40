"""One connection's closing handshake (RFC 6455 7.1), sans I/O.

Every decision about ending a connection is made here, once: whether a close
frame is still to be sent and with which code, who closed first, when the TCP
connection may end, and how long to wait for the client on the way. The socket
side (server/connection.py, server/outbox.py) only performs what a step
returns, and sets timers for the `deadline` given here.

    OPEN --close/fail/receive_close--> CLOSING --lost--> CLOSED

Inside CLOSING: our close frame is *pending* (waiting behind queued output),
then *sent*; the client's close is received before or after. Once both are
done, the server closes the TCP connection (it closes first, 7.1.1). When ours
is sent after a protocol violation (failing the connection, 7.1.7: the
client's bytes can no longer be parsed, so no answer is awaited), or the client
never answers, the server hangs up instead: it half-closes (FIN after the close
frame) and reads and discards what the client still sends, bounded in bytes
and time, until the client closes. Closing at once with unread bytes would make
the kernel reset the connection, and a reset can destroy the close frame before
the client reads it (a web server's "lingering close"; an 8 MiB message from a
client still sending it).
"""

from __future__ import annotations

import enum

CLOSE_TIMEOUT = 5.0  # seconds the client has to answer our close
LINGER_TIME = 5.0  # seconds the client has, after our FIN, to finish sending and close
LINGER_BYTES = 64 * 1024 * 1024  # bytes read and discarded after our FIN, at most


class State(enum.IntEnum):
    OPEN = 0
    CLOSING = 1
    CLOSED = 2


class Step(enum.Enum):
    """What the socket side does next."""

    NOTHING = "nothing"
    SEND_CLOSE = "send close"  # queue `frame_code`/`frame_reason` behind pending output
    AWAIT_CLOSE = "await close"  # our close is out: wait for the client's until `deadline`
    HANG_UP = "hang up"  # half-close, discard input until `deadline` or the bound, then close
    CLOSE_NOW = "close now"  # nothing left to read: close the socket (after what is written)
    ABORT = "abort"  # the client overstayed (time or bytes): drop the socket at once


class Closing:
    """The closing state of one connection. Times are the caller's clock (seconds)."""

    __slots__ = (
        "client_first",
        "close_timeout",
        "deadline",
        "discarded",
        "failed",
        "frame_code",
        "frame_reason",
        "hanging_up",
        "linger_bytes",
        "linger_time",
        "open",
        "received",
        "sent",
        "state",
    )

    def __init__(
        self,
        *,
        close_timeout: float = CLOSE_TIMEOUT,
        linger_time: float = LINGER_TIME,
        linger_bytes: int = LINGER_BYTES,
    ) -> None:
        self.close_timeout = close_timeout
        self.linger_time = linger_time
        self.linger_bytes = linger_bytes
        self.state = State.OPEN
        # state is OPEN, as a plain attribute: read on every delivery (the hot path).
        # While open, the client's messages are handled and ours are sent.
        self.open = True
        # The close frame we send (code None: an empty payload).
        self.frame_code: int | None = None
        self.frame_reason = ""
        self.sent = False
        # The client's close frame, once read: (code, reason).
        self.received: tuple[int | None, str] | None = None
        self.client_first: bool | None = None  # None while open
        self.failed = False  # the client broke the protocol: no answer is awaited
        self.hanging_up = False
        self.deadline: float | None = None  # of the wait in progress, if any
        self.discarded = 0  # bytes read after our FIN

    # -- queries --------------------------------------------------------------
    @property
    def close_pending(self) -> bool:
        """A close frame is decided but not yet written."""
        return self.state is State.CLOSING and not self.sent

    # -- decisions ------------------------------------------------------------
    def close(self, code: int | None, reason: str = "") -> Step:
        """We end the connection (shutdown, slow consumer, a session verdict).

        The first decision stands: later ones, ours or a reply to the client's
        close, change nothing.
        """
        if self.state is not State.OPEN:
            return Step.NOTHING
        self._closing(code, reason, client_first=False)
        return Step.SEND_CLOSE

    def fail(self, code: int, reason: str, now: float) -> Step:
        """The client broke the protocol (RFC 6455 7.1.7): say why, then hang up.

        Also when a close of ours is already pending: its frame still goes out,
        but no answer is awaited for it.
        """
        if self.state is State.CLOSED:
            return Step.NOTHING
        self.failed = True
        if self.state is State.OPEN:
            self._closing(code, reason, client_first=False)
            return Step.SEND_CLOSE
        if self.sent and not self.hanging_up:
            return self._hang_up(now)
        return Step.NOTHING

    def receive_close(self, code: int | None, reason: str, now: float) -> Step:
        """The client's close frame arrived."""
        if self.state is State.CLOSED or self.received is not None:
            return Step.NOTHING
        self.received = (code, reason)
        if self.state is State.OPEN:
            # Echo its code (RFC 6455 5.5.1); an empty close is answered empty.
            self._closing(code, "", client_first=True)
            return Step.SEND_CLOSE
        if self.sent and not self.hanging_up:
            return self._hang_up(now)  # the handshake is complete
        return Step.NOTHING  # ours is still pending: the hang-up follows its writing

    def close_written(self, now: float, wait: float | None = None) -> Step:
        """Our close frame is written. `wait`: how long the client has to answer
        it, when not the default (a slow consumer needs longer to read up to it)."""
        if self.state is not State.CLOSING or self.sent:
            return Step.NOTHING
        self.sent = True
        if self.received is not None or self.failed:
            return self._hang_up(now)
        self.deadline = now + (self.close_timeout if wait is None else wait)
        return Step.AWAIT_CLOSE

    def timed_out(self, now: float) -> Step:
        """The `deadline` passed: the client never answered our close, or never
        finished after our FIN."""
        if self.state is not State.CLOSING or self.deadline is None or now < self.deadline:
            return Step.NOTHING
        if not self.hanging_up:
            return self._hang_up(now)
        self.deadline = None
        return Step.ABORT

    def discard(self, size: int) -> Step:
        """`size` bytes arrived after our FIN: thrown away, until the bound."""
        self.discarded += size
        if self.discarded > self.linger_bytes:
            return Step.ABORT
        return Step.NOTHING

    def client_eof(self) -> Step:
        """The client ended its side of the TCP connection."""
        # Open or closing, there is nothing left to read: the socket ends now
        # (open: an abnormal closure, 1006, that no frame can report).
        return Step.NOTHING if self.state is State.CLOSED else Step.CLOSE_NOW

    def lost(self) -> None:
        """The socket is gone, whatever the reason."""
        self.state = State.CLOSED
        self.open = False
        self.deadline = None

    # -- internals --------------------------------------------------------------
    def _closing(self, code: int | None, reason: str, *, client_first: bool) -> None:
        self.state = State.CLOSING
        self.open = False
        self.frame_code = code
        self.frame_reason = reason
        self.client_first = client_first

    def _hang_up(self, now: float) -> Step:
        self.hanging_up = True
        if self.received is not None:
            # The handshake is complete: the client sends nothing after its close,
            # so nothing is left unread, and closing now cannot reset.
            self.deadline = None
            return Step.CLOSE_NOW
        self.deadline = now + self.linger_time
        return Step.HANG_UP
