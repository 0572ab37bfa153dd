"""The MLflow client of a job's tracking URI: a new SQLite store starts as a copy of an empty store already migrated
to this MLflow's schema (made once per MLflow version, in the cache folder) instead of running MLflow's migrations
again (about 3 s of a job's start; bench/RESULTS.md, issue 24)."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from pose.synthetic import default_cache_dir

SQLITE = "sqlite:///"


def tracking_client(uri: str) -> MlflowClient:
    """MlflowClient(uri), a missing SQLite store seeded first (see `seed_store`); servers and existing stores as
    MLflow opens them, and a new store as MLflow creates it where the cache folder cannot hold the empty one."""
    if uri.startswith(SQLITE):
        with contextlib.suppress(OSError):
            seed_store(Path(uri.removeprefix(SQLITE)))
    return MlflowClient(uri)


def seed_store(path: Path) -> None:
    """A missing store file becomes a copy of the empty migrated store; an existing one, or one another process
    creates meanwhile, is left alone."""
    if path.exists():
        return
    template = empty_store()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")  # made with the umask's permissions
    try:
        shutil.copyfile(template, partial)
        with contextlib.suppress(FileExistsError):
            os.link(partial, path)  # appears whole, and never over a store made in the meantime
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)


def empty_store() -> Path:
    """The cached empty store of this MLflow version: created and migrated by MLflow itself, less MLflow's Default
    experiment (id 0), whose artifact folder names the directory of the process that created it. MLflow creates
    that experiment again when it opens a copy, for the process that opens it."""
    template = default_cache_dir() / "mlflow" / f"empty-{mlflow.__version__}.db"
    if template.is_file():
        return template
    template.parent.mkdir(parents=True, exist_ok=True)
    partial = template.with_name(f".{template.name}.{os.getpid()}.partial")
    try:
        MlflowClient(f"{SQLITE}{partial}").search_experiments()  # MLflow creates and migrates it
        with contextlib.closing(sqlite3.connect(partial)) as db, db:
            db.execute("DELETE FROM experiments")
        os.replace(partial, template)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
    return template
