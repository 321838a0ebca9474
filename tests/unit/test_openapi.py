"""The HTTP API describes what it answers: every route's success response has a schema in the OpenAPI document."""

from __future__ import annotations

from typing import Any

from cases.api import create_app
from cases.policy import Policies


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = doc["components"]["schemas"][name]
    return schema


def test_every_json_route_documents_its_answer() -> None:
    doc = create_app("postgresql://127.0.0.1:1/none", Policies()).openapi()  # the pool opens only when served
    undocumented = []
    seen = 0
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            seen += 1
            content: dict[str, Any] = op["responses"].get("200", {}).get("content", {})
            first: dict[str, Any] = next(iter(content.values()), {})
            ok = first.get("schema")
            if not ok:
                undocumented.append(f"{method.upper()} {path}: no schema")
                continue
            if "application/json" not in content:  # a photo: its media type and a binary schema
                assert ok.get("format") == "binary", (path, content)
                continue
            schema = _resolve(doc, ok)
            if schema.get("type") == "array":
                schema = _resolve(doc, schema.get("items", {}))
            if not schema.get("properties"):
                undocumented.append(f"{method.upper()} {path}: an object without properties")
    assert seen >= 13
    assert not undocumented, "\n".join(undocumented)


def test_case_detail_names_its_parts() -> None:
    doc = create_app("postgresql://127.0.0.1:1/none", Policies()).openapi()
    detail = doc["components"]["schemas"]["CaseDetail"]["properties"]
    assert {"findings", "events", "work_orders", "citizen_reports", "status", "due_at"} <= set(detail)
