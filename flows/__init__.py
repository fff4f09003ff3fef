"""The application: Prefect flows, the local Prefect server and the `aemon` command line.

aemon's environment defaults (`PREFECT_HOME` under `AEMON_HOME`, telemetry off, ...) are set
here, once, because Prefect and MLflow read their settings when first imported, and every way
in imports this package first: the console script (`flows.cli`), deployment entrypoints such
as `flows/score.py:score_inbox`, and tests. The user's environment wins; no folder is created.
"""

from aemon.config import apply_environment_defaults

apply_environment_defaults()
