"""Parsing inventories (pure functions, no I/O beyond reading the sample files)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from floor.errors import InventoryError
from floor.inventory import parse_csv, parse_file, parse_geojson

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _problems(exc: pytest.ExceptionInfo[InventoryError]) -> list[str]:
    return exc.value.problems


def test_sample_geojson_and_csv_describe_the_same_town() -> None:
    from_geojson = parse_file(EXAMPLES / "solvik.geojson")
    from_csv = parse_file(EXAMPLES / "solvik.csv")
    assert len(from_geojson) == len(from_csv) > 200

    def key(r: object) -> tuple[object, ...]:
        return tuple(
            getattr(r, f)
            for f in (
                "asset_id",
                "kind",
                "parent_id",
                "lat",
                "lon",
                "rated_power_w",
                "install_date",
                "criticality",
                "device_id",
                "reporting_interval_s",
            )
        )

    assert [key(r) for r in from_geojson] == [key(r) for r in from_csv]
    kinds = {r.kind for r in from_csv}
    assert kinds == {
        "cabinet",
        "circuit",
        "streetlight",
        "road_weather_station",
        "stormwater_well",
        "pump_station",
        "waste_bin",
    }


def test_csv_fields_are_typed_and_extra_columns_kept_as_properties() -> None:
    [record] = parse_csv(
        "asset_id,kind,parent_id,lat,lon,rated_power_w,install_date,criticality,pole_height_m\n"
        'SL-1,streetlight,K1,"56,05",12.69,36,2019-04-01,3,8\n'
    )
    assert record.where == "line 2"
    assert (record.lat, record.lon, record.rated_power_w) == (56.05, 12.69, 36.0)
    assert record.install_date == date(2019, 4, 1)
    assert record.criticality == 3
    assert record.properties == {"pole_height_m": "8"}


def test_bad_csv_rows_are_all_reported_with_line_and_field() -> None:
    text = (
        "asset_id,kind,lat,lon,rated_power_w,install_date,criticality\n"
        "SL-1,streetlight,56.0,12.7,36,2019-04-01,2\n"
        "SL 2,streetlight,56.0,12.7,36,2019-04-01,2\n"
        "SL-3,streetlight,95.0,12.7,abc,2019-13-01,9\n"
        "SL-4,,56.0,,36,,\n"
    )
    with pytest.raises(InventoryError) as exc:
        parse_csv(text, "town.csv")
    problems = _problems(exc)
    assert "line 3, field 'asset_id': 'SL 2' is not a valid identifier" in problems[0]
    assert any(p.startswith("line 4, field 'lat': '95.0' is out of range") for p in problems)
    assert "line 4, field 'rated_power_w': expected a number, got 'abc'" in problems
    assert "line 4, field 'install_date': expected a date as YYYY-MM-DD, got '2019-13-01'" in problems
    assert any(p.startswith("line 4, field 'criticality': '9' is out of range") for p in problems)
    assert "line 5, field 'kind': is required" in problems
    assert "line 5, field 'lon': lat and lon must be given together" in problems
    assert str(exc.value).startswith("town.csv: 7 problem(s), nothing imported")


def test_csv_line_numbers_count_multiline_cells() -> None:
    text = 'asset_id,kind,name,lat,lon\nA1,cabinet,"two\nlines",56,12\nA 2,cabinet,x,56,12\n'
    with pytest.raises(InventoryError) as exc:
        parse_csv(text)
    assert _problems(exc)[0].startswith("line 4, field 'asset_id'")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "line 1: the file is empty"),
        ("name,lat\nx,1\n", "line 1: the header has no 'asset_id' column"),
        ("asset_id,kind\nA1,cabinet,extra\n", "line 2: more cells than header columns"),
    ],
)
def test_csv_structure_problems(text: str, problem: str) -> None:
    with pytest.raises(InventoryError) as exc:
        parse_csv(text)
    assert _problems(exc)[0].startswith(problem)


def _feature(props: dict[str, object], coords: object = (12.7, 56.0)) -> dict[str, object]:
    geometry = None if coords is None else {"type": "Point", "coordinates": list(coords)}  # type: ignore[call-overload]
    return {"type": "Feature", "geometry": geometry, "properties": props}


def test_geojson_takes_the_feature_id_and_point_coordinates() -> None:
    doc = {
        "type": "FeatureCollection",
        "features": [
            {**_feature({"kind": "cabinet"}, (12.5, 55.9)), "id": "CAB-9"},
            _feature({"asset_id": "K9", "kind": "circuit", "parent_id": "CAB-9"}, None),
        ],
    }
    cabinet, circuit = parse_geojson(json.dumps(doc))
    assert (cabinet.asset_id, cabinet.lat, cabinet.lon, cabinet.where) == ("CAB-9", 55.9, 12.5, "feature 1")
    assert (circuit.lat, circuit.parent_id) == (None, "CAB-9")


def test_bad_geojson_features_are_reported_by_number() -> None:
    doc = {
        "type": "FeatureCollection",
        "features": [
            _feature({"asset_id": "A1", "kind": "cabinet"}),
            {
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]},
                "properties": {"asset_id": "A2", "kind": "cabinet"},
            },
            _feature({"asset_id": "A3", "kind": "cabinet"}, (200.0, 56.0)),
            _feature({"asset_id": "A4", "kind": "cabinet", "criticality": True}),
            "not a feature",
        ],
    }
    with pytest.raises(InventoryError) as exc:
        parse_geojson(json.dumps(doc))
    problems = _problems(exc)
    assert "feature 2, field 'geometry': expected a Point or null" in problems
    assert any(
        p.startswith("feature 3, field 'lon': '200.0' is out of range")
        or p.startswith("feature 3, field 'lon': 200.0 is out of range")
        for p in problems
    )
    assert "feature 4, field 'criticality': expected a number, got True" in problems
    assert "feature 5: not a GeoJSON Feature" in problems


def test_geojson_that_is_not_a_feature_collection() -> None:
    with pytest.raises(InventoryError, match="FeatureCollection"):
        parse_geojson('{"type": "Feature"}')
    with pytest.raises(InventoryError) as exc:
        parse_geojson('{"type": "FeatureCollection",\n "features": [}')
    assert _problems(exc)[0].startswith("line 2: not valid JSON")


def test_files_of_unknown_type_or_encoding(tmp_path: Path) -> None:
    sheet = tmp_path / "x.xlsx"
    sheet.write_text("x")
    with pytest.raises(InventoryError, match=r"unknown file type '\.xlsx'"):
        parse_file(sheet)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("asset_id,kind,name\nA1,cabinet,Sk\xe5p\n".encode("latin-1"))
    with pytest.raises(InventoryError, match="not UTF-8"):
        parse_file(latin)
    with pytest.raises(InventoryError, match="does not exist"):
        parse_file(tmp_path / "missing.csv")
