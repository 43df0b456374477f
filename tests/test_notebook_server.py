"""The notebook's playground server: ``stop()`` closes it, a dead one is started anew, a
failed start says why and tries another port, and the shared-data store says truthfully
that an old cell's data were let go (it keeps the last 64)."""
import errno
import json
import os
import socket
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

import gradfit
from gradfit.web import notebook
from gradfit.web.shared import MAX_SHARED

X = np.arange(5.0)


def fetch(p_or_url: str, key: str | None = None):
    """``(status, body)`` of ``/api/shared/{key}`` for a Playground's url (or base + key)."""
    url = p_or_url if key is None else f"{p_or_url}api/shared/{key}"
    if key is None:
        base, key = url.split("#")[0], url.split("shared:")[1]
        url = f"{base}api/shared/{key}"
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def port_of(url: str) -> int:
    return int(url.split("#")[0].rstrip("/").rsplit(":", 1)[1])


def refuses(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(5)
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def busy_port():
    """A port held by another listener, as a racing process would hold it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_stop_closes_the_port_and_the_next_call_starts_anew():
    p = gradfit.playground(X, 2 * X)
    assert fetch(p.url)[0] == 200
    port = port_of(p.url)
    assert notebook.stop() is True
    assert refuses(port)
    assert gradfit.playground.stop() is False            # nothing left to stop (the same)
    assert "gradfit-playground" not in {t.name for t in threading.enumerate()}
    q = gradfit.playground(X, 3 * X)
    status, body = fetch(q.url)
    assert status == 200 and body["y"] == (3 * X).tolist()


def test_a_server_whose_thread_died_is_started_anew():
    p = gradfit.playground(X, 2 * X)
    old = notebook._server["thread"]
    notebook._server["server"].should_exit = True        # its thread ends, the cache stays
    old.join(10)
    assert not old.is_alive() and notebook._server
    q = gradfit.playground(X, 4 * X)
    assert notebook._server["thread"] is not old and notebook._server["thread"].is_alive()
    status, body = fetch(q.url)
    assert status == 200 and body["y"] == (4 * X).tolist()
    assert refuses(port_of(p.url)) or port_of(p.url) == port_of(q.url)


def test_a_failed_bind_is_retried_on_another_port(monkeypatch, busy_port):
    notebook.stop()
    real, tries = notebook._bind, []

    def first_taken(port=0):
        tries.append(port)
        return real(busy_port if len(tries) == 1 else port)
    monkeypatch.setattr(notebook, "_bind", first_taken)
    p = gradfit.playground(X, 5 * X)
    assert len(tries) == 2 and port_of(p.url) != busy_port
    status, body = fetch(p.url)
    assert status == 200 and body["y"] == (5 * X).tolist()


def test_a_start_that_keeps_failing_says_why(monkeypatch, busy_port):
    notebook.stop()
    real = notebook._bind
    monkeypatch.setattr(notebook, "_bind", lambda port=0: real(busy_port))
    with pytest.raises(RuntimeError) as e:
        gradfit.playground(X, X)
    text = str(e.value)
    assert text.startswith(f"the playground's server did not start ({notebook.START_TRIES} tries)")
    assert text.count(f"cannot listen on 127.0.0.1:{busy_port}: {os.strerror(errno.EADDRINUSE)}") \
        == notebook.START_TRIES
    assert not notebook._server


def test_a_server_that_dies_while_starting_says_why(monkeypatch):
    notebook.stop()

    def datagram(port=0):                 # uvicorn's asyncio refuses it in the server's thread
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        return s
    monkeypatch.setattr(notebook, "_bind", datagram)
    with pytest.raises(RuntimeError, match="ValueError: A Stream Socket was expected"):
        gradfit.playground(X, X)
    monkeypatch.undo()
    assert fetch(gradfit.playground(X, X).url)[0] == 200      # and the next call works


def test_an_evicted_cells_data_are_said_to_be_gone_not_a_restart():
    first = gradfit.playground(X, 7 * X)
    assert fetch(first.url)[0] == 200
    later = [gradfit.playground(X, X + i) for i in range(MAX_SHARED)]
    status, body = fetch(first.url)
    assert status == 422
    assert body["detail"] == ("this cell's data are no longer held (the notebook's server keeps "
                              f"the last {MAX_SHARED} datasets shared with it): re-run the cell")
    assert "restarted" not in body["detail"]
    assert fetch(later[0].url)[1]["y"] == X.tolist()           # the last 64 are all held
    assert fetch(later[-1].url)[1]["y"] == (X + MAX_SHARED - 1).tolist()
    base = first.url.split("#")[0]
    status, body = fetch(base, "never-given")
    assert status == 422 and body["detail"].startswith("no such shared data: this server never held them")
