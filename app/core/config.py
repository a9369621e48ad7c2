"""The tenant's effective memory settings: platform defaults with its overrides from mem.config.

Overrides are whitelisted keys, each with a type and a range; everything else reads one
typed `EffectiveConfig`, never a raw key string.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.errors import BadRequest
from app.settings import MemSettings


@dataclass(frozen=True)
class ConfigKey:
    name: str
    attribute: str  # the EffectiveConfig / MemSettings attribute it overrides
    kind: type
    low: float = 0
    high: float = 1

    def check(self, value: Any) -> None:
        if self.kind is bool:
            ok = isinstance(value, bool)
        else:
            is_number = isinstance(value, int | float) and not isinstance(value, bool)
            ok = (
                is_number
                and (self.kind is float or isinstance(value, int))
                and self.low <= value <= self.high
            )
        if not ok:
            span = "" if self.kind is bool else f" between {self.low:g} and {self.high:g}"
            raise BadRequest(
                f"{self.name} must be a {self.kind.__name__}{span}.", code="invalid_config_value"
            )


# Per-tenant overrides that PUT /config accepts.
CONFIG_KEYS = {
    key.name: key
    for key in (
        ConfigKey("search.default-top-k", "search_default_top_k", int, 1, 100),
        ConfigKey("search.entity-boost-enabled", "search_entity_boost_enabled", bool),
        ConfigKey("memory.short-term-ttl-hours", "short_term_ttl_hours", float, 0.01, 24 * 365),
        ConfigKey("session.window-size", "session_window_size", int, 0, 500),
    )
}
# Keys a tenant may not change: fixed at init, or (history.enabled) not switchable at all, since
# the history is the tenant's audit trail and a tenant that could turn it off would have none.
FIXED_CONFIG_KEYS = ("embedding.dimensions", "search.fts-config", "history.enabled")


@dataclass(frozen=True)
class EffectiveConfig:
    search_default_top_k: int
    search_entity_boost_enabled: bool
    short_term_ttl_hours: float
    session_window_size: int

    @classmethod
    def resolve(cls, settings: MemSettings, overrides: Mapping[str, Any]) -> EffectiveConfig:
        values = {key.attribute: getattr(settings, key.attribute) for key in CONFIG_KEYS.values()}
        for name, value in overrides.items():
            key = CONFIG_KEYS.get(name)
            if key is not None and value is not None:
                values[key.attribute] = key.kind(value)
        return cls(**values)

    def as_settings(self) -> dict[str, Any]:
        """The effective values under their config key names, as GET /config shows them."""
        return {key.name: getattr(self, key.attribute) for key in CONFIG_KEYS.values()}


def check_changes(changes: Mapping[str, Any]) -> None:
    """Refuse unknown, fixed and out-of-range keys; a null value (removing an override) is fine."""
    for name, value in changes.items():
        if name in FIXED_CONFIG_KEYS:
            raise BadRequest(f"{name} cannot be changed by a tenant.", code="config_key_fixed")
        key = CONFIG_KEYS.get(name)
        if key is None:
            raise BadRequest(
                f"Unknown config key {name!r}; allowed: {', '.join(sorted(CONFIG_KEYS))}.",
                code="unknown_config_key",
            )
        if value is not None:
            key.check(value)


def merge_overrides(current: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    # A stored override whose key is no longer tenant-settable (history.enabled) is dropped.
    merged = {name: value for name, value in current.items() if name in CONFIG_KEYS}
    for name, value in changes.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged
