"""What a crew is told about a work order, one template for e-mail and webhook, in the tenant's language and
local time: the change (assigned, updated, a citizen's report, cancelled, withdrawn, escalated, reopened) and
why, the fault and the asset (what it is: lamp type, luminaire, pole height, to know what to bring), where it
is (a map and directions), when it is due, the citizens' own words and photos, and the work order on the crew
page.

Links to lykta itself are written with :data:`PUBLIC` in place of the installation's address: the outbox puts
``api_public_url`` there when it sends (the address is the deployment's, not the message's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import psycopg

from cases import texts
from floor.timefmt import iso, local
from storage import case_assets as asset_store
from storage import cases as store
from storage import citizens as requests_store
from storage import tenants
from storage.case_assets import Asset
from storage.work_orders import WorkOrder

PUBLIC = "{api_public_url}"
"""stands for the installation's public address until the outbox sends the message"""


@dataclass(frozen=True)
class Composed:
    subject: str
    text: str
    """the e-mail's body"""
    payload: dict[str, Any]
    """the webhook's JSON"""


def map_link(lat: float, lon: float) -> str:
    return f"https://www.openstreetmap.org/?mlat={lat:.6f}&mlon={lon:.6f}#map=19/{lat:.6f}/{lon:.6f}"


def directions_link(lat: float, lon: float) -> str:
    return "https://www.openstreetmap.org/directions?to=" + quote(f"{lat:.6f},{lon:.6f}")


def photo_link(photo_id: int) -> str:
    return f"{PUBLIC}/crew/photos/{photo_id}"


def _number(value: Any) -> float | int | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() else number


def asset_details(a: Asset | None) -> dict[str, Any]:
    """What a crew wants to know about the asset before driving out."""
    if a is None:
        return {}
    props = a.properties or {}
    return {
        "asset_id": a.asset_id,
        "kind": a.kind,
        "name": a.name,
        "district": a.district,
        "lamp_type": a.lamp_type,
        "rated_power_w": a.rated_power_w,
        "luminaire": props.get("luminaire"),
        "pole_height_m": _number(props.get("pole_height_m")),
        "install_date": a.install_date,
        "lat": a.lat,
        "lon": a.lon,
    }


def _asset_line(d: dict[str, Any], lang: str) -> str | None:
    parts = []
    if d.get("lamp_type"):
        parts.append(f"{texts.word('lamp', lang)} {d['lamp_type']}")
    if d.get("luminaire"):
        parts.append(f"{texts.word('luminaire', lang)} {d['luminaire']}")
    if d.get("pole_height_m") is not None:
        parts.append(f"{texts.word('pole_height', lang)} {d['pole_height_m']} m")
    if d.get("install_date"):
        parts.append(f"{texts.word('installed', lang)} {d['install_date']}")
    return ", ".join(parts) or None


def compose(conn: psycopg.Connection, order: WorkOrder, change: str, why: str | None = None) -> Composed:
    """The message telling a crew about ``change`` (``kind`` or ``kind-detail``) to its work order."""
    kind = change.split("-", 1)[0]
    tenant = tenants.get(conn, order.tenant_id)
    lang, zone = texts.language(tenant.language), tenant.timezone
    c = store.existing_case(conn, order.case_id)
    asset = asset_store.asset(conn, order.tenant_id, c.asset_id)
    details = asset_details(asset)
    children = sorted({f.asset_id for f in store.case_findings(conn, c.case_id)} - {c.asset_id})
    reports = requests_store.of_case(conn, order.tenant_id, c.case_id)
    photos = requests_store.photos(conn, order.tenant_id, [r.request_id for r in reports])
    crew_page = f"{PUBLIC}/crew#wo-{order.work_order_id}"
    links: dict[str, str] = {"crew_page": crew_page}
    if asset is not None and asset.lat is not None and asset.lon is not None:
        links["map"] = map_link(asset.lat, asset.lon)
        links["directions"] = directions_link(asset.lat, asset.lon)
    said: list[dict[str, Any]] = [
        {
            "request_id": r.request_id,
            "requested_local": local(r.requested_at, zone),
            "description": r.description,
            "address": r.address,
            "attributes": r.attributes,
            "photos": [photo_link(p.photo_id) for p in photos if p.request_id == r.request_id],
        }
        for r in reports
    ]
    work_order = {
        "work_order_id": order.work_order_id,
        "case_id": c.case_id,
        "status": order.status,
        "crew_id": order.crew_id,
        "skill": order.skill,
        "title": order.title,
        "asset_id": c.asset_id,
        "fault": c.fault,
        "priority": c.priority,
        "due_at": iso(c.due_at),
        "due_local": local(c.due_at, zone),
        "observed_at": iso(c.observed_at),
        "observed_local": local(c.observed_at, zone),
        "lat": asset.lat if asset else None,
        "lon": asset.lon if asset else None,
        "children": children,
    }
    payload: dict[str, Any] = {
        "event": change,
        "tenant": order.tenant_id,
        "work_order": work_order,
        "asset": details,
        "reports": said,
        "links": links,
    }
    if why:
        payload["why"] = why
    prefix, first = texts.change(kind, lang)
    subject = (
        f"[{texts.word('work_order', lang)} #{order.work_order_id}] {prefix + ': ' if prefix else ''}{order.title}"
    )
    named = (c.asset_id, details.get("name"), details.get("district"))
    lines = [first]
    if why:
        lines.append(f"{texts.word('why', lang)}: {why}")
    lines += [
        "",
        f"{texts.word('work_order', lang)} #{order.work_order_id} - {order.title}",
        f"{texts.word('case', lang)} #{c.case_id}",
        f"{texts.word('asset', lang)}: {', '.join(x for x in named if x)}",
    ]
    described = _asset_line(details, lang)
    if described:
        lines.append(f"  {described}")
    lines += [
        f"{texts.word('priority', lang)}: {texts.priority(c.priority, lang)}",
        f"{texts.word('due', lang)}: {work_order['due_local']}",
        f"{texts.word('since', lang)}: {work_order['observed_local']}",
    ]
    if "map" in links:
        lines += [
            f"{texts.word('where', lang)}: {asset.lat:.6f}, {asset.lon:.6f}" if asset else "",
            f"{texts.word('map', lang)}: {links['map']}",
            f"{texts.word('directions', lang)}: {links['directions']}",
        ]
    if children:
        lines.append(f"{texts.word('also', lang)}: {', '.join(children)}")
    if said:
        lines += ["", f"{texts.word('reports', lang)}:"]
        for r in said:
            lines.append(f"  #{r['request_id']} {r['requested_local']}: {r['description'] or r['address'] or '-'}")
            lines += [f"    {texts.word('photo', lang)}: {link}" for link in r["photos"]]
    lines += ["", f"{texts.word('crew_page', lang)}: {crew_page}"]
    return Composed(subject, "\n".join(lines) + "\n", payload)


def resolve_links(value: Any, public: str) -> Any:
    """``value`` (a text or a webhook's JSON) with :data:`PUBLIC` replaced by the installation's address."""
    if isinstance(value, str):
        return value.replace(PUBLIC, public.rstrip("/"))
    if isinstance(value, dict):
        return {k: resolve_links(v, public) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_links(v, public) for v in value]
    return value
