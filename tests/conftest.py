"""Shared test helpers: run the CLI in-process and capture its streams separately."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
from hypothesis import settings
from typer.testing import CliRunner

from maskviz.cli import app

# Locally hypothesis explores new examples on every run; CI replays a fixed set so
# that a run's verdict depends on the code alone.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str


def run_cli(*args: str, env: dict[str, str] | None = None) -> Result:
    runner = CliRunner()
    result = runner.invoke(app, list(args), env={"COLUMNS": "80", **(env or {})})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Result(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def cli() -> object:
    return run_cli
