"""What the slot server says that the appliance relies on, defined once for both sides.

The texts are the wire contract (docs/protocol.md): the original server sends them too, and
clients match or show them, so they never change wording.
"""

from __future__ import annotations

from typing import Final

NO_SUCH_SLOT: Final = "This camera slot does not exist"
INVALID_TOKEN: Final = "Invalid token, contact your moderator"
TOKEN_REVOKED: Final = "The provided token is not valid anymore - the feed is not transmitted"

# Refusals that retrying cannot cure: the appliance stops retrying soon and says that a
# person has to change its configuration or the slot.
NEEDS_A_PERSON: Final = frozenset({NO_SUCH_SLOT, INVALID_TOKEN, TOKEN_REVOKED})

# Janus room ids travel as JSON numbers: they must survive a double.
ROOM_RANGE: Final = (1, 2**53 - 1)
ROOM_RANGE_SHOWN: Final = "1..2^53-1"
