"""Open311 GeoReport v2 in full, driven by a third-party client from PyPI (``georeport``) in both of the spec's
formats, XML (the spec's default) and JSON, and by hand where that client has no call (it cannot post):
comma lists, discovery, media_url, attributes, api keys, and errors in the spec's shape on every route."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
import pytest
import xmltodict
from georeport import GeoReport  # type: ignore[import-untyped]

from cases.policy import Policies
from tests.conftest import Api

NEAR_SL3: dict[str, Any] = {"lat": 56.05102, "long": 12.69000}  # about 10 m from SL-0003


def _post(api: Api, *, fmt: str = "json", files: Any = None, **fields: Any) -> httpx.Response:
    data = {k: v for k, v in fields.items() if v is not None}
    return httpx.post(f"{api.base}/open311/v2/requests.{fmt}", data=data, files=files)


def _id(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    [created] = response.json()
    return str(created["service_request_id"])


def _xml_error(response: httpx.Response) -> str:
    """The spec's error document: <errors><error><code/><description/></error></errors>."""
    assert response.headers["content-type"].startswith("text/xml"), response.headers
    err = xmltodict.parse(response.content)["errors"]["error"]
    assert int(err["code"]) == response.status_code
    return str(err["description"])


def _json_error(response: httpx.Response) -> str:
    [err] = response.json()
    assert set(err) == {"code", "description"} and err["code"] == response.status_code
    return str(err["description"])


@pytest.mark.parametrize("fmt", ["xml", "json"])
def test_a_third_party_client_reads_services_definitions_and_requests(api: Api, fmt: str) -> None:
    client = GeoReport(api.base + "/open311/v2", output_format=fmt)
    services = client.get_service_list()
    services = services if isinstance(services, list) else [services]
    by_code = {s["service_code"]: s for s in services}
    assert by_code["streetlight-out"]["service_name"] == "Släckt lampa"
    # XML carries every value as text: the client's parse, not ours
    assert str(by_code["streetlight-out"]["metadata"]).lower() == "true"
    assert str(by_code["bin-full"]["metadata"]).lower() == "false"  # a service that asks for nothing more
    definition = client.get_service_definition("streetlight-out")
    definition = definition[0] if isinstance(definition, list) else definition
    attributes = definition["attributes"]
    attribute = attributes["attribute"] if fmt == "xml" else attributes[0]
    assert attribute["code"] == "since" and attribute["datatype"] == "singlevaluelist"
    values = attribute["values"]["value"] if fmt == "xml" else attribute["values"]
    assert {v["key"]: v["name"] for v in values} == {
        "today": "I dag",
        "days": "Några dagar",
        "weeks": "Veckor eller längre",
    }

    first = _id(
        _post(api, service_code="streetlight-out", **NEAR_SL3, description="Mörkt", **{"attribute[since]": "days"})
    )
    second = _id(_post(api, service_code="bin-full", address_string="Torget 1"))
    third = _id(_post(api, service_code="flooding", address_string="Hamnen", media_url="https://example.org/p/1.jpg"))

    one = client.get_service_request(first)
    assert one["service_request_id"] == first and one["description"] == "Mörkt"
    both = client.get_service_requests(service_request_id=f"{first},{second}")
    assert sorted(r["service_request_id"] for r in both) == sorted([first, second])
    codes = client.get_service_requests(service_code="bin-full,flooding")  # a comma list of service codes
    assert sorted(r["service_request_id"] for r in codes) == sorted([second, third])
    statuses = client.get_service_requests(status="open,closed")
    assert {r["service_request_id"] for r in statuses} >= {first, second, third}
    flooding = client.get_service_request(third)
    assert flooding["media_url"] == "https://example.org/p/1.jpg"


def test_requests_post_and_answer_in_xml(api: Api) -> None:
    response = _post(api, fmt="xml", service_code="streetlight-out", **NEAR_SL3)
    assert response.headers["content-type"].startswith("text/xml")
    created = xmltodict.parse(response.content)["service_requests"]["request"]
    assert created["service_request_id"].isdigit() and created["service_notice"]
    listed = httpx.get(f"{api.base}/open311/v2/requests/{created['service_request_id']}.xml")
    request = xmltodict.parse(listed.content)["service_requests"]["request"]
    assert request["service_code"] == "streetlight-out" and request["status"] == "open"
    assert float(request["lat"]) == pytest.approx(NEAR_SL3["lat"])


def test_attributes_are_kept_and_checked_against_the_definition(api: Api) -> None:
    rid = _id(_post(api, service_code="pole-damaged", **NEAR_SL3, **{"attribute[danger]": "yes"}))
    import psycopg

    with psycopg.connect(api.url) as conn:
        row = conn.execute("SELECT attributes FROM service_requests WHERE request_id = %s", (int(rid),)).fetchone()
    assert row == ({"danger": "yes"},)
    wrong = _post(api, service_code="pole-damaged", **NEAR_SL3, **{"attribute[danger]": "maybe"})
    assert wrong.status_code == 400 and "danger" in _json_error(wrong) and "yes" in _json_error(wrong)
    unknown = _post(api, service_code="pole-damaged", **NEAR_SL3, **{"attribute[colour]": "red"})
    assert unknown.status_code == 400 and "colour" in _json_error(unknown)


def test_media_url_must_be_a_web_address(api: Api) -> None:
    bad = _post(api, service_code="flooding", address_string="Hamnen", media_url="javascript:alert(1)")
    assert bad.status_code == 400 and "media_url" in _json_error(bad)


def test_discovery_names_the_endpoint_and_its_formats(api: Api) -> None:
    for path in ("/open311/discovery.json", "/open311/v2/discovery.json"):
        doc = httpx.get(api.base + path).raise_for_status().json()
        [endpoint] = doc["endpoints"]
        assert endpoint["specification"] == "http://wiki.open311.org/GeoReport_v2"
        assert endpoint["url"] == api.base + "/open311/v2"
        assert set(endpoint["formats"]) == {"text/xml", "application/json"}
        assert doc["changeset"] and "key_service" in doc
    xml = xmltodict.parse(httpx.get(api.base + "/open311/discovery.xml").content)["discovery"]
    assert xml["endpoints"]["endpoint"]["formats"]["format"] == ["text/xml", "application/json"]


def test_errors_have_the_spec_shape_on_every_route(api: Api) -> None:
    unknown_json = httpx.get(api.base + "/open311/v2/nothing.json")
    assert unknown_json.status_code == 404 and _json_error(unknown_json)
    unknown_xml = httpx.get(api.base + "/open311/v2/nothing/here.xml")
    assert unknown_xml.status_code == 404 and _xml_error(unknown_xml)
    bad = _post(api, fmt="xml", service_code="nope", address_string="x")
    assert bad.status_code == 400 and "nope" in _xml_error(bad)
    wrong_format = httpx.get(api.base + "/open311/v2/services.csv")
    assert wrong_format.status_code == 400 and "xml" in _json_error(wrong_format)
    bad_status = httpx.get(api.base + "/open311/v2/requests.json", params={"status": "open,lost"})
    assert bad_status.status_code == 400 and "lost" in _json_error(bad_status)
    bad_code = httpx.get(api.base + "/open311/v2/requests.xml", params={"service_code": "bin-full,nope"})
    assert bad_code.status_code == 400 and "nope" in _xml_error(bad_code)
    outside = httpx.get(api.base + "/nowhere")
    assert outside.status_code == 404 and outside.json() == {"error": "Not Found"}


def test_an_api_key_is_checked_and_can_be_required(api: Api, tmp_path: Path) -> None:
    app_key = api.token("solvik", "app")
    assert _post(api, service_code="bin-full", address_string="Torget 1", api_key=app_key).status_code == 200
    wrong = _post(api, service_code="bin-full", address_string="Torget 1", api_key="lyk_nothing")
    assert wrong.status_code == 403 and "api_key" in _json_error(wrong)
    crew_key = api.token("solvik", "operator")  # a token, but not an app's key
    assert _post(api, service_code="bin-full", address_string="Torget 1", api_key=crew_key).status_code == 403
    policy = tmp_path / "solvik.yaml"
    policy.write_text("tenant: solvik\ncitizen: {api_key: required}\n")
    api.app.state.policies = Policies([policy])
    missing = _post(api, fmt="xml", service_code="bin-full", address_string="Torget 1")
    assert missing.status_code == 403 and "api_key" in _xml_error(missing)
    assert _post(api, service_code="bin-full", address_string="Torget 1", api_key=app_key).status_code == 200
    reading = httpx.get(api.base + "/open311/v2/services.json")  # reading never needs a key
    assert reading.status_code == 200


def test_an_application_key_opens_nothing_but_posting(api: Api) -> None:
    app_key = api.token("solvik", "app")
    for path in ("/api/v1/cases", "/api/v1/work-orders", "/api/v1/reports"):
        refused = httpx.get(api.base + path, headers={"Authorization": f"Bearer {app_key}"})
        assert refused.status_code == 403, (path, refused.text)


def _jpeg_with_position() -> bytes:
    from PIL import Image

    image = Image.new("RGB", (3000, 1000), (200, 180, 40))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # camera make
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (56.0, 3.0, 1.0), "E", (12.0, 41.0, 24.0)
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif)
    return out.getvalue()


def test_photos_are_kept_without_their_metadata_and_refused_when_not_photos(api: Api) -> None:
    from PIL import Image

    original = _jpeg_with_position()
    assert b"PhoneMaker" in original
    files = [("media", ("a.jpg", original, "image/jpeg")), ("media", ("b.jpg", original, "image/jpeg"))]
    rid = _id(_post(api, files=files, service_code="flooding", address_string="Hamnen"))
    import psycopg

    with psycopg.connect(api.url) as conn:
        rows = conn.execute(
            "SELECT jpeg, width, height FROM report_photos WHERE request_id = %s ORDER BY photo_id", (int(rid),)
        ).fetchall()
    assert len(rows) == 2
    for jpeg, width, height in rows:
        kept = Image.open(io.BytesIO(bytes(jpeg)))
        assert (kept.format, kept.size, (width, height)) == ("JPEG", (2048, 683), (2048, 683))
        assert not kept.getexif() and b"PhoneMaker" not in bytes(jpeg)
    four = [("media", (f"{n}.jpg", original, "image/jpeg")) for n in range(4)]
    too_many = _post(api, files=four, service_code="flooding", address_string="Hamnen")
    assert too_many.status_code == 400, too_many.text
    not_a_photo = _post(api, files=[("media", ("x.jpg", b"%PDF-1.4 not a photo", "image/jpeg"))],
                        service_code="flooding", address_string="Hamnen")  # fmt: skip
    assert not_a_photo.status_code == 400 and "could not be read" in _json_error(not_a_photo)
