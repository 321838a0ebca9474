"""GeoReport v2 documents in the spec's two formats: XML (its default) and JSON.

In XML every list is an element of its plural name holding one element per item (``<services><service>``,
``<attributes><attribute>``, ``<values><value>``, ``<formats><format>``), booleans are ``true``/``false`` and an
absent value is an empty element; JSON carries the same fields with their types.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from xml.etree import ElementTree as ET

from fastapi.responses import Response

FORMATS = ("xml", "json")
MEDIA = {"xml": "text/xml; charset=utf-8", "json": "application/json"}
ITEMS = {
    "services": "service",
    "service_requests": "request",
    "attributes": "attribute",
    "values": "value",
    "endpoints": "endpoint",
    "formats": "format",
    "errors": "error",
}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _fill(parent: ET.Element, name: str, value: Any) -> None:
    node = ET.SubElement(parent, name)
    if isinstance(value, Mapping):
        for k, v in value.items():
            _fill(node, str(k), v)
    elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
        child = ITEMS.get(name, "item")
        for v in value:
            _fill(node, child, v)
    else:
        node.text = _text(value)


def xml_document(root: str, content: Any) -> bytes:
    """``content`` (a list for the plural roots, else a mapping) as the spec's XML document named ``root``."""
    top = ET.Element(root)
    if isinstance(content, Mapping):
        for k, v in content.items():
            _fill(top, str(k), v)
    else:
        for item in content:
            _fill(top, ITEMS[root], item)
    body: bytes = ET.tostring(top, encoding="utf-8", xml_declaration=True)
    return body


def document(fmt: str, root: str, content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """The answer in format ``fmt`` (xml or json); JSON answers plural roots as a bare list, as the spec does."""
    if fmt == "xml":
        return Response(xml_document(root, content), status_code=status, media_type=MEDIA["xml"], headers=headers)
    body = json.dumps(content, ensure_ascii=False).encode()
    return Response(body, status_code=status, media_type=MEDIA["json"], headers=headers)


def format_of(path: str) -> str:
    """The format a GeoReport path asks for by its extension; JSON when it names none or another."""
    return "xml" if path.rsplit("/", 1)[-1].endswith(".xml") else "json"


def errors(path: str, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """The spec's error document: ``[{"code", "description"}]`` or ``<errors><error>...``."""
    return document(format_of(path), "errors", [{"code": status, "description": message}], status, headers)
