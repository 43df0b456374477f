"""The page's pure state module (``static/state.js``) under node's own test runner, and its
URL form read back by ``FitConfig.from_query``."""
import json
import shutil
import subprocess
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import pytest

from gradfit.config import FitConfig
from gradfit.web.pagemeta import CONFIG_KEYS

ROOT = Path(__file__).resolve().parents[1]
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")


def test_state_module_under_node():
    r = subprocess.run([NODE, "--test", "tests/js/"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]


def test_the_pages_run_keys_are_fitconfigs_query():
    """The page encodes a state; the run part of its URL is a FitConfig query that
    round-trips, and FitConfig's own query of that config reads back the same."""
    script = """
      import { encode, initial } from './src/gradfit/web/static/state.js';
      const meta = JSON.parse(process.argv[1]);
      const s = { ...initial(meta), lr: 1e-5, optimizer: 'adam', model: 'relu:3', p0: {m1: 0.5}, options: {weight_decay: 0.1}, step: 40 };
      console.log(encode(s, meta));
    """
    from gradfit.web.pagemeta import page_meta
    meta = page_meta()
    r = subprocess.run([NODE, "--input-type=module", "-e", script, json.dumps(meta)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    pairs = parse_qsl(r.stdout.strip())
    run = urlencode([(k, v) for k, v in pairs if k in CONFIG_KEYS])
    c = FitConfig.from_query(run)
    assert (c.model, c.lr, c.loss, c.optimizer, c.steps) == ("relu:3", 1e-5, "mae", "adam", 2000)
    assert c.p0_dict == {"m1": 0.5} and c.options_dict == {"weight_decay": 0.1}
    assert FitConfig.from_query(c.to_query()) == c
    assert dict(pairs)["step"] == "40"
