"""Shared test helpers: run the CLI in-process and capture its streams separately."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
from hypothesis import settings
from typer.testing import CliRunner

from maskviz.cli import app

# No example has a time limit: a verdict never depends on how busy the machine is
# (the suite runs on both cores at once). Locally hypothesis explores new examples on
# every run; CI replays a fixed set so that a run's verdict depends on the code alone.
settings.register_profile("local", deadline=None)
settings.register_profile("ci", settings.get_profile("local"), derandomize=True, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "local")


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
