"""Decoding of socket.io payloads: untrusted JSON values in, typed values or a `Refusal` out.

The messages are the wire contract (docs/protocol.md); clients show them to users.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

MAX_TEXT = 1024  # longest custom name or token we look at; longer is refused, not truncated
MAX_TOKEN = 256  # a longer token is refused before it is compared with anything
_INTEGER = re.compile(r"[+-]?\d{1,15}")


class Refusal(Exception):
    """A request the contract answers with `success: false` and this message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def ack(message: str, **extra: Any) -> dict[str, Any]:
    return {"success": True, "message": message, **extra}


def refused(message: str) -> dict[str, Any]:
    return {"success": False, "message": message}


def shown(value: object, limit: int = 40) -> str:
    """A value as a JavaScript client would print it in a message, cut to `limit` characters."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def as_object(data: object, missing: str) -> dict[str, Any]:
    """The payload as an object; `missing` is the contract's message for no payload."""
    if data is None:
        raise Refusal(missing)
    if not isinstance(data, dict):
        raise Refusal(f"Invalid data provided - expected an object, got {shown(data)}")
    return data


def parse_slot(value: object) -> int:
    """A slot as senders send it: a number or a numeric string ("0")."""
    if isinstance(value, bool):
        raise Refusal(f"An invalid camera slot was provided ({shown(value)})")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value.strip())
    raise Refusal(f"An invalid camera slot was provided ({shown(value)})")


def check_text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise Refusal(f"The {what} has to be a string")
    if len(value) > MAX_TEXT:
        raise Refusal(f"The {what} is too long (at most {MAX_TEXT} characters)")
    return value


@dataclass(frozen=True)
class FeedReport:
    """`set_feed_id`: the sender's Janus publisher id, session and handle."""

    feed_id: int | str
    session_id: int
    handle_id: int
    custom_name: str | None


def _janus_id(value: object, missing: str, not_number: str) -> int:
    if value is None:
        raise Refusal(missing)
    if not is_number(value):
        raise Refusal(not_number)
    if isinstance(value, float):
        if not value.is_integer():
            raise Refusal(not_number)
        value = int(value)
    if not isinstance(value, int) or not 0 < value < 2**53:
        raise Refusal(not_number)
    return value


def parse_feed_report(data: object) -> FeedReport:
    body = as_object(data, "Could not get feed id because no data was provided")
    feed_id = body.get("feedId")
    if feed_id is None:
        raise Refusal("No feed id was provided")
    if isinstance(feed_id, bool) or not isinstance(feed_id, int | str):
        raise Refusal("Feed id has to be a number or a string")
    if isinstance(feed_id, str) and not 0 < len(feed_id) <= 64:
        raise Refusal("Feed id has to be a number or a string")
    session_id = _janus_id(
        body.get("sessionId"), "No session id was provided", "Session id has to be a number"
    )
    handle_id = _janus_id(
        body.get("videoroomId"), "No handle id was provided", "Handle id has to be a number"
    )
    name = body.get("customName")
    custom_name = check_text(name, "custom name") if name is not None else None
    return FeedReport(feed_id, session_id, handle_id, custom_name)


def parse_bitrate_limit(data: object) -> int:
    body = as_object(data, "Got no data in the request")
    value = body.get("bitrateLimit")
    if value is None:
        raise Refusal("Got no bitrate limit in the request")
    if not is_number(value) or value != value or abs(value) == float("inf"):
        raise Refusal("The provided bitrate is not a number")
    return max(0, min(int(value), 2**31 - 1))


def escape_html(text: str) -> str:
    """The original server's escaping of custom names (same entities, so notify lines match)."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#039;")
    )
