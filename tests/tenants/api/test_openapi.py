"""Every operation of the OpenAPI schema is described in its own words, never by the docstring of
the base class its view is built on (which is about Candor's code, not the endpoint)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from django.test import Client
from drf_spectacular.generators import SchemaGenerator


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return Client().get("/api/v1/schema/?format=json").json()


def _base_docstrings() -> set[str]:
    generator = SchemaGenerator()
    generator._initialise_endpoints()  # the (path, regex, method, view) of every documented operation
    found = set()
    for endpoint in generator.endpoints:
        for base in endpoint[-1].cls.__mro__[1:]:
            if base.__doc__:
                found.add(inspect.cleandoc(base.__doc__))
    return found


def test_no_operation_is_described_by_a_base_class(schema: dict[str, Any]) -> None:
    bases = _base_docstrings()
    assert any(doc.startswith("Base of every secret-key endpoint") for doc in bases)  # the test sees them
    described = {
        f"{method.upper()} {path}": operation.get("description", "")
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
    }
    inherited = {name: text for name, text in described.items() if text in bases or text.startswith("Base ")}
    assert not inherited


def test_the_trace_list_says_it_lists_traces(schema: dict[str, Any]) -> None:
    description = schema["paths"]["/api/v1/traces"]["get"]["description"]
    assert description.startswith("Lists the organization's traces")
    assert schema["paths"]["/api/v1/traces"]["post"].get("description", "") != description
