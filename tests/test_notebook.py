"""The notebook face: ``examples/lesson3.ipynb`` runs top to bottom (nbclient) with the
lesson's numbers, ``gradfit.playground`` serves the user's data to the page, and in a real
JupyterLab (Debian's Chromium via Playwright) the notebook shows the live playground."""
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port, wait_until_up

import gradfit

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "lesson3.ipynb"


def test_playground_shares_arrays_and_frames_by_column_name():
    t = np.linspace(0, 1, 6)
    p = gradfit.playground(t, 2 * t + 1, inputs=["t"], sigma=np.full(6, 0.1))
    base, key = p.url.split("#")[0], p.url.split("shared:")[1]
    got = json.loads(urllib.request.urlopen(f"{base}api/shared/{key}", timeout=10).read())
    assert got["inputs"] == ["t"] and got["y"] == pytest.approx(2 * t + 1) and len(got["sigma"]) == 6
    assert "model=a%2At+%2B+c" in p.url and "<iframe" in p._repr_html_()

    class Frame(dict):                       # anything with columns and [name]
        columns = ["u", "v", "z", "err"]
    f = Frame(u=[0, 1, 2], v=[1, 0, 1], z=[1, 2, 3], err=[0.1, 0.1, 0.2])
    q = gradfit.playground(f, x=["u", "v"], sigma="err")
    got = json.loads(urllib.request.urlopen(f"{base}api/shared/{q.url.split('shared:')[1]}", timeout=10).read())
    assert got["inputs"] == ["u", "v"] and got["y"] == [1, 2, 3] and got["x2"] == [1, 0, 1]


def test_playground_refuses_bad_input_in_one_line():
    with pytest.raises(gradfit.InputError, match="one or two inputs"):
        gradfit.playground(np.zeros((4, 3)), np.zeros(4))
    with pytest.raises(gradfit.InputError, match="no y"):
        gradfit.playground(np.zeros(4))


def test_lesson3_runs_top_to_bottom():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=180, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}}).execute()
    text = "\n".join(o.get("text", "") + json.dumps(o.get("data", {}))
                     for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "MAE at the guess: 2.42185" in text                   # the lesson's printed number
    assert "'good'" in text and "'bouncing'" in text and "'diverged'" in text   # the rates
    assert "gradfit-playground" in text and "data=shared:" in text   # the playground, inline


@pytest.fixture(scope="module")
def jupyter(tmp_path_factory):
    if not os.path.exists("/usr/bin/chromium"):
        pytest.skip("no Chromium at /usr/bin/chromium")
    pytest.importorskip("jupyterlab")
    pytest.importorskip("playwright.sync_api")
    work = tmp_path_factory.mktemp("nb")
    nb = json.loads(NOTEBOOK.read_text())
    nb["cells"] = [c for c in nb["cells"] if c["cell_type"] == "code"][:1] + \
        [c for c in nb["cells"] if "playground(" in "".join(c["source"])]
    (work / "play.ipynb").write_text(json.dumps(nb))
    port = free_port()
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(work / "cfg"), "JUPYTER_DATA_DIR": str(work / "data")}
    proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}",
                             "--ServerApp.token=", "--ServerApp.password=", "--ServerApp.ip=127.0.0.1",
                             "--ServerApp.disable_check_xsrf=True", f"--ServerApp.root_dir={work}", "--allow-root",
                             "--LabApp.news_url="],
                            cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url + "/api/status", proc, "jupyterlab")
    yield url
    proc.terminate()
    proc.wait(20)


def test_jupyterlab_shows_the_live_playground(jupyter):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium",
                              args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            pg = b.new_page(viewport={"width": 1400, "height": 1000})
            pg.goto(jupyter + "/lab/tree/play.ipynb")
            pg.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
            pg.wait_for_function("() => [...document.querySelectorAll('.jp-StatusBar-TextItem')]"
                                 ".some(e => e.textContent.includes('Idle'))", timeout=60_000)
            for attempt in range(3):                      # Run > Run All Cells, until it ran
                pg.click(".lm-MenuBar-itemLabel:text-is('Run')")
                pg.click(".lm-Menu-itemLabel:text-is('Run All Cells')")
                try:
                    pg.wait_for_function("() => document.querySelector('.jp-InputPrompt')?.textContent.includes('[1]')",
                                         timeout=20_000)
                    break
                except Exception:
                    if attempt == 2:
                        raise
            frame = pg.wait_for_selector("iframe.gradfit-playground", timeout=90_000)
            inner = frame.content_frame()
            inner.wait_for_selector("body[data-ready='1']", timeout=30_000)
            inner.wait_for_function("() => /MAE = \\d/.test(document.querySelector('#plot-data .gtitle')?.textContent)")
            assert inner.text_content("#plot-data .gtitle") == "MAE = 2.42185"   # the lesson's guess
        finally:
            b.close()
