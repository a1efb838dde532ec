"""Masking of secrets (slot tokens, room secrets, pins, keys) for logs and messages.

A masked secret lets an operator tell two secrets apart, or recognise one they
already know, without the log giving it away:

=================  ===========================  ============
length             shown                        example
=================  ===========================  ============
0                  ``''``                       ``''``
1 … 8              ``***``                      ``***``
9 … 15             first 2 + ``…`` + last 2     ``se…et``
16 and more        first 3 + ``…`` + last 4     ``tok…a1f3``
=================  ===========================  ============

Short secrets show nothing at all: revealing any character of an eight-character pin
would make guessing it much easier; longer ones show less than half of themselves.
The length is counted in characters (code points).
"""

from __future__ import annotations

__all__ = ["mask"]

_HIDDEN_UP_TO = 8
_LONG_FROM = 16


def mask(secret: str) -> str:
    """Return a form of ``secret`` that is safe to log (see the module's table)."""
    if not secret:
        return "''"
    if len(secret) <= _HIDDEN_UP_TO:
        return "***"
    if len(secret) < _LONG_FROM:
        return f"{secret[:2]}…{secret[-2:]}"
    return f"{secret[:3]}…{secret[-4:]}"
