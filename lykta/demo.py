"""``lykta demo``: the platform on local services with the sample town of Solvik.

Today: services up, schema migrated, the sample inventory imported, the state
printed. Each part of the platform adds its step here as it lands.
"""

from __future__ import annotations

from pathlib import Path

from lykta import admin, services
from lykta.config import Settings
from storage import assets
from storage.connection import connect

SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "solvik.geojson"
TENANT = ("solvik", "Solvik kommun", "sv", "Europe/Stockholm")


def _say(title: str, lines: list[str]) -> None:
    print(f"\n== {title}")
    for line in lines:
        print(f"   {line}")


def run(settings: Settings, inventory: Path | None = None) -> int:
    inventory = inventory or SAMPLE
    services.up(settings.state_dir)
    _say("services", services.status(settings.state_dir))
    url = admin.database_url(settings)
    _say("schema", admin.migrate(url, settings.retention_days))
    _say("database", admin.info(url))
    tenant_id, name, language, timezone = TENANT
    _say("tenant", [admin.add_tenant(url, tenant_id, name, language, timezone)])
    _say("inventory", [admin.import_assets(url, tenant_id, inventory)])
    with connect(url) as conn:
        summary = assets.summary(conn, tenant_id)
    _say(
        "assets",
        [f"{kind}: {n}" for kind, n in summary.assets_by_kind.items()] + [f"devices: {summary.devices}"],
    )
    print(f"\nThe services keep running; stop them with: lykta --state-dir {settings.state_dir} services down")
    return 0
