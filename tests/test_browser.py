"""The 01_nodes notebook in a real browser: JupyterLab, headless Chromium, ipywidgets.

Runs all cells (interactive, so nothing fetches yet); checks that the options the bundled
recording fixes show their recorded value and do not move; moves the concurrency slider,
clicks Run, and checks that the phase-1 progress bar reaches its end and the summary table
appears with the new concurrency. Then it switches to recording from a slow emulator, types
a cassette directory, clicks Run and interrupts the kernel: the run must stop (no further
request reaches the emulator) and keep nothing. Screenshots go to
`$REGISTRY_TOOLS_ARTIFACTS` (default `tests/artifacts/`). Needs Debian's chromium at
/usr/bin/chromium and the `playwright` pip package (never `playwright install`):
`.ci/browser-setup.sh` installs both.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from registry_tools.notebooks.parameters import inject_parameters
from registry_tools.notebooks.runner import notebook_dir
from registry_tools.registry import synth
from registry_tools.registry.emulator import Emulator, Faults, running_emulator

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
# The slow registry the notebook records from: 40 one-node pages at 400 ms each, three at a
# time, take about 5 s, so an interrupt lands in the middle of the run.
SLOW_NODES = 40
SLOW = Faults(latency_ms=400)
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
def slow_registry() -> Iterator:
    with running_emulator(Emulator(synth.generate(SLOW_NODES, seed=2), SLOW)) as running:
        yield running


@pytest.fixture
def jupyterlab(tmp_path: Path, slow_registry) -> Iterator[str]:
    """JupyterLab on 127.0.0.1 (random port, token) over a copy of 01_nodes; yields its URL.

    The copy's parameters point at the slow registry with one node per page, all pages (the
    panel shows the recorded 30 and 2 until recording is chosen). Config, settings,
    workspaces and runtime files live under tmp_path, so the user's own JupyterLab state
    neither affects the test nor gets touched by it.
    """
    root, home = tmp_path / "root", tmp_path / "jupyter"
    root.mkdir()
    nb = nbformat.read(notebook_dir() / "01_nodes.ipynb", as_version=4)
    changes = {"base_url": slow_registry.url, "nodes_per_page": 1, "pages": 0}
    inject_parameters(nb, changes, "01_nodes")
    nbformat.write(nb, root / "01_nodes.ipynb")
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


def test_01_nodes_runs_in_jupyterlab(jupyterlab: str, slow_registry, tmp_path: Path) -> None:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        shot = _artifacts() / "browser-01_nodes.png"
        try:
            _run_notebook(page, jupyterlab)
            page.screenshot(path=str(shot), full_page=True)
            shot = _artifacts() / "browser-01_nodes-interrupted.png"
            _interrupt_a_recording(page, slow_registry, tmp_path / "recorded")
        finally:
            page.screenshot(path=str(shot), full_page=True)
            browser.close()


def _readout(page, name: str):
    return page.locator(f".registry-{name} .widget-readout")


def _run_notebook(page, url: str) -> None:
    page.goto(url)
    page.locator(".jp-Notebook").wait_for(timeout=RUN_MS)
    sync_api.expect(page.locator("#jp-main-statusbar")).to_contain_text("Idle", timeout=RUN_MS)
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()

    run = page.locator(".registry-run")
    run.wait_for(timeout=RUN_MS)
    # replaying: the recording fixes nodes_per_page and pages (the parameters say 1 and 0)
    sync_api.expect(_readout(page, "nodes-per-page")).to_have_text("30", timeout=RUN_MS)
    sync_api.expect(_readout(page, "pages")).to_have_text("2")
    fixed = page.locator(".registry-nodes-per-page")
    assert fixed.locator("[disabled]").count() > 0, fixed.inner_html()
    fixed.locator(".noUi-handle").press("ArrowLeft")
    sync_api.expect(_readout(page, "nodes-per-page")).to_have_text("30")
    handle = page.locator(".registry-concurrency .noUi-handle")
    handle.focus()
    for _ in range(5):
        handle.press("ArrowLeft")
    readout = page.locator(".registry-concurrency .widget-readout")
    sync_api.expect(readout).to_have_text("3", timeout=RUN_MS)
    assert page.locator(".registry-summary").count() == 0, "headless autorun in a browser"
    # JupyterLab sends the slider's updates to the main shell but the click to a subshell
    # (ipykernel 7): let the updates land before clicking, as a person's pause would
    time.sleep(1.5)

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


def _interrupt_a_recording(page, registry, cassette_dir: Path) -> None:
    """Record mode `all` into a new directory from the slow registry, then Kernel > Interrupt."""
    page.locator(".registry-record-mode select").select_option("all")
    sync_api.expect(_readout(page, "nodes-per-page")).to_have_text("1", timeout=RUN_MS)
    assert page.locator(".registry-nodes-per-page [disabled]").count() == 0
    field = page.locator(".registry-cassette-dir input")
    field.fill(str(cassette_dir))
    field.press("Enter")
    status = page.locator(".registry-status")
    sync_api.expect(status).to_contain_text(f"Records from {registry.url}", timeout=RUN_MS)
    registry.reset_counters()
    page.locator(".registry-run").click()
    deadline = time.monotonic() + RUN_MS / 1000
    while registry.counters.requests < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert registry.counters.requests >= 3, "the recording never started"
    page.locator(".lm-MenuBar-itemLabel", has_text="Kernel").first.click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Interrupt Kernel$")).click()
    results = page.locator(".registry-results")
    sync_api.expect(results).to_contain_text("interrupted: the run stopped", timeout=RUN_MS)
    sync_api.expect(page.locator("#jp-main-statusbar")).to_contain_text("Idle", timeout=RUN_MS)
    sync_api.expect(page.locator(".registry-progress .progress-bar-danger")).to_have_count(1)
    time.sleep(0.5)  # a request already on the wire still reaches the emulator
    seen = registry.counters.requests
    time.sleep(1.0)
    assert registry.counters.requests == seen, "requests went on after the interrupt"
    assert seen < SLOW_NODES, "the whole listing was fetched: the interrupt did not stop it"
    assert not cassette_dir.exists(), "an interrupted recording was kept"
    results.scroll_into_view_if_needed()
