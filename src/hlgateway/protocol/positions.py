"""A place in a lossless stream: the offset of its last message within an epoch.

One type for every side: the `since` a client sends decodes to it (offset at
least 0, an epoch of at most 64 characters), the broker's streams and reads
speak it, the Python client hands it to the application and back, the notifier
stores it. Fields in the wire's order, offset first.
"""

from __future__ import annotations

from typing import Annotated

import msgspec


class Position(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where a lossless stream is: resume after `offset` in `epoch`.

    Store it with what you did with the message; hand it back as `since=` to resume.
    """

    offset: Annotated[int, msgspec.Meta(ge=0)]
    epoch: Annotated[str, msgspec.Meta(max_length=64)]
