"""The MLflow UI in a real browser: a tiny real search, a real `mlflow server` on its store, headless chromium.

The runs page of the search's experiment must list the parent run and every trial's child run, by name and by
link to its run id. The screenshot of that page is the README's image: regenerate it with
HRNAS_UPDATE_SCREENSHOT=docs/mlflow-runs.png pytest -q tests/test_mlflow_ui.py

Needs Debian's chromium (`apt-get install chromium`; `make test` installs it); HRNAS_SKIP_BROWSER=1 skips the browser.
"""

import contextlib
import html
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.ray_head import free_port
from tests.test_search import MINI_DATA, ROOT, environment

TRIALS = 3
# Two presets (litehrnet-18, wider-naive-litehrnet-18) are points of this space and fit the budget: the search
# trains them first as anchors, so the README's preset filter has a run to find; the third trial is sampled.
SPACE = """
name: ui
base: litehrnet-18
genes:
  width: [8, 40]
  modules: [[1, 1, 1], [2, 4, 2]]
  block: [shuffle, weighting]
"""
BUDGET = "0.5GFLOPs"
# The UI nests child runs under their collapsed parent when runs are sorted by date (its default); sorted by a
# metric it lists every run flat, so every trial is in the table (the UI writes the same query when you sort).
SORTED_BY_AP = "?orderByKey=metrics.%60ap%60&orderByAsc=false"
SIZE = (1600, 1000)  # tall enough for all rows: the table renders only the rows in view
WINDOW = f"--window-size={SIZE[0]},{SIZE[1]}"


@pytest.fixture(scope="module")
def search(tmp_path_factory, ray_head):
    """A finished 3-trial search (on the test process's Ray head): its JSON summary, its child runs and its storage
    folder."""
    tmp = tmp_path_factory.mktemp("ui")
    space = tmp / "ui.yaml"
    space.write_text(SPACE)
    storage = tmp / "runs"
    done = subprocess.run(
        [sys.executable, "experiments/search.py", "--budget", BUDGET, "--space", str(space), "--data", MINI_DATA,
         "--input", "64x64", "--epochs", "1", "--trials", str(TRIALS), "--storage", str(storage),
         "--experiment", "ui-test", "--json"],
        cwd=ROOT, env=environment(tmp, ray_head), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    client = MlflowClient(summary["tracking_uri"])
    runs = client.search_runs(
        [summary["experiment_id"]], filter_string=f"tags.`mlflow.parentRunId` = '{summary['parent_run_id']}'"
    )
    assert len(runs) == TRIALS and all(r.info.status == "FINISHED" for r in runs)
    assert sorted(r.data.tags.get("preset", "") for r in runs) == ["", "litehrnet-18", "wider-naive-litehrnet-18"]
    return {"summary": summary, "client": client, "children": runs, "storage": storage}


@pytest.fixture(scope="module")
def chromium():
    if os.environ.get("HRNAS_SKIP_BROWSER") == "1":
        pytest.skip("HRNAS_SKIP_BROWSER=1")
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("no chromium on PATH: install it with `apt-get install chromium` (HRNAS_SKIP_BROWSER=1 skips)")
    return path


@pytest.fixture(scope="module")
def server(search, tmp_path_factory):
    """`mlflow server` on the search's store at http://127.0.0.1:PORT, stopped by its PID at the end."""
    tmp = tmp_path_factory.mktemp("server")
    port = free_port()
    storage = search["storage"]
    log = (tmp / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--workers", "1", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{storage / 'mlflow.db'}", "--artifacts-destination",
         str(storage / "mlartifacts")],
        cwd=tmp, env=dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"), stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while not healthy(url):
            if process.poll() is not None or time.time() > deadline:
                log.flush()
                output = (tmp / "server.log").read_text()[-3000:]
                pytest.fail(
                    f"mlflow server (exit code {process.poll()}) did not answer {url}/health in 60 s:\n{output}"
                )
            time.sleep(0.5)
        yield url
    finally:
        stop(process)
        log.close()


def healthy(url: str) -> bool:
    with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/health", timeout=5) as answer:
        return answer.status == 200
    return False


def stop(process: subprocess.Popen) -> None:
    """TERM, then KILL after 20 s: the server and its uvicorn worker (its own session, so its own group)."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(wait)
            return


def browse(chromium: str, tmp: Path, url: str, *action: str) -> str:
    """Headless chromium on url with a fresh profile and HOME; returns its stdout."""
    home = tmp / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), XDG_CACHE_HOME=str(home / ".cache"))
    done = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--virtual-time-budget=20000", f"--user-data-dir={tmp / 'profile'}", WINDOW, *action, url],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_runs_page_lists_the_search_and_its_trials(chromium, search, server, tmp_path):
    summary, children = search["summary"], search["children"]
    parent = search["client"].get_run(summary["parent_run_id"])
    url = f"{server}/#/experiments/{summary['experiment_id']}/runs{SORTED_BY_AP}"
    dom = browse(chromium, tmp_path / "dom", url, "--dump-dom")
    runs = [parent, *children]
    for run in runs:
        # The run's name as the text of its link to the run's page: fails if the page lists no runs.
        link = rf'href="#/experiments/{summary["experiment_id"]}/runs/{run.info.run_id}">(?:<[^>]*>)*'
        assert re.search(link + re.escape(html.escape(run.info.run_name)) + "<", dom), (run.info.run_name, dom[-3000:])
    text = " ".join(re.sub(r"<[^>]*>", " ", dom).split())
    assert f"{len(runs)} matching runs" in text

    png = tmp_path / "runs.png"
    browse(chromium, tmp_path / "shot", url, f"--screenshot={png}")
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000, len(data)
    if importlib.util.find_spec("PIL"):  # Pillow comes with matplotlib; without it, header and size only
        from PIL import Image

        with Image.open(png) as image:
            assert image.size == SIZE
            # Not one colour, nor a spinner: the rendered table's anti-aliased text gives some 5,000 colours.
            assert len(image.convert("RGB").getcolors(1_000_000)) > 1000
    if os.environ.get("HRNAS_UPDATE_SCREENSHOT"):
        shutil.copyfile(png, os.environ["HRNAS_UPDATE_SCREENSHOT"])


def test_compare_page_shows_genes_and_metrics_side_by_side(chromium, search, server, tmp_path):
    """The UI's Compare view of the trials: every gene param and the ap / flops metrics, one column per run."""
    summary, children = search["summary"], search["children"]
    ids = [r.info.run_id for r in children]
    query = urllib.parse.urlencode({"runs": json.dumps(ids), "experiments": json.dumps([summary["experiment_id"]])})
    url = f"{server}/#/compare-runs?{query}"
    dom = browse(chromium, tmp_path / "dom", url, "--dump-dom")
    text = " ".join(re.sub(r"<[^>]*>", " ", dom).split())
    for name in ("gene.width", "gene.block", "ap", "flops"):
        assert name in text, (name, text[-3000:])
    for run in children:
        assert run.info.run_name in text
    png = tmp_path / "compare.png"
    browse(chromium, tmp_path / "shot", url, f"--screenshot={png}")
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and png.stat().st_size > 20_000
    if os.environ.get("HRNAS_UPDATE_SCREENSHOT"):
        shutil.copyfile(png, Path(os.environ["HRNAS_UPDATE_SCREENSHOT"]).with_name("mlflow-compare.png"))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("tags.pareto = 'true'", lambda r: r.data.tags["pareto"] == "true"),
        ("tags.preset = 'litehrnet-18'", lambda r: r.data.tags.get("preset") == "litehrnet-18"),
        ("params.\"gene.block\" = 'weighting'", lambda r: r.data.params["gene.block"] == "weighting"),
    ],
    ids=["pareto", "preset", "gene.block"],
)
def test_the_readme_filters_select_the_runs_they_say(search, query, expected):
    """The filters README.md shows for the runs page (the UI's search box takes MLflow's search syntax) select
    exactly the trials they describe, and each describes at least one trial of the search."""
    found = search["client"].search_runs([search["summary"]["experiment_id"]], filter_string=query)
    wanted = {r.info.run_id for r in search["children"] if expected(r)}
    assert wanted and {r.info.run_id for r in found} == wanted


def test_the_searchs_own_view_shows_its_trials_with_ap_costs_and_pareto_as_columns(chromium, search, server, tmp_path):
    """The view the search shares (experiment tag mlflow.sharedViewState.<key>, opened with ?viewStateShareKey=):
    its trials only, best AP first, AP, FLOPs, params and the Pareto tag as columns, no column set by hand."""
    summary, children = search["summary"], search["children"]
    key = f"hrnas-{summary['parent_run_id']}"
    assert f"mlflow.sharedViewState.{key}" in search["client"].get_experiment(summary["experiment_id"]).tags
    url = f"{server}/#/experiments/{summary['experiment_id']}/runs?viewStateShareKey={key}"
    dom = browse(chromium, tmp_path / "dom", url, "--dump-dom")
    text = " ".join(re.sub(r"<[^>]*>", " ", dom).split())
    assert "share key" not in text, text[-2000:]  # the UI's error when it cannot read the view
    ids = sorted(set(re.findall(r'col-id="([^"]*)"', dom)))
    for column in ("ap", "flops", "params", "pareto"):
        assert any(re.fullmatch(rf"(?:metrics|tags)\.`{column}`", i) for i in ids), (column, ids, text[:1500])
    assert f"{len(children)} matching runs" in text  # the children only, not the parent
