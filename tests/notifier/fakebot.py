"""A fake Telegram Bot API server of the tests' own (aiohttp, real HTTP).

getMe, getUpdates (long polling), sendMessage, editMessageText, deleteMessage,
answerCallbackQuery. Every request is recorded with its arrival time. Tests put
user messages in (`say`), button presses (`press`) and errors on demand (`fail`:
429 with retry_after, 403, a group migration). sendMessage checks the
HTML the way Telegram does (allowed tags, balanced, every `<`, `>` and `&`
escaped, at most 4,096 characters of text) and answers 400 otherwise, and it
notes every request that came to a chat while a 429 it answered still held.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

TAG_RE = re.compile(r"<(/?)([a-z]+)>")
ENTITY_RE = re.compile(r"&(lt|gt|amp|quot);")
ALLOWED_TAGS = {"b", "i", "u", "s", "code", "pre"}
BOT = {"id": 4242, "is_bot": True, "first_name": "Notifier", "username": "hl_test_bot"}


class BadHtml(ValueError):
    pass


def visible_text(text: str) -> str:
    """What Telegram shows for an HTML message; raises BadHtml where it would refuse it."""
    stack: list[str] = []
    out: list[str] = []
    pos = 0
    for match in TAG_RE.finditer(text):
        out.append(text[pos : match.start()])
        pos = match.end()
        closing, tag = match.group(1) == "/", match.group(2)
        if tag not in ALLOWED_TAGS:
            raise BadHtml(f"unsupported start tag {tag!r}")
        if closing:
            if not stack or stack.pop() != tag:
                raise BadHtml(f"unexpected end tag {tag!r}")
        else:
            stack.append(tag)
    out.append(text[pos:])
    if stack:
        raise BadHtml(f"unclosed tag {stack[-1]!r}")
    plain = "".join(out)
    if "<" in plain or ">" in plain:
        raise BadHtml("unescaped < or >")
    if "&" in ENTITY_RE.sub("", plain):
        raise BadHtml("unescaped &")
    return html.unescape(plain)


@dataclass
class Sent:
    at: float
    chat_id: int
    text: str
    status: int
    message_id: int | None = None
    visible: str = ""
    markup: Any = None  # reply_markup, decoded


@dataclass
class Edit:
    at: float
    chat_id: int
    message_id: int
    text: str
    visible: str
    markup: Any


@dataclass
class Failure:
    status: int  # 429, 403, 400 (migrate)
    retry_after: int = 0
    migrate_to: int | None = None
    count: int = 1


@dataclass
class FakeBotApi:
    token: str = "123456:TEST-token"
    requests: list[tuple[float, str]] = field(default_factory=list)  # (time, method)
    sent: list[Sent] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    failures: dict[int, list[Failure]] = field(default_factory=dict)
    holds: dict[int, float] = field(default_factory=dict)  # chat -> 429 hold end
    forbidden: set[int] = field(default_factory=set)
    updates: list[dict[str, Any]] = field(default_factory=list)
    polls: int = 0
    edits: list[Edit] = field(default_factory=list)
    deleted: list[tuple[int, int]] = field(default_factory=list)  # (chat, message id)
    answers: list[tuple[str, str | None]] = field(default_factory=list)  # (query id, text)

    def __post_init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._new_update = asyncio.Event()
        self.webhook: tuple[str, str] | None = None  # (url, secret) once set
        # Called as a sendMessage is accepted, just before the answer goes out.
        self.on_accept: Callable[[Sent], None] | None = None
        self._next_update = 1
        self._next_message = 1
        self._forced: list[dict[str, Any]] = []  # replayed updates, delivered whatever the offset
        self.port = 0

    # -- for tests ---------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def say(self, chat_id: int, text: str, chat_type: str = "private") -> int:
        """A user writes to the bot (for getUpdates); returns the update id."""
        update = self.update(chat_id, text, chat_type)
        self.updates.append(update)
        self._new_update.set()
        return int(update["update_id"])

    def update(self, chat_id: int, text: str, chat_type: str = "private") -> dict[str, Any]:
        """A new update, as Telegram would post it to a webhook."""
        update_id = self._next_update
        self._next_update += 1
        return {
            "update_id": update_id,
            "message": {
                "message_id": 10_000 + update_id,
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": chat_type},
                "from": {"id": abs(chat_id), "is_bot": False, "first_name": "U"},
                "text": text,
            },
        }

    def press(self, chat_id: int, message_id: int, data: str) -> int:
        """The user presses a button (callback data `data`) under one of our messages."""
        update_id = self._next_update
        self._next_update += 1
        self.updates.append(
            {
                "update_id": update_id,
                "callback_query": {
                    "id": f"q{update_id}",
                    "from": {"id": abs(chat_id), "is_bot": False, "first_name": "U"},
                    "chat_instance": str(chat_id),
                    "message": {
                        "message_id": message_id,
                        "date": int(time.time()),
                        "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
                        "text": "",
                    },
                    "data": data,
                },
            }
        )
        self._new_update.set()
        return update_id

    def replay(self, update_id: int) -> None:
        """Telegram delivers an update again, even below the offset the bot asked from
        (a retried callback): the bot must see that it handled it already."""
        (update,) = [u for u in self.updates if u["update_id"] == update_id]
        self._forced.append(update)
        self._new_update.set()

    def with_buttons(self, chat_id: int) -> list[Sent]:
        """Our messages to `chat_id` that carry callback buttons."""
        return [s for s in self.delivered(chat_id) if s.markup and _callbacks(s.markup)]

    def current(self, chat_id: int, message_id: int) -> str:
        """What a message of ours shows now (its last edit)."""
        edited = [e for e in self.edits if (e.chat_id, e.message_id) == (chat_id, message_id)]
        if edited:
            return edited[-1].visible
        return next(s.visible for s in self.delivered(chat_id) if s.message_id == message_id)

    def fail(self, chat_id: int, failure: Failure) -> None:
        self.failures.setdefault(chat_id, []).append(failure)

    def delivered(self, chat_id: int) -> list[Sent]:
        return [s for s in self.sent if s.chat_id == chat_id and s.status == 200]

    def texts(self, chat_id: int) -> list[str]:
        return [s.visible for s in self.delivered(chat_id)]

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        self._new_update.set()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- the API ---------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.Response:
        now = time.time()
        method = request.match_info["method"]
        self.requests.append((now, method))
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        params = await _params(request)
        if method == "getMe":
            return _ok(BOT)
        if method == "getUpdates":
            return await self._get_updates(params)
        if method == "sendMessage":
            return self._send_message(now, params)
        if method == "editMessageText":
            return self._edit(now, params)
        if method == "deleteMessage":
            self.deleted.append((int(params["chat_id"]), int(params["message_id"])))
            return _ok(True)
        if method == "answerCallbackQuery":
            self.answers.append((str(params["callback_query_id"]), params.get("text")))
            return _ok(True)
        if method == "setWebhook":
            self.webhook = (str(params["url"]), str(params.get("secret_token", "")))
            return _ok(True)
        if method == "deleteWebhook":
            self.webhook = None
            return _ok(True)
        if method in ("close", "logOut"):
            return _ok(True)
        return _error(404, "Not Found: method not found")

    async def _get_updates(self, params: dict[str, Any]) -> web.Response:
        self.polls += 1
        offset = int(params.get("offset") or 0)
        timeout = float(params.get("timeout") or 0)
        deadline = time.monotonic() + min(timeout, 5.0)
        while True:
            ready = [u for u in self.updates if u["update_id"] >= offset]
            if self._forced:
                ready = [*self._forced, *ready]
                self._forced.clear()
            if ready or time.monotonic() >= deadline:
                return _ok(ready[: int(params.get("limit") or 100)])
            self._new_update.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_update.wait(), deadline - time.monotonic())

    def _edit(self, now: float, params: dict[str, Any]) -> web.Response:
        chat_id, message_id = int(params["chat_id"]), int(params["message_id"])
        text = str(params.get("text", ""))
        if not any(s.message_id == message_id for s in self.delivered(chat_id)):
            return _error(400, "Bad Request: message to edit not found")
        try:
            visible = visible_text(text) if params.get("parse_mode") == "HTML" else text
        except BadHtml as exc:
            return _error(400, f"Bad Request: can't parse entities: {exc}")
        markup = params.get("reply_markup")
        markup = json.loads(markup) if isinstance(markup, str) else markup
        self.edits.append(Edit(now, chat_id, message_id, text, visible, markup))
        return _ok(
            {
                "message_id": message_id,
                "date": int(now),
                "chat": {"id": chat_id, "type": "private"},
                "text": visible,
            }
        )

    def _send_message(self, now: float, params: dict[str, Any]) -> web.Response:
        chat_id = int(params["chat_id"])
        text = str(params.get("text", ""))
        held = self.holds.get(chat_id)
        if held is not None and now < held:
            self.violations.append(f"chat {chat_id}: request {held - now:.3f}s before retry_after")
        queue = self.failures.get(chat_id)
        if queue:
            failure = queue[0]
            failure.count -= 1
            if failure.count <= 0:
                queue.pop(0)
            self.sent.append(Sent(now, chat_id, text, failure.status))
            if failure.status == 429:
                self.holds[chat_id] = now + failure.retry_after
                return _error(
                    429,
                    f"Too Many Requests: retry after {failure.retry_after}",
                    {"retry_after": failure.retry_after},
                )
            if failure.status == 403:
                self.forbidden.add(chat_id)
            elif failure.migrate_to is not None:
                return _error(
                    400,
                    "Bad Request: group chat was upgraded to a supergroup chat",
                    {"migrate_to_chat_id": failure.migrate_to},
                )
        if chat_id in self.forbidden:
            self.sent.append(Sent(now, chat_id, text, 403))
            return _error(403, "Forbidden: bot was blocked by the user")
        try:
            visible = visible_text(text) if params.get("parse_mode") == "HTML" else text
        except BadHtml as exc:
            self.sent.append(Sent(now, chat_id, text, 400))
            return _error(400, f"Bad Request: can't parse entities: {exc}")
        if len(visible) > 4096:
            self.sent.append(Sent(now, chat_id, text, 400))
            return _error(400, "Bad Request: message is too long")
        message_id = self._next_message
        self._next_message += 1
        markup = params.get("reply_markup")
        markup = json.loads(markup) if isinstance(markup, str) else markup
        accepted = Sent(now, chat_id, text, 200, message_id, visible, markup)
        self.sent.append(accepted)
        if self.on_accept is not None:
            self.on_accept(accepted)
        return _ok(
            {
                "message_id": message_id,
                "date": int(now),
                "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
                "text": visible,
            }
        )


async def _params(request: web.Request) -> dict[str, Any]:
    if request.content_type == "application/json":
        body = await request.json()
        return dict(body) if isinstance(body, dict) else {}
    form = await request.post()
    out: dict[str, Any] = {}
    for key, value in form.items():
        out[key] = value if isinstance(value, str) else str(value)
    return out


def _callbacks(markup: Any) -> list[str]:
    rows = markup.get("inline_keyboard", []) if isinstance(markup, dict) else []
    return [b["callback_data"] for row in rows for b in row if "callback_data" in b]


def buttons_of(sent: Sent) -> dict[str, str]:
    """label -> callback data of a message's buttons."""
    rows = sent.markup.get("inline_keyboard", []) if isinstance(sent.markup, dict) else []
    return {b["text"]: b["callback_data"] for row in rows for b in row if "callback_data" in b}


def _ok(result: Any) -> web.Response:
    return web.json_response({"ok": True, "result": result})


def _error(code: int, description: str, parameters: dict[str, Any] | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.Response(text=json.dumps(body), status=code, content_type="application/json")
