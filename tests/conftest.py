import importlib.util
import warnings
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
LESSON_LOOP = SHARED / "lesson" / "lesson_loop.py"


@pytest.fixture(scope="session")
def lesson_module():
    """The lesson's own code, the oracle for its numbers."""
    if not LESSON_LOOP.exists():
        pytest.skip(f"the lesson's code is not at {LESSON_LOOP}")
    spec = importlib.util.spec_from_file_location("lesson_loop", LESSON_LOOP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def lesson():
    from gradfit.data import lesson_data
    return lesson_data()


@pytest.fixture(autouse=True)
def _quiet_numpy_deprecations():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        yield


@pytest.fixture(scope="session")
def dask_client():
    """A real dask.distributed LocalCluster: 2 worker processes, one thread each."""
    distributed = pytest.importorskip("distributed")
    from gradfit.cluster import local_cluster
    with local_cluster(2) as cluster, distributed.Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def client():
    """A test client of a fresh app per test module (on a loopback Host: the guard answers
    only those)."""
    from fastapi.testclient import TestClient
    from gradfit.web.app import create_app
    with TestClient(create_app(), base_url="http://127.0.0.1") as c:
        yield c


@pytest.fixture(scope="module")
def pts():
    """The lesson's points as a request's JSON lists."""
    from gradfit.data import lesson_data
    d = lesson_data()
    return {"x": d.x.tolist(), "y": d.y.tolist()}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 at this moment."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, proc, what: str = "the server", seconds: float = 60.0) -> None:
    """Return once ``url`` answers; fail if ``proc`` (a Popen) ends or ``seconds`` pass."""
    import time
    import urllib.request
    deadline = time.time() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            assert time.time() < deadline and proc.poll() is None, f"{what} did not start"
            time.sleep(0.2)
