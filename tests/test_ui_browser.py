"""The MLflow UI, in a real browser, shows a finished run's story.

A real ``mlflow server`` on 127.0.0.1 serves the store of a finished iris run (made by the CLI);
headless Chromium (Debian's ``chromium``, driven by Playwright with ``executable_path``) opens the
experiment page, the run page and its artifacts, and checks that the run name, a metric value,
the logged model and the artifact list are shown. Screenshots go to the test's tmp dir, and to
docs/screenshots/ (the README's pictures) with ``RUNNER_UPDATE_SCREENSHOTS=1``.

Needs ``apt-get install chromium`` and ``pip install playwright`` (.ci/run installs both; never
``playwright install``, which downloads a browser of its own); skipped without them.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import ROOT
from servers import free_port

CHROMIUM = Path(os.environ.get("RUNNER_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ROOT / "docs" / "screenshots"
#: the UI's "Model training" view (MLflow 3 opens on GenAI otherwise) and no assistant panel over the page
VIEW = "?workflowType=machine_learning"
NO_ASSISTANT = (
    "localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');"
    "localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');"
)
TIMEOUT_MS = 60_000  # the single-page app renders after its bundles load: wait for text, not for a fixed time

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
pytestmark = [
    pytest.mark.slow,  # a run, an mlflow server and headless Chromium
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]


@contextmanager
def mlflow_server(store: str, cwd: Path, log: Path):
    """``mlflow server`` on a free port of 127.0.0.1 against ``store``; yields its URL; stopped with its process group."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--backend-store-uri",
                store,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not answer on {url}/health:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def as_the_ui_shows(value: float) -> str:
    """A metric value as the UI writes it (JavaScript's Number -> string): 1 not 1.0, 1e-7 not 1e-07."""
    if math.isfinite(value) and value == int(value) and abs(value) < 1e21:
        return str(int(value))
    return re.sub(r"e([+-])0*(\d)", r"e\1\2", repr(value))


def screenshot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path))
    if os.environ.get("RUNNER_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOTS / name)
    return path


def test_the_mlflow_ui_shows_the_run_its_metrics_model_and_artifacts(runner_cli, tmp_path):
    from test_report import png_size

    result = runner_cli("+experiment=iris")
    assert result.proc.returncode == 0, result.proc.stderr[-3000:]
    run = result.only_run("iris")
    assert run.info.status == "FINISHED"
    experiment_id, run_id, run_name = run.info.experiment_id, run.info.run_id, run.info.run_name
    accuracy = as_the_ui_shows(run.data.metrics["test/accuracy"])
    activations = png_size(Path(result.client().download_artifacts(run_id, "plots/watch_activations.png", str(tmp_path))))
    assert activations[0] != 1200
    shots = tmp_path / "screenshots"
    shots.mkdir()

    expect = playwright_api.expect
    with mlflow_server(result.store, result.cwd, tmp_path / "mlflow-server.log") as url, playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.add_init_script(NO_ASSISTANT)
            page.set_default_timeout(TIMEOUT_MS)

            # the experiment page: the run is listed by name, with its logged model
            page.goto(f"{url}/#/experiments/{experiment_id}{VIEW}")
            expect(page.get_by_text(run_name, exact=True).first).to_be_visible(timeout=TIMEOUT_MS)
            expect(page.get_by_role("link", name="model", exact=True).first).to_be_visible()
            screenshot(page, shots, "experiment-page.png")

            # the run page: its name, test/accuracy with its value, the logged model, the datasets
            page.goto(f"{url}/#/experiments/{experiment_id}/runs/{run_id}{VIEW}")
            expect(page.get_by_text(run_name, exact=True).first).to_be_visible(timeout=TIMEOUT_MS)
            row = page.get_by_role("row").filter(has=page.get_by_text("test/accuracy", exact=True))
            expect(row.first).to_be_visible()
            expect(row.first).to_contain_text(accuracy)
            row.first.scroll_into_view_if_needed()  # the metrics table scrolls: show test/accuracy in the screenshot
            expect(page.get_by_text(re.compile(r"^Logged models \(1\)$")).first).to_be_visible()
            expect(page.get_by_text(re.compile(r"^iris \([0-9a-f]{8}\)$")).first).to_be_visible()
            assert png_size(screenshot(page, shots, "run-page.png")) == (1400, 900)

            # the artifacts: the folders and files, and a picture opened in the preview
            page.goto(f"{url}/#/experiments/{experiment_id}/runs/{run_id}/artifacts{VIEW}")
            for name in ("plots", "tables", "summary.txt", "model.npz", "config.resolved.yaml", "hydra", "runner.log"):
                expect(page.get_by_text(name, exact=True).first).to_be_visible(timeout=TIMEOUT_MS)
            page.get_by_text("tables", exact=True).first.click()
            expect(page.get_by_text("per_class.md", exact=True).first).to_be_visible()
            page.get_by_text("plots", exact=True).first.click()
            for name in ("training_curves.png", "confusion_matrix.png", "gradcheck.png"):
                expect(page.get_by_text(name, exact=True).first).to_be_visible()
            page.get_by_text("training_curves.png", exact=True).first.click()
            preview = page.locator("img").filter(visible=True)
            page.wait_for_function(
                "() => [...document.images].some(i => i.complete && i.naturalWidth === 1200)", timeout=TIMEOUT_MS
            )
            assert preview.count() >= 1
            screenshot(page, shots, "artifacts-page.png")

            # the watch's pictures: listed beside the others, the gradient flow opened in the preview (the same size as
            # the training curves: told apart by its source), and its counts in watch/
            for name in ("watch_weights.png", "watch_gradients.png", "watch_activations.png", "gradient_flow.png", "watch"):
                expect(page.get_by_text(name, exact=True).first).to_be_visible()
            shown = page.evaluate("() => [...document.images].filter(i => i.naturalWidth > 0).map(i => i.src)")
            page.get_by_text("gradient_flow.png", exact=True).first.click()
            page.wait_for_function(
                "shown => [...document.images].some(i => i.complete && i.naturalWidth === 1200 && !shown.includes(i.src))",
                arg=shown,
                timeout=TIMEOUT_MS,
            )
            screenshot(page, shots, "artifacts-watch.png")
            page.get_by_text("watch_activations.png", exact=True).first.click()
            page.wait_for_function(
                "([w, h]) => [...document.images].some(i => i.complete && i.naturalWidth === w && i.naturalHeight === h)",
                arg=list(activations),
                timeout=TIMEOUT_MS,
            )  # sized by the net (a panel per layer output): as the run logged it
            page.get_by_text("watch", exact=True).first.click()
            expect(page.get_by_text("histograms.npz", exact=True).first).to_be_visible()
        finally:
            browser.close()
    assert sorted(p.name for p in shots.iterdir()) == [
        "artifacts-page.png",
        "artifacts-watch.png",
        "experiment-page.png",
        "run-page.png",
    ]
