"""The 01_nodes notebook in a real browser: JupyterLab, headless Chromium, ipywidgets.

Runs all cells (interactive, so nothing fetches yet), moves the concurrency slider, clicks
Run, and checks that the phase-1 progress bar reaches its end and the summary table appears
with the new concurrency. The screenshot goes to `$REGISTRY_TOOLS_ARTIFACTS` (default
`tests/artifacts/`). Needs Debian's chromium at /usr/bin/chromium and the `playwright` pip
package (never `playwright install`): `.ci/browser-setup.sh` installs both.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry_tools.notebooks.runner import notebook_dir

CHROMIUM = Path("/usr/bin/chromium")
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
ENABLE = "run .ci/browser-setup.sh (apt-get install chromium; pip install playwright)"
START_SECONDS = 60
RUN_MS = 90_000
# The phase-1 bar is at its end: drawn across its whole track, in the "success" style.
BAR_FULL = """() => {
  const bar = document.querySelector('.registry-progress .progress-bar');
  if (!bar || !bar.classList.contains('progress-bar-success')) return false;
  const track = bar.parentElement.getBoundingClientRect().width;
  return track > 0 && bar.getBoundingClientRect().width >= 0.99 * track;
}"""

sync_api = pytest.importorskip("playwright.sync_api", reason=f"playwright missing: {ENABLE}")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} missing: {ENABLE}", allow_module_level=True)


def _artifacts() -> Path:
    """Where the screenshot is kept (CI uploads it; `tests/artifacts/` is git-ignored)."""
    configured = os.environ.get("REGISTRY_TOOLS_ARTIFACTS")
    directory = Path(configured) if configured else Path(__file__).parent / "artifacts"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"JupyterLab exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"JupyterLab did not answer {url} in {START_SECONDS} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def jupyterlab(tmp_path: Path) -> Iterator[str]:
    """JupyterLab on 127.0.0.1 (random port, token) over a copy of 01_nodes; yields its URL.

    Config, settings, workspaces and runtime files live under tmp_path, so the user's own
    JupyterLab state neither affects the test nor gets touched by it.
    """
    root, home = tmp_path / "root", tmp_path / "jupyter"
    root.mkdir()
    shutil.copy(notebook_dir() / "01_nodes.ipynb", root)
    (home / "config" / "labconfig").mkdir(parents=True)
    (home / "config" / "labconfig" / "page_config.json").write_text(
        '{"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": true}}'
    )
    env = {k: v for k, v in os.environ.items() if k != "REGISTRY_TOOLS_HEADLESS"}
    env.update(
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
    )
    port, token = _free_port(), secrets.token_hex(16)
    log = tmp_path / "jupyterlab.log"
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1"]
    command += [f"--ServerApp.port={port}", f"--IdentityProvider.token={token}"]
    command += [f"--ServerApp.root_dir={root}", "--LabApp.news_url="]
    command += ["--LabApp.extension_manager=readonly"]  # never asks PyPI about extensions
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # CI containers run as root
    with log.open("w") as out:
        server = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(f"{base}/api/status?token={token}", server, log)
        yield f"{base}/lab/tree/01_nodes.ipynb?token={token}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()


def test_01_nodes_runs_in_jupyterlab(jupyterlab: str) -> None:
    shot = _artifacts() / "browser-01_nodes.png"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        try:
            _run_notebook(page, jupyterlab)
        finally:
            page.screenshot(path=str(shot), full_page=True)
            browser.close()


def _run_notebook(page, url: str) -> None:
    page.goto(url)
    page.locator(".jp-Notebook").wait_for(timeout=RUN_MS)
    sync_api.expect(page.locator("#jp-main-statusbar")).to_contain_text("Idle", timeout=RUN_MS)
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()

    run = page.locator(".registry-run")
    run.wait_for(timeout=RUN_MS)
    handle = page.locator(".registry-concurrency .noUi-handle")
    handle.focus()
    for _ in range(5):
        handle.press("ArrowLeft")
    readout = page.locator(".registry-concurrency .widget-readout")
    sync_api.expect(readout).to_have_text("3", timeout=RUN_MS)
    assert page.locator(".registry-summary").count() == 0, "headless autorun in a browser"

    run.click()
    page.wait_for_function(BAR_FULL, timeout=RUN_MS)
    sync_api.expect(page.locator(".registry-progress + .widget-label")).to_contain_text("done")
    summary = page.locator(".registry-results table.registry-summary")
    summary.wait_for(timeout=RUN_MS)
    concurrency = summary.locator("tr", has_text="concurrency").locator("td").nth(1)
    sync_api.expect(concurrency).to_have_text("3")
    sync_api.expect(summary.locator("tr", has_text="failures").locator("td").nth(1)).to_have_text(
        "0"
    )
    page.locator(".registry-results img").first.wait_for(timeout=RUN_MS)
    summary.scroll_into_view_if_needed()
