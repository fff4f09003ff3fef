"""`aemon ui`: the review web app (see `aemon.ui.app`). Never imports Prefect: the CLI passes
the recalibration flow in as a callable."""

from aemon.ui.app import create_app

__all__ = ["create_app"]
