"""Query and form parameters: parsed, checked, and turned into `Filters`.

Every problem is a `BadRequest` naming the parameter, which the app answers with 400.
Values never reach SQL other than as parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Final
from urllib.parse import urlencode

from ..core import MAX_INSTANCE, MAX_NAME
from ..records import Status
from .queries import Filters

PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 500
MAX_ID: Final = 2**63 - 1
MAX_TEXT: Final = 1000  # a step name or prefix longer than this matches nothing real

Params = Mapping[str, Sequence[str]]


class BadRequest(ValueError):
    """A parameter is missing or invalid: the message says which, and why."""


def one(params: Params, name: str) -> str | None:
    """The single value of *name* ('' and absent are None); two values are an error."""
    values = params.get(name, [])
    if len(values) > 1:
        raise BadRequest(f"parameter {name!r} is given {len(values)} times")
    value = values[0].strip() if values else ""
    return value or None


def text(params: Params, name: str, limit: int) -> str | None:
    value = one(params, name)
    if value is not None and (len(value) > limit or "\x00" in value):
        raise BadRequest(f"parameter {name!r} must be at most {limit} characters "
                         "without NUL")
    return value


def integer(params: Params, name: str, *, low: int = 1, high: int = MAX_ID) -> int | None:
    value = one(params, name)
    if value is None:
        return None
    if not value.isdigit() or not low <= int(value) <= high:
        raise BadRequest(f"parameter {name!r} must be a whole number from {low} to {high}, "
                         f"got {value!r}")
    return int(value)


def status(params: Params, name: str = "status") -> int | None:
    value = one(params, name)
    if value is None:
        return None
    try:
        return int(Status(int(value)) if value.isdigit() else Status[value.upper()])
    except (KeyError, ValueError):
        known = ", ".join(s.name.lower() for s in Status)
        raise BadRequest(f"parameter {name!r} must be one of {known}, got {value!r}") from None


def moment(params: Params, name: str) -> datetime | None:
    """An ISO 8601 time (`2025-01-31T12:00`, as a datetime-local field sends it);
    without a zone, UTC."""
    value = one(params, name)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"parameter {name!r} must be a time such as 2025-01-31T12:00 "
                         f"(UTC unless it says), got {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def filters(params: Params) -> Filters:
    """The instance filters of a query string."""
    found = Filters(saga=text(params, "saga", MAX_NAME), status=status(params),
                    step=text(params, "step", MAX_TEXT),
                    prefix=text(params, "prefix", MAX_INSTANCE),
                    since=moment(params, "since"), until=moment(params, "until"))
    if found.since and found.until and found.since >= found.until:
        raise BadRequest("parameter 'since' must be before 'until'")
    return found


def before(params: Params) -> tuple[datetime, int] | None:
    """The keyset cursor of a next page: `before_at` and `before_id`, both or neither."""
    at, id = moment(params, "before_at"), integer(params, "before_id")
    if (at is None) != (id is None):
        raise BadRequest("parameters 'before_at' and 'before_id' go together")
    return None if at is None or id is None else (at, id)


def page_size(params: Params) -> int:
    size = integer(params, "limit", high=MAX_PAGE_SIZE)
    return PAGE_SIZE if size is None else size


def query_string(found: Filters, **more: object) -> str:
    """*found* (and *more*) as a query string, for links that keep the filters."""
    pairs: dict[str, object] = {
        "saga": found.saga, "step": found.step, "prefix": found.prefix,
        "status": None if found.status is None else Status(found.status).name.lower(),
        "since": found.since and found.since.isoformat(),
        "until": found.until and found.until.isoformat(), **more}
    return urlencode({k: v for k, v in pairs.items() if v is not None and v != ""})
