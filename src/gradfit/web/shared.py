"""Data handed to the page by Python (``gradfit.playground`` in a notebook): kept in the
app under a random key, fetched by the page at ``/api/shared/{key}`` (``#data=shared:KEY``)."""
from __future__ import annotations

import secrets

from fastapi import FastAPI

from ..errors import InputError
from .schemas import Points

MAX_SHARED = 64            # datasets kept; the oldest goes first


def share(app: FastAPI, points: dict, name: str = "your data") -> str:
    """Keep ``points`` (a ``Points`` dict: x, y, and x2, sigma, inputs) under a new key."""
    checked = Points.model_validate(points).model_dump(exclude_none=True)
    store = app.state.shared
    while len(store) >= MAX_SHARED:
        store.pop(next(iter(store)))
    key = secrets.token_urlsafe(8)
    store[key] = {"name": name, **checked}
    return key


def add_shared_routes(app: FastAPI) -> None:
    app.state.shared = {}

    @app.get("/api/shared/{key}")
    def shared(key: str):
        """Points shared by ``gradfit.playground`` (404-free: a 422 names what is missing)."""
        if key not in app.state.shared:
            raise InputError("no such shared data (the notebook's server was restarted?)",
                             expected="a key that gradfit.playground gave", given=key[:40])
        return app.state.shared[key]
