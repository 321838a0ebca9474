"""What lykta's server-rendered pages share: templates, their own static files and the npm packages installed
beside the repository (web/node_modules: Leaflet; never copied into the repository), the page language before
anyone signed in, and the security headers every page is sent with."""

from __future__ import annotations

from pathlib import Path

import psycopg
from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cases import texts
from storage import tenants

HERE = Path(__file__).resolve().parent
TEMPLATES = Jinja2Templates(directory=str(HERE / "templates"))
STATIC = HERE / "static"
PACKAGES = HERE.parent / "web" / "node_modules"
"""npm packages installed by scripts/install-web"""
PAGES = ("/crew", "/report", "/console", "/static", "/vendor")


def mount(app: FastAPI) -> None:
    """Serve lykta's own static files and, when installed, Leaflet's."""
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    leaflet = PACKAGES / "leaflet" / "dist"
    if leaflet.is_dir():
        app.mount("/vendor/leaflet", StaticFiles(directory=str(leaflet)), name="leaflet")


def leaflet_installed() -> bool:
    return (PACKAGES / "leaflet" / "dist" / "leaflet.js").is_file()


def words(lang: str) -> dict[str, str]:
    return {k: texts.word(k, lang) for k in texts.WORDS}


def guest_language(conn: psycopg.Connection, request: Request) -> str:
    """The language of a page before anyone signed in: the installation's one tenant's, else the best of the
    browser's languages lykta speaks, else English."""
    every = tenants.all_tenants(conn)
    conn.rollback()
    if len(every) == 1:
        return texts.language(every[0].language)
    for part in request.headers.get("accept-language", "").split(","):
        code = part.split(";", 1)[0].strip().lower()[:2]
        if code in texts.LANGUAGES:
            return code
    return "en"


class SecurityHeaders:
    """Every answer: no sniffing, no framing, the referrer kept to this site. Pages also get a content security
    policy: scripts, styles and fonts from this site only; images from here and the map's tile server."""

    def __init__(self, app: ASGIApp, tiles: str = "") -> None:
        self.app = app
        tile_host = "/".join(tiles.split("/", 3)[:3]).replace("{s}.", "*.") if tiles else ""
        self.policy = (
            f"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob: {tile_host}".rstrip()
            + "; connect-src 'self'; worker-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        page = str(scope.get("path", "")).startswith(PAGES)

        async def headed(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"same-origin"),
                ]
                if page:
                    headers.append((b"content-security-policy", self.policy.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, headed)
