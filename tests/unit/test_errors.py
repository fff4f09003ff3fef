"""The error tree: every class is drawn in aemon/errors.py's docstring, exported from `aemon`,
and shown by the command line as one line without a traceback."""

from __future__ import annotations

import inspect

import click
import pytest
import typer

import aemon
from aemon import errors
from flows.cli import err_console, friendly_errors

ERROR_CLASSES = [
    cls
    for _, cls in inspect.getmembers(errors, inspect.isclass)
    if issubclass(cls, errors.AemonError) and cls.__module__ == errors.__name__
]


def test_the_tree_has_the_classes_we_raise() -> None:
    names = {cls.__name__ for cls in ERROR_CLASSES}
    assert {"AemonError", "DataError", "StoreError", "DriftError", "ScoringError"} <= names


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_every_error_is_drawn_in_the_tree_and_exported(cls: type[errors.AemonError]) -> None:
    tree = (errors.__doc__ or "").split("```")[1].split()  # the names (and words) drawn
    assert cls.__name__ in tree
    assert getattr(aemon, cls.__name__) is cls


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_the_cli_shows_an_aemon_error_as_one_line(
    cls: type[errors.AemonError], capsys: pytest.CaptureFixture[str]
) -> None:
    @friendly_errors
    def command() -> None:
        raise cls("two\nlines in data.csv")

    with pytest.raises((typer.Exit, click.exceptions.Exit)) as info:
        command()
    assert info.value.exit_code == 1
    err_console.file.flush()
    shown = capsys.readouterr().err
    assert shown.count("\n") == 1 and "error:" in shown and "lines in data.csv" in shown
    assert "Traceback" not in shown


def test_other_errors_keep_their_traceback() -> None:
    @friendly_errors
    def command() -> None:
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        command()
