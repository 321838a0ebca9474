"""lykta's Grafana dashboards, built with grafana-foundation-sdk; every panel's SQL comes from storage.panels.

Seven dashboards: city overview, asset detail, energy, lamps (burning hours), maintenance, ingestion health,
environment. They use one PostgreSQL data source (uid ``lykta-postgres``, TimescaleDB on) and the template
variables tenant, district and kind (asset detail: tenant and asset). Every dashboard links to the others
(keeping the time range and the variables); rows naming an asset link to its asset dashboard, rows naming a case
to the case in lykta's console when its address is known (``api_public_url``).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from typing import Any, Self, TypeVar

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
from grafana_foundation_sdk.models import geomap as geomap_model

from storage.panels import QUERIES, VARIABLES

DATASOURCE_TYPE = "grafana-postgresql-datasource"
DATASOURCE_UID = "lykta-postgres"
SOURCE = common.DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)
TAGS = ["lykta"]


def _field(name: str) -> str:
    """Grafana's placeholder for a column of the link's row."""
    return "${__data.fields." + name + "}"


def asset_url(asset_field: str) -> str:
    """The asset dashboard of the asset named in column ``asset_field`` of a row, over the same time range."""
    variables = f"var-tenant={_field('tenant_id')}&var-asset={_field(asset_field)}"
    return f"/d/lykta-asset/lykta-asset?{variables}&${{__url_time_range}}"


def case_url(console: str, case_field: str) -> str:
    """The case named in column ``case_field`` of a row, in lykta's console at ``console``."""
    return f"{console.rstrip('/')}/console/{_field('tenant_id')}/cases/{_field(case_field)}"


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


def _link(title: str, url: str) -> dashboard.DashboardLink:
    """A data link: Grafana offers it on every cell of a row (or a map marker's tooltip), with the row's values."""
    return (
        dashboard.DashboardLink(title)
        .type(model.DashboardLinkType.LINK)
        .url(url)
        .icon("external link")
        .tooltip(title)
        .tags([])
        .as_dropdown(False)
        .target_blank(False)
        .include_vars(False)
        .keep_time(False)
    )


P = TypeVar("P", table.Panel, geomap.Panel)


def _row_links(panel: P, console: str | None, *, asset: str = "asset", case: str | None = None) -> P:
    """A row's links: its asset's dashboard and, when lykta's address is known, its case in the console."""
    links: list[cogbuilder.Builder[model.DashboardLink]] = [_link("Asset dashboard", asset_url(asset))]
    if case is not None and console is not None:
        links.append(_link("Case in lykta", case_url(console, case)))
    return panel.data_links(links)


def _navigation() -> dashboard.DashboardLink:
    """Every lykta dashboard, keeping the time range and the variables."""
    return (
        dashboard.DashboardLink("lykta")
        .type(model.DashboardLinkType.DASHBOARDS)
        .tags(TAGS)
        .as_dropdown(False)
        .include_vars(True)
        .keep_time(True)
    )


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
        .links([_navigation()])
    )


def city(console: str | None = None) -> dashboard.Dashboard:
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
    faults = _table("Open faults and cases", "city.open_faults", _pos(0, 18, 24, 12)).description(
        "Every case not resolved and every open finding no case holds yet, past due first. Sort by any column; "
        "the asset opens its dashboard, the case opens it in lykta."
    )
    faults = _row_links(faults, console, case="case")
    return (
        _base("lykta-city", "lykta · City overview", "Assets on the map by state, counts, open cases, energy today.")
        .with_variable(_variable("tenant", "Municipality"))
        .with_variable(_variable("district", "District"))
        .with_variable(_variable("kind", "Asset kind"))
        .with_panel(
            geomap.Panel()
            .title("Assets by state")
            .description("Colour by state; a marker's tooltip shows its fault and since when, and opens the asset.")
            .datasource(SOURCE)
            .with_target(Sql("city.map"))
            .grid_pos(_pos(0, 0, 16, 18))
            .basemap(common_builders.MapLayerOptions().type("default").name("Basemap"))
            .layers([layer])
            .view(geomap.MapViewConfig().id("fit").zoom(13))
            .tooltip(geomap.TooltipOptions().mode(geomap_model.TooltipMode.DETAILS))
            .mappings(mappings)
            .thresholds(state_thresholds)
            .color_scheme(dashboard.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
            .data_links([_link("Asset dashboard", asset_url("asset_id"))])
        )
        .with_panel(
            _stat("Devices by state", "city.counts", "none", _pos(16, 0, 8, 6), (None, "blue")).description(
                "ok, faulty (an active case or an open finding), offline (silent for 4 intervals), in repair"
            )
        )
        .with_panel(_bars("Open cases by severity", "city.cases_by_severity", "none", _pos(16, 6, 8, 7)))
        .with_panel(
            _stat("Energy today", "city.energy_today", "kwatth", _pos(16, 13, 8, 5), (None, "yellow")).description(
                "Since midnight in the municipality's time zone, up to the last hour lykta db maintain rolled up."
            )
        )
        .with_panel(faults)
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
            "One asset: its latest readings and its cases; for a streetlight power, dim level and voltage with the "
            "dark hours marked.",
            "now-3d",
        )
        .with_variable(_variable("tenant", "Municipality", multi=False))
        .with_variable(_variable("asset", "Asset", multi=False))
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
            "Energy per district and day (the municipality's days) and what dimming saved against burning at full "
            "power.",
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


def lamps(console: str | None = None) -> dashboard.Dashboard:
    life = _row_links(_table("Burning hours per lamp", "lamps.life", _pos(0, 17, 24, 10)), console).description(
        "The controller's burning-hour counter against the rated life of the lamp type (asset property "
        "rated_life_h where the inventory gives one); most worn first."
    )
    burners = _row_links(_table("Lamps burning by day", "lamps.day_burners", _pos(12, 8, 12, 9)), console)
    return (
        _base(
            "lykta-lamps",
            "lykta · Lamps and burning hours",
            "Burning hours per district and day, lamps near their rated life, lamps burning by day.",
            "now-30d",
        )
        .with_variable(_variable("tenant", "Municipality"))
        .with_variable(_variable("district", "District"))
        .with_panel(
            _series("Burning hours per district and day", "lamps.by_district", "h", _pos(0, 0, 16, 8)).draw_style(
                common.GraphDrawStyle.BARS
            )
        )
        .with_panel(
            _stat(
                "Lamps near their rated life",
                "lamps.near_life",
                "none",
                _pos(16, 0, 8, 8),
                (None, "green"),
                (1, "orange"),
            )
        )
        .with_panel(
            _series("Hours burned by day, per district", "lamps.by_day", "h", _pos(0, 8, 12, 9))
            .draw_style(common.GraphDrawStyle.BARS)
            .description(
                "Hours a district's lamps burned beyond the dark hours of the day (civil dusk to dawn) and an hour's "
                "allowance per lamp: day burners."
            )
        )
        .with_panel(burners.description("Per lamp over the time range, most hours first."))
        .with_panel(life)
    )


def maintenance(console: str | None = None) -> dashboard.Dashboard:
    overdue = _row_links(_table("Overdue cases", "maintenance.overdue", _pos(12, 9, 12, 9)), console, case="case")
    offline = _row_links(_table("Offline devices", "maintenance.offline", _pos(0, 18, 24, 9)), console)
    offline = offline.description(
        "Devices silent for four reporting intervals, never heard, or whose last status said offline (their own or "
        "the Last Will the broker published when their connection died), with that status."
    )
    return (
        _base(
            "lykta-maintenance",
            "lykta · Maintenance",
            "Cases by fault and state, SLA breaches, mean time to repair, overdue cases, offline devices.",
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
            .no_value("no repairs")
            .description("From a case's opening to its verified repair; nothing when no case was repaired.")
        )
        .with_panel(_series("Cases opened, by priority", "maintenance.opened", "none", _pos(0, 9, 12, 9)))
        .with_panel(overdue)
        .with_panel(offline)
    )


def ingestion() -> dashboard.Dashboard:
    installation = "Ingest's own counters, of every municipality: only the installation's reader sees them."
    return (
        _base(
            "lykta-ingest",
            "lykta · Ingestion health",
            "A municipality's devices: who reports, readings per hour, how late they arrive, what was rejected. "
            "Below, for the installation: messages per second, rejections, lag and backlog.",
            "now-6h",
        )
        .with_variable(_variable("tenant", "Municipality"))
        .with_panel(_stat("Devices", "ingest.devices", "none", _pos(0, 0, 8, 6), (None, "blue")))
        .with_panel(
            _series("Reports by device time", "ingest.reports", "none", _pos(8, 0, 16, 6))
            .draw_style(common.GraphDrawStyle.BARS)
            .description(
                "Reports of the municipality's devices by kind, by device time, as lykta db maintain last counted them."
            )
        )
        .with_panel(
            _table("Delivery delay of the newest readings", "ingest.delivery", _pos(0, 6, 12, 8)).description(
                "Seconds from a device's newest reading to its arrival, per kind of device."
            )
        )
        .with_panel(_series("Rejected messages by reason", "ingest.tenant_rejections", "none", _pos(12, 6, 12, 8)))
        .with_panel(_table("Dead letters by reason", "ingest.dead_letters", _pos(0, 14, 24, 7)))
        .with_row(dashboard.Row("Installation").grid_pos(_pos(0, 21, 24, 1)))
        .with_panel(
            _series("Messages per second", "ingest.rate", "reqps", _pos(0, 22, 12, 8)).description(installation)
        )
        .with_panel(
            _series("Rejections by reason", "ingest.rejections", "none", _pos(12, 22, 12, 8)).description(installation)
        )
        .with_panel(
            _series("Lag and backlog", "ingest.lag", "s", _pos(0, 30, 12, 8))
            .thresholds(_thresholds((None, "green"), (5, "orange"), (60, "red")))
            .description(installation)
        )
        .with_panel(
            _table("Database replicas", "ingest.replication", _pos(12, 30, 12, 8)).description(
                "Each replica of the database and how far behind the primary it is (synchronous: the one every "
                "commit waits for); on a replica Grafana reads, how far behind it is. Empty with one database. "
                + installation
            )
        )
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


DASHBOARDS: dict[str, Callable[[str | None], dashboard.Dashboard]] = {
    "city": city,
    "asset": lambda _console: asset(),
    "energy": lambda _console: energy(),
    "lamps": lamps,
    "maintenance": maintenance,
    "ingestion": lambda _console: ingestion(),
    "environment": lambda _console: environment(),
}


def build_all(console: str | None = None) -> dict[str, dict[str, Any]]:
    """Each dashboard as Grafana's JSON, by file name. ``console``: lykta's public address (``api_public_url``),
    for links to cases; without it, cases are not links."""
    encoder = JSONEncoder(sort_keys=True, indent=2)
    out: dict[str, dict[str, Any]] = {}
    for name, make in DASHBOARDS.items():
        doc = json.loads(encoder.encode(make(console).build()))
        out[name] = doc
    return out
