"""Prefect's `flow` and `task` decorators, or none: how `aemon score` and `aemon train` run fast.

With no Prefect server to talk to, a flow call starts Prefect's temporary server for the one
run (7-10 s) after importing Prefect (about 2 s), while the batch itself takes a fraction of a
second, and on a busy machine the temporary server can miss its start-up timeout. So
`aemon score` and `aemon train` call `run_without_prefect()` before they import their flow
module when no server is configured or running: `flow` and `task` then hand back the
decorated functions themselves, and the flow runs its own code, step for step, as plain calls
(no run record, no task retries). Anywhere else (`aemon serve`, deployments, tests) they are
Prefect's.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

_without_prefect = False


def run_without_prefect() -> None:
    """Make `flow` and `task` pass-through for the flow modules imported from now on."""
    global _without_prefect
    late = [m for m in ("flows.score", "flows.train") if m in sys.modules]
    if late and not _without_prefect:
        raise RuntimeError(f"{late[0]} was imported with Prefect already; too late to run without it")
    _without_prefect = True


def without_prefect() -> bool:
    return _without_prefect


def _plain(**_: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.fn = fn  # type: ignore[attr-defined]  # as a Prefect task's `.fn`
        return fn

    return decorate


def flow(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """`prefect.flow(**options)`, or pass-through after `run_without_prefect()`."""
    if _without_prefect:
        return _plain()
    from prefect import flow as prefect_flow

    return prefect_flow(**options)


def task(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """`prefect.task(**options)`, or pass-through after `run_without_prefect()`. A
    `cache_policy` of `NO_CACHE` is Prefect's NO_CACHE."""
    if _without_prefect:
        return _plain()
    from prefect import task as prefect_task
    from prefect.cache_policies import NO_CACHE as PREFECT_NO_CACHE

    if options.get("cache_policy") is NO_CACHE:
        options["cache_policy"] = PREFECT_NO_CACHE
    return prefect_task(**options)


# Stands for Prefect's NO_CACHE without importing Prefect.
NO_CACHE = object()
