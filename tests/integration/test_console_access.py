"""The operator console's doors, as a hostile or careless client tries them: sign-in and its slowing down,
sessions that end, a municipality's pages and cases closed to people of another (404, no hint), CSRF on
every form, and the security headers."""

from __future__ import annotations

import re
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import httpx
import psycopg

from cases import admin
from floor import inventory
from storage import assets, tenants
from tests.conftest import Api
from tests.integration.test_cases import add_crews, finding, sync
from tests.integration.test_rules import NIGHT

PASSWORD = "rätt-lösenord-123"


def add_norrvik(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        tenants.upsert(conn, "norrvik", "Norrviks kommun", "pt", "Europe/Lisbon")
        records = inventory.parse_file(Path(__file__).resolve().parents[2] / "examples" / "solvik.csv")
        renamed = [replace(r, device_id="N-" + r.device_id) if r.device_id else r for r in records]
        assets.import_records(conn, "norrvik", renamed, "solvik.csv")


def signed_in(api: Api, email: str) -> httpx.Client:
    client = httpx.Client(base_url=api.base)
    answer = client.post("/console/login", data={"email": email, "password": PASSWORD})
    assert answer.status_code == 303, answer.text
    return client


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no CSRF token on the page"
    return found.group(1)


def test_people_see_only_the_municipalities_they_work_for(api: Api) -> None:
    add_norrvik(api.url)
    add_crews(api.url)
    finding(api.url, "SL-0003", "lampFailure", NIGHT)
    sync(api.url, api.clock[0])
    admin.add_operator(api.url, "eva@solvik.example", "Eva", ["solvik"], PASSWORD)
    admin.add_operator(api.url, "nils@norrvik.example", "Nils", ["norrvik"], PASSWORD)
    with psycopg.connect(api.url, autocommit=True) as conn:
        [solvik_case] = conn.execute("SELECT case_id FROM cases WHERE tenant_id = 'solvik'").fetchone() or []
    with closing(signed_in(api, "nils@norrvik.example")) as nils:
        assert nils.get("/console").headers["location"] == "/console/norrvik/inbox"
        assert nils.get("/console/norrvik/inbox").status_code == 200
        for path in ("/console/solvik/inbox", "/console/solvik/cases", f"/console/solvik/cases/{solvik_case}",
                     "/console/solvik/cases.csv", f"/console/norrvik/cases/{solvik_case}",
                     f"/console/norrvik/cases/{solvik_case}/chart.svg", "/console/go?tenant=solvik"):  # fmt: skip
            assert nils.get(path).status_code == 404, path
        page = nils.get("/console/norrvik/inbox").text
        closing_other = nils.post(f"/console/norrvik/cases/{solvik_case}/close",
                                  data={"csrf": csrf_of(page), "note": "inte vårt"})  # fmt: skip
        assert closing_other.status_code == 404
        exported = nils.get("/console/norrvik/cases.csv", params={"status": ""}).text
        assert exported.strip().count("\n") == 0  # the header only: Norrvik has no cases
    with psycopg.connect(api.url) as conn:
        assert conn.execute("SELECT status FROM cases WHERE case_id = %s", (solvik_case,)).fetchone() == ("open",)


def test_forms_need_the_sessions_csrf_token(api: Api) -> None:
    add_crews(api.url)
    finding(api.url, "SL-0003", "lampFailure", NIGHT)
    sync(api.url, api.clock[0])
    admin.add_operator(api.url, "eva@solvik.example", "Eva", ["solvik"], PASSWORD)
    with closing(signed_in(api, "eva@solvik.example")) as eva:
        page = eva.get("/console/solvik/cases/1").text
        for token in ("", "forged"):
            refused = eva.post("/console/solvik/cases/1/note", data={"csrf": token, "note": "x"})
            assert refused.status_code == 403 and "reload the page" in refused.text
        saved = eva.post("/console/solvik/cases/1/note", data={"csrf": csrf_of(page), "note": "Kollat"})
        assert saved.headers["location"] == "/console/solvik/cases/1?msg=saved"
        shown = eva.get("/console/solvik/cases/1").text
        assert "Kollat" in shown and "operator:solvik/Eva" in shown  # under the person's name
        assert eva.get("/console/solvik/cases/1", params={"msg": "<b>ring 112</b>"}).text.count("ring 112") == 0


def test_sessions_end_at_sign_out_and_when_the_person_is_disabled(api: Api) -> None:
    admin.add_operator(api.url, "eva@solvik.example", "Eva", ["solvik"], PASSWORD)
    with closing(signed_in(api, "eva@solvik.example")) as eva:
        cookie = eva.cookies.get("lykta_console")
        assert cookie and eva.get("/console/solvik/inbox").status_code == 200
        assert eva.post("/console/logout").status_code == 403  # a forged sign-out is refused
        eva.post("/console/logout", data={"csrf": csrf_of(eva.get("/console/solvik/inbox").text)})
        stolen = httpx.get(api.base + "/console/solvik/inbox", cookies={"lykta_console": cookie})
        assert stolen.status_code == 303 and stolen.headers["location"] == "/console/login"  # ended, not hidden
    with closing(signed_in(api, "eva@solvik.example")) as eva:
        admin.disable_operator(api.url, "eva@solvik.example")
        assert eva.get("/console/solvik/inbox").headers["location"] == "/console/login"
        again = eva.post("/console/login", data={"email": "eva@solvik.example", "password": PASSWORD})
        assert again.status_code == 401


def test_guessing_passwords_is_slowed_down_and_says_nothing_about_who_exists(api: Api) -> None:
    admin.add_operator(api.url, "eva@solvik.example", "Eva", ["solvik"], PASSWORD)
    with httpx.Client(base_url=api.base) as client:
        unknown = client.post("/console/login", data={"email": "nobody@solvik.example", "password": "x" * 12})
        wrong = client.post("/console/login", data={"email": "eva@solvik.example", "password": "x" * 12})
        assert unknown.status_code == wrong.status_code == 401
        assert "Fel e-post eller lösenord." in unknown.text and "Fel e-post eller lösenord." in wrong.text
        for _ in range(4):
            client.post("/console/login", data={"email": "eva@solvik.example", "password": "x" * 12})
        stopped = client.post("/console/login", data={"email": "eva@solvik.example", "password": PASSWORD})
        assert stopped.status_code == 429  # even the right password waits now
    with psycopg.connect(api.url) as conn:
        stored = conn.execute("SELECT password_hash FROM operators").fetchone()
    assert stored is not None and stored[0].startswith("scrypt$") and PASSWORD not in stored[0]


def test_console_pages_carry_security_headers(api: Api) -> None:
    page = httpx.get(api.base + "/console/login")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert httpx.get(api.base + "/console/solvik/inbox").headers["location"] == "/console/login"


def _links(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [str(node["url"])] if "url" in node and "title" in node else []
        return found + [u for v in node.values() for u in _links(v)]
    if isinstance(node, list):
        return [u for v in node for u in _links(v)]
    return []


def test_grafana_and_the_console_link_both_ways(api: Api) -> None:
    """A fault row in Grafana opens the case in the console; a case opens the asset dashboard at its time."""
    from dashboards import build

    add_crews(api.url)
    finding(api.url, "SL-0003", "lampFailure", NIGHT)
    sync(api.url, api.clock[0])
    admin.add_operator(api.url, "eva@solvik.example", "Eva", ["solvik"], PASSWORD)
    case_links = {u for doc in build.build_all(api.base).values() for u in _links(doc) if "/console/" in u}
    assert case_links, "no dashboard links to the console"
    api.app.state.grafana_url = "https://grafana.example"
    with closing(signed_in(api, "eva@solvik.example")) as eva:
        for template in case_links:
            url = re.sub(r"\$\{__data\.fields\.tenant_id\}", "solvik", template)
            url = re.sub(r"\$\{__data\.fields\.[a-z_]+\}", "1", url)
            opened = eva.get(url.removeprefix(api.base))
            assert opened.status_code == 200 and "Ärende #1: Släckt lampa" in opened.text, url
        page = eva.get("/console/solvik/cases/1").text
    link = re.search(r'href="(https://grafana\.example/d/lykta-asset/[^"]+)"', page)
    assert link, "no link to the asset dashboard"
    assert "var-tenant=solvik&amp;var-asset=SL-0003&amp;from=" in link[1]
    start = int(re.search(r"from=(\d+)", link[1])[1])  # type: ignore[index]
    assert start == int((NIGHT - 86400) * 1000)  # a day before the fault was seen


def test_a_cases_chart_draws_the_assets_readings_and_crews_are_edited(api: Api) -> None:
    from tests.integration.test_rules import store_readings

    add_crews(api.url)
    finding(api.url, "SL-0003", "lampFailure", NIGHT)
    sync(api.url, api.clock[0])
    store_readings(api.url, "SLC-0003", [(NIGHT - 7200 + 600 * i, {"power_w": 70.0 if i < 12 else 0.0})
                                         for i in range(24)])  # fmt: skip
    admin.add_operator(api.url, "eva@solvik.example", "Eva", ["solvik"], PASSWORD)
    with closing(signed_in(api, "eva@solvik.example")) as eva:
        chart = eva.get("/console/solvik/cases/1/chart.svg")
        assert chart.headers["content-type"] == "image/svg+xml"
        points = re.search(r'<polyline [^>]*points="([^"]+)"', chart.text)
        assert points and len(points[1].split()) >= 12 and "power_w: 0 to 70" in chart.text
        page = eva.get("/console/solvik/crews").text
        edited = eva.post("/console/solvik/crews", data={"csrf": csrf_of(page), "crew_id": "ljus", "name": "Ljus AB",
                                                         "skills": "lighting, electrical", "areas": ""})  # fmt: skip
        assert edited.headers["location"] == "/console/solvik/crews?msg=saved"
        bad = eva.post("/console/solvik/crews", data={"csrf": csrf_of(page), "crew_id": "ljus", "name": "Ljus AB",
                                                      "webhook_url": "ftp://x"})  # fmt: skip
        assert bad.status_code == 409 and "Webhook-adressen måste börja med http://" in bad.text  # Swedish
    with psycopg.connect(api.url) as conn:
        row = conn.execute("SELECT name, skills, active FROM crews WHERE crew_id = 'ljus'").fetchone()
    assert row == ("Ljus AB", ["lighting", "electrical"], False)  # the box left unticked: no longer active


def test_the_case_list_pages_through_every_case_once(api: Api) -> None:
    with psycopg.connect(api.url, autocommit=True) as conn:
        conn.execute(
            """INSERT INTO cases (tenant_id, asset_id, fault, status, priority, severity, source, observed_at,
                                  opened_at, due_at, resolved_at, resolution)
               SELECT 'solvik', a.asset_id, 'lampFailure', 'resolved', 'round', 'major', 'telemetry',
                      now() - make_interval(days => n), now() - make_interval(days => n), now(),
                      now() - make_interval(days => n) + interval '1 hour', 'verified'
               FROM (SELECT asset_id, (row_number() OVER (ORDER BY asset_id))::int AS n FROM assets
                     WHERE kind = 'streetlight' LIMIT 120) a"""
        )
    admin.add_operator(api.url, "eva@solvik.example", "Eva", ["solvik"], PASSWORD)
    seen: list[str] = []
    with closing(signed_in(api, "eva@solvik.example")) as eva:
        for page in (1, 2, 3):
            text = eva.get("/console/solvik/cases", params={"status": "resolved", "page": page}).text
            assert f"{page} / 3" in text
            seen += re.findall(r'<a href="/console/solvik/cases/(\d+)">', text)
        assert "50 av 120" in eva.get("/console/solvik/cases", params={"status": "resolved"}).text
    assert len(seen) == 120 and len(set(seen)) == 120  # every case once, none twice


def test_refusals_are_told_in_the_municipalitys_language(api: Api) -> None:
    from cases.console.words import REFUSED
    from cases.texts import LANGUAGES

    assert all(set(v) == set(LANGUAGES) for v in REFUSED.values())
    add_crews(api.url)
    finding(api.url, "SL-0003", "lampFailure", NIGHT)
    sync(api.url, api.clock[0])
    admin.add_operator(api.url, "eva@solvik.example", "Eva", ["solvik"], PASSWORD)
    with closing(signed_in(api, "eva@solvik.example")) as eva:
        token = csrf_of(eva.get("/console/solvik/cases/1").text)
        wrong_crew = eva.post("/console/solvik/cases/1/assign", data={"csrf": token, "crew_id": "el"})
        assert wrong_crew.status_code == 409
        assert "Laget el utför inte lighting-arbete, som felet kräver." in wrong_crew.text
        no_note = eva.post("/console/solvik/cases/1/close", data={"csrf": token, "note": " "})
        assert "Skriv ett besked: de berörda läser det." in no_note.text
        nowhere = eva.post("/console/solvik/cases/1/merge", data={"csrf": token, "into": "999"})
        assert "Ärende 999 är inget aktivt ärende i kommunen." in nowhere.text
