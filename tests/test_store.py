"""nas.store: a new SQLite store seeded from the cached empty one is the store MLflow itself would have created."""

import sqlite3

import mlflow
from mlflow.tracking import MlflowClient

from nas.store import SQLITE, empty_store, tracking_client


def schema(path) -> tuple[dict, list]:
    """Every table's and index's columns, and the migration: what two stores MLflow creates share (the order of
    constraints in a table's SQL differs between them)."""
    with sqlite3.connect(path) as db:
        names = db.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").fetchall()
        info = {"table": "table_info", "index": "index_info", "trigger": None}
        columns = {(k, name): info[k] and db.execute(f"PRAGMA {info[k]}('{name}')").fetchall() for k, name in names}
        return columns, db.execute("SELECT * FROM alembic_version").fetchall()


def experiments(client: MlflowClient) -> list[tuple[str, str, str]]:
    return sorted((e.experiment_id, e.name, e.artifact_location) for e in client.search_experiments())


def test_a_seeded_store_is_the_store_mlflow_creates(tmp_path, monkeypatch):
    monkeypatch.setenv("HRNAS_CACHE", str(tmp_path / "cache"))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    empty_store()  # made by a process in another folder
    monkeypatch.chdir(tmp_path)  # MLflow's Default experiment keeps its artifacts under the working directory
    fresh = MlflowClient(f"{SQLITE}{tmp_path / 'fresh.db'}")
    seeded = tracking_client(f"{SQLITE}{tmp_path / 'seeded' / 'mlflow.db'}")
    assert empty_store() == tmp_path / "cache" / "mlflow" / f"empty-{mlflow.__version__}.db"
    assert schema(tmp_path / "seeded" / "mlflow.db") == schema(tmp_path / "fresh.db")
    assert experiments(seeded) == experiments(fresh) == [("0", "Default", str(tmp_path / "mlruns" / "0"))]
    assert seeded.create_experiment("t") == fresh.create_experiment("t") == "1"
    assert not list((tmp_path / "seeded").glob(".*partial"))


def test_an_existing_store_is_never_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("HRNAS_CACHE", str(tmp_path / "cache"))
    uri = f"{SQLITE}{tmp_path / 'mlflow.db'}"
    tracking_client(uri).create_experiment("kept")
    assert "kept" in [e[1] for e in experiments(tracking_client(uri))]
    assert "kept" not in [e[1] for e in experiments(tracking_client(f"{SQLITE}{tmp_path / 'other.db'}"))]


def test_a_cache_that_cannot_hold_the_empty_store_leaves_the_store_to_mlflow(tmp_path, monkeypatch):
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    monkeypatch.setenv("HRNAS_CACHE", str(tmp_path / "cache"))
    client = tracking_client(f"{SQLITE}{tmp_path / 'mlflow.db'}")
    assert client.create_experiment("t") == "1" and (tmp_path / "mlflow.db").is_file()
