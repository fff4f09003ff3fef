"""How a registered version is named: `NAME` (its champion), `NAME@alias` or `NAME/version`.
Plain values, no MLflow: the scoring path names versions before it knows whether it needs
MLflow at all (see `aemon.registry.local`)."""

from __future__ import annotations

from dataclasses import dataclass

from aemon.errors import ConfigError

CHAMPION, CHALLENGER = "champion", "challenger"


@dataclass(frozen=True)
class ModelRef:
    """One registered model version, and the alias it was reached through (if any)."""

    name: str
    version: str
    alias: str | None = None
    run_id: str | None = None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def __str__(self) -> str:
        return f"{self.name}/{self.version}" + (f" (@{self.alias})" if self.alias else "")


def parse_ref(ref: str) -> tuple[str, str | None, str | None]:
    """`NAME` | `NAME@alias` | `NAME/version` (optionally `models:/`-prefixed) ->
    (name, alias, version); a bare NAME means NAME@champion."""
    text = ref.strip().removeprefix("models:/")
    name, alias, version = text, None, None
    if "@" in text:
        name, alias = text.rsplit("@", 1)
    elif "/" in text:
        name, version = text.rsplit("/", 1)
        if not version.isdigit():
            raise ConfigError(f"model version must be a number in {ref!r} (NAME/VERSION)")
    else:
        alias = CHAMPION
    if not name or (alias is not None and not alias):
        raise ConfigError(f"invalid model reference {ref!r}; expected NAME, NAME@alias or NAME/version")
    return name, alias, version
