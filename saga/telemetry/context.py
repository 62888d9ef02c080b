"""The trace context stored with an instance, as the claim returns it (no OpenTelemetry).

The claim (`claim_due`) packs migration 007's columns into one text:
`'<start traceparent or -> <claims> [<call traceparent>]'`: the W3C `traceparent` of the
span that started the instance, how many times the instance has been claimed, and the
`traceparent` of the `call()` whose step is due (only until that step has finished).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Final

# version-trace_id-parent_id-flags; the all-zero ids are invalid (W3C Trace Context).
_TRACEPARENT: Final = re.compile(r"[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}"
                                 r"-[0-9a-f]{2}")


@dataclass(frozen=True, slots=True)
class StoredTrace:
    """An instance's trace context: the start's and the call's traceparents, if any."""

    start: str | None
    claims: int
    call: str | None = None


def is_traceparent(text: object) -> bool:
    """True for a well-formed W3C traceparent with valid ids."""
    return isinstance(text, str) and _TRACEPARENT.fullmatch(text) is not None


def parse(text: str | None) -> StoredTrace | None:
    """The trace context in a claimed row's trace column; None if there is none (or it
    is not of the expected shape: a row written by hand must not break a step)."""
    return _parse(text) if text else None


@functools.lru_cache(maxsize=1024)  # the steps of one claim share one text
def _parse(text: str) -> StoredTrace | None:
    parts = text.split(" ")
    if len(parts) not in (2, 3) or not parts[1].isdigit():
        return None
    start = parts[0] if is_traceparent(parts[0]) else None
    call = parts[2] if len(parts) == 3 and is_traceparent(parts[2]) else None
    if start is None and call is None:
        return None
    return StoredTrace(start, int(parts[1]), call)
