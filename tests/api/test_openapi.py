"""The hand-written OpenAPI description matches the routes: every route is described, every
described operation is routed, with the same methods; the document is well-formed 3.1."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.routing import Route

from voicebot.api.events import EventBus
from voicebot.api.openapi import openapi_document
from voicebot.api.registry import CallRegistry
from voicebot.api.routes import ApiContext, v1_routes

pytestmark = pytest.mark.unit


def routed() -> set[tuple[str, str]]:
    def place(*_: Any) -> Any:
        raise AssertionError("not called")

    ctx = ApiContext(registry=CallRegistry(EventBus()), dialplans={}, place=place, unready=lambda: None,
                     max_calls=1, token="t" * 16)
    pairs = set()
    for route in v1_routes(ctx):
        assert isinstance(route, Route)
        for method in route.methods or ():
            if method != "HEAD":
                pairs.add((route.path, method.lower()))
    return pairs


def documented() -> set[tuple[str, str]]:
    return {(path, method) for path, item in openapi_document()["paths"].items() for method in item}


def test_every_route_is_documented_and_every_documented_route_exists() -> None:
    assert routed() - documented() == set(), "routes missing from openapi.py"
    assert documented() - routed() == set(), "openapi.py describes routes that do not exist"


def test_operation_ids_are_the_route_names() -> None:
    def place(*_: Any) -> Any:
        raise AssertionError("not called")

    ctx = ApiContext(registry=CallRegistry(EventBus()), dialplans={}, place=place, unready=lambda: None,
                     max_calls=1, token=None)
    names = {route.name for route in v1_routes(ctx) if isinstance(route, Route)}
    ids = {op["operationId"] for item in openapi_document()["paths"].values() for op in item.values()}
    assert names == ids


def test_the_document_is_openapi_3_1_and_its_references_resolve() -> None:
    doc = openapi_document()
    assert doc["openapi"] == "3.1.0" and doc["servers"] == [{"url": "/v1"}]
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": "the instance's VOICEBOT_API_TOKEN"}
    text = json.dumps(doc)
    refs = {part.split('"')[0] for part in text.split('"$ref": "')[1:]}
    for ref in refs:
        node: Any = doc
        for key in ref.removeprefix("#/").split("/"):
            node = node[key]
        assert node, ref
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert op["responses"], (path, method)
            if "{call_id}" in path or "{campaign_id}" in path:
                assert op["parameters"][0]["name"] in path
    # The copy is the caller's: changing it changes nothing served later.
    doc["paths"].clear()
    assert openapi_document()["paths"]
