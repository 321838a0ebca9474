"""lykta's Grafana dashboards, built with grafana-foundation-sdk; every panel's SQL comes from storage.panels.

Six dashboards: city overview, asset detail, energy, maintenance, ingestion health, environment. They use one
PostgreSQL data source (uid ``lykta-postgres``, TimescaleDB on) and the template variables tenant, district
and kind (asset detail: tenant and asset).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from typing import Any, Self

with warnings.catch_warnings():
    # The SDK suggests its v2 dashboard schema; file provisioning and the JSON schemas Grafana publishes for
    # validation are the (still current) v1 dashboard, which is what lykta writes.
    warnings.filterwarnings("ignore", "Prefer using dashboardv2", DeprecationWarning)
    from grafana_foundation_sdk.builders import barchart, dashboard, geomap, stat, table, timeseries
    from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from storage.panels import QUERIES, VARIABLES

DATASOURCE_TYPE = "grafana-postgresql-datasource"
DATASOURCE_UID = "lykta-postgres"
SOURCE = common.DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)
TAGS = ["lykta"]

STATE_COLOURS = {
    "0": ("ok", "green"),
    "1": ("offline", "#8e8e8e"),
    "2": ("faulty", "red"),
    "3": ("in repair", "orange"),
}


class SqlQuery(cogvariants.Dataquery):
    """A query of Grafana's PostgreSQL data source (the SDK ships no type for it)."""

    def __init__(self, raw_sql: str, fmt: str, ref_id: str = "A") -> None:
        self.raw_sql = raw_sql
        self.format = fmt
        self.ref_id = ref_id

    def to_json(self) -> dict[str, object]:
        return {
            "refId": self.ref_id,
            "datasource": {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID},
            "editorMode": "code",
            "rawQuery": True,
            "rawSql": self.raw_sql,
            "format": self.format,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(str(data.get("rawSql", "")), str(data.get("format", "table")), str(data.get("refId", "A")))


class Sql(cogbuilder.Builder[SqlQuery]):
    def __init__(self, name: str, ref_id: str = "A") -> None:
        query = QUERIES[name]
        self._internal = SqlQuery(query.sql, query.format, ref_id)
        self.name = name

    def build(self) -> SqlQuery:
        return self._internal


def _variable(name: str, label: str, *, multi: bool = True) -> dashboard.QueryVariable:
    v = (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(SOURCE)
        .query(VARIABLES[name])
        .definition(VARIABLES[name])
        .refresh(model.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .allow_custom_value(False)  # only what the variable's own query lists (docs/security.md)
    )
    if multi:
        v = v.multi(True).include_all(True).current(model.VariableOption(selected=True, text="All", value="$__all"))
    return v


def _thresholds(*steps: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    return (
        dashboard.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=v, color=c) for v, c in steps])
    )


def _pos(x: int, y: int, w: int, h: int) -> model.GridPos:
    return model.GridPos(h=h, w=w, x=x, y=y)


def _stat(title: str, query: str, unit: str, pos: model.GridPos, *steps: tuple[float | None, str]) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .datasource(SOURCE)
        .with_target(Sql(query))
        .unit(unit)
        .grid_pos(pos)
        .thresholds(_thresholds(*(steps or ((None, "green"),))))
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False).fields("/.*/"))
    )


def _series(title: str, query: str, unit: str, pos: model.GridPos, description: str = "") -> timeseries.Panel:
    panel = timeseries.Panel().title(title).datasource(SOURCE).with_target(Sql(query)).unit(unit).grid_pos(pos)
    return panel.description(description) if description else panel


def _table(title: str, query: str, pos: model.GridPos) -> table.Panel:
    return table.Panel().title(title).datasource(SOURCE).with_target(Sql(query)).grid_pos(pos)


def _bars(title: str, query: str, unit: str, pos: model.GridPos) -> barchart.Panel:
    return barchart.Panel().title(title).datasource(SOURCE).with_target(Sql(query)).unit(unit).grid_pos(pos)


def _base(uid: str, title: str, description: str, time_from: str = "now-24h") -> dashboard.Dashboard:
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .time(time_from, "now")
        .refresh("1m")
        .timezone("browser")
        .editable()
    )


def city() -> dashboard.Dashboard:
    mappings: list[Any] = [
        model.ValueMap(options={k: model.ValueMappingResult(text=t, color=c, index=int(k))})
        for k, (t, c) in STATE_COLOURS.items()
    ]
    layer = (
        common_builders.MapLayerOptions()
        .type("markers")
        .name("Assets")
        .tooltip(True)
        .location(
            common_builders.FrameGeometrySource()
            .mode(common.FrameGeometrySourceMode.COORDS)
            .latitude("lat")
            .longitude("lon")
        )
        .config(
            {
                "style": {
                    "color": {"field": "state", "fixed": "green"},
                    "size": {"fixed": 5},
                    "symbol": {"fixed": "img/icons/marker/circle.svg", "mode": "fixed"},
                    "opacity": 0.8,
                },
                "showLegend": True,
            }
        )
    )
    state_thresholds = _thresholds((None, "green"), (1, "#8e8e8e"), (2, "red"), (3, "orange"))
    return (
        _base("lykta-city", "lykta · City overview", "Assets on the map by state, counts, open cases, energy today.")
        .with_variable(_variable("tenant", "Municipality"))
        .with_variable(_variable("district", "District"))
        .with_variable(_variable("kind", "Asset kind"))
        .with_panel(
            geomap.Panel()
            .title("Assets by state")
            .datasource(SOURCE)
            .with_target(Sql("city.map"))
            .grid_pos(_pos(0, 0, 16, 18))
            .basemap(common_builders.MapLayerOptions().type("default").name("Basemap"))
            .layers([layer])
            .view(geomap.MapViewConfig().id("fit").zoom(13))
            .mappings(mappings)
            .thresholds(state_thresholds)
            .color_scheme(dashboard.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
        )
        .with_panel(
            _stat("Devices by state", "city.counts", "none", _pos(16, 0, 8, 6), (None, "blue")).description(
                "ok, faulty (an active case or an open finding), offline (silent for 4 intervals), in repair"
            )
        )
        .with_panel(_bars("Open cases by severity", "city.cases_by_severity", "none", _pos(16, 6, 8, 7)))
        .with_panel(_stat("Energy today", "city.energy_today", "kwatth", _pos(16, 13, 8, 5), (None, "yellow")))
    )


def asset() -> dashboard.Dashboard:
    daylight = (
        dashboard.AnnotationQuery()
        .name("Dark (civil dusk to dawn)")
        .datasource(SOURCE)
        .enable(True)
        .icon_color("rgba(80, 90, 160, 0.25)")
        .target(Sql("asset.daylight"))
    )
    return (
        _base(
            "lykta-asset",
            "lykta · Asset detail",
            "One streetlight: power, dim level and voltage with the dark hours "
            "marked, its latest readings and its cases.",
            "now-3d",
        )
        .with_variable(_variable("tenant", "Municipality", multi=False))
        .with_variable(_variable("asset", "Streetlight", multi=False))
        .annotation(daylight)
        .with_panel(_series("Power", "asset.power", "watt", _pos(0, 0, 24, 8)).min(0))
        .with_panel(_series("Dim level", "asset.dim", "percent", _pos(0, 8, 12, 7)).min(0).max(100))
        .with_panel(
            _series("Supply voltage", "asset.voltage", "volt", _pos(12, 8, 12, 7)).thresholds(
                _thresholds((None, "red"), (207, "green"), (253, "red"))
            )
        )
        .with_panel(_table("Latest readings", "asset.latest", _pos(0, 15, 12, 9)))
        .with_panel(_table("Cases", "asset.cases", _pos(12, 15, 12, 9)))
    )


def energy() -> dashboard.Dashboard:
    return (
        _base(
            "lykta-energy",
            "lykta · Energy",
            "Energy per district and day from the daily rollup, and what dimming saved against burning at full power.",
            "now-30d",
        )
        .with_variable(_variable("tenant", "Municipality"))
        .with_variable(_variable("district", "District"))
        .with_panel(
            _series("Energy per district and day", "energy.by_district", "kwatth", _pos(0, 0, 16, 9)).draw_style(
                common.GraphDrawStyle.BARS
            )
        )
        .with_panel(
            _stat(
                "Saved by dimming", "energy.saved_share", "percent", _pos(16, 0, 8, 9), (None, "orange"), (20, "green")
            )
        )
        .with_panel(_series("Used, at full power, saved", "energy.savings", "kwatth", _pos(0, 9, 24, 9)))
    )


def maintenance() -> dashboard.Dashboard:
    return (
        _base(
            "lykta-maintenance",
            "lykta · Maintenance",
            "Cases by fault and state, SLA breaches, mean time to repair.",
            "now-30d",
        )
        .with_variable(_variable("tenant", "Municipality"))
        .with_variable(_variable("district", "District"))
        .with_variable(_variable("kind", "Asset kind"))
        .with_panel(_table("Cases by fault and state", "maintenance.by_fault_state", _pos(0, 0, 12, 9)))
        .with_panel(
            _stat("SLA breaches", "maintenance.breaches", "none", _pos(12, 0, 6, 9), (None, "green"), (1, "red"))
        )
        .with_panel(
            _stat(
                "Mean time to repair",
                "maintenance.mttr",
                "h",
                _pos(18, 0, 6, 9),
                (None, "green"),
                (72, "orange"),
                (168, "red"),
            )
        )
        .with_panel(_series("Cases opened, by priority", "maintenance.opened", "none", _pos(0, 9, 12, 9)))
        .with_panel(_table("Overdue cases", "maintenance.overdue", _pos(12, 9, 12, 9)))
    )


def ingestion() -> dashboard.Dashboard:
    return (
        _base(
            "lykta-ingest",
            "lykta · Ingestion health",
            "Messages per second, rejections by reason, lag and dead letters.",
            "now-6h",
        )
        .with_variable(_variable("tenant", "Municipality"))
        .with_panel(_series("Messages per second", "ingest.rate", "reqps", _pos(0, 0, 12, 8)))
        .with_panel(_series("Rejections by reason", "ingest.rejections", "none", _pos(12, 0, 12, 8)))
        .with_panel(
            _series("Lag and backlog", "ingest.lag", "s", _pos(0, 8, 12, 8)).thresholds(
                _thresholds((None, "green"), (5, "orange"), (60, "red"))
            )
        )
        .with_panel(_table("Dead letters by reason", "ingest.dead_letters", _pos(12, 8, 12, 8)))
    )


def environment() -> dashboard.Dashboard:
    return (
        _base(
            "lykta-environment",
            "lykta · Environment",
            "Road-surface temperature and icing, stormwater wells, waste bins.",
            "now-2d",
        )
        .with_variable(_variable("tenant", "Municipality"))
        .with_variable(_variable("district", "District"))
        .with_panel(
            _series("Road surface temperature", "environment.road", "celsius", _pos(0, 0, 12, 8)).thresholds(
                _thresholds((None, "blue"), (0, "orange"), (3, "green"))
            )
        )
        .with_panel(_series("Dew point", "environment.dew", "celsius", _pos(12, 0, 12, 8)))
        .with_panel(_table("Icing now", "environment.icing", _pos(0, 8, 8, 8)))
        .with_panel(
            _series("Stormwater well levels", "environment.wells", "lengthm", _pos(8, 8, 16, 8)).thresholds(
                _thresholds((None, "green"), (1.9, "orange"), (2.2, "red"))
            )
        )
        .with_panel(_bars("Bin fill", "environment.bins", "percent", _pos(0, 16, 24, 8)))
    )


DASHBOARDS: dict[str, Callable[[], dashboard.Dashboard]] = {
    "city": city,
    "asset": asset,
    "energy": energy,
    "maintenance": maintenance,
    "ingestion": ingestion,
    "environment": environment,
}


def build_all() -> dict[str, dict[str, Any]]:
    """Each dashboard as Grafana's JSON, by file name."""
    encoder = JSONEncoder(sort_keys=True, indent=2)
    out: dict[str, dict[str, Any]] = {}
    for name, make in DASHBOARDS.items():
        doc = json.loads(encoder.encode(make().build()))
        out[name] = doc
    return out
