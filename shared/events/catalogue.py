"""Event base class and the registry that maps a CloudEvents `type` to its pydantic model."""

import re
from collections.abc import Callable
from typing import ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict


class Event(BaseModel):
    """A domain event body. Small: ids, codes, dates, categories; never free text or contact details."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Set by @event_type: the CloudEvents type, reverse-DNS with a version.
    ce_type: ClassVar[str] = ""


class UnknownEventType(LookupError):
    """A message carried a `ce_type` no model is registered for."""


E = TypeVar("E", bound=type[Event])

_REGISTRY: dict[str, type[Event]] = {}
_TYPE_NAME = re.compile(r"nz\.childrensteams(\.[a-z][a-z0-9_]*)+\.v[0-9]+")


def event_type(name: str) -> Callable[[E], E]:
    """Register an event model under its CloudEvents type, e.g. `nz.childrensteams.referral.received.v1`."""
    if not _TYPE_NAME.fullmatch(name):
        raise ValueError(f"event type {name!r} must be reverse-DNS under nz.childrensteams and end in .vN")

    def register(model: E) -> E:
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not model:
            raise ValueError(f"event type {name!r} is already registered to {existing.__qualname__}")
        model.ce_type = name
        _REGISTRY[name] = model
        return model

    return register


def model_for(name: str) -> type[Event]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownEventType(name) from None


def registered_types() -> dict[str, type[Event]]:
    return dict(_REGISTRY)
