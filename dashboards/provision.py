"""``lykta dashboards build|publish``: dashboard JSON and Grafana provisioning files; publishing over HTTP.

``build`` writes a directory a Grafana server (11 or newer) mounts as it is::

    OUT/dashboards/lykta-*.json                  the six dashboards
    OUT/provisioning/datasources/lykta.yaml      PostgreSQL data source, TimescaleDB on, read-only role
    OUT/provisioning/dashboards/lykta.yaml       a file provider for the folder "lykta"

``publish`` pushes the same dashboards through Grafana's HTTP API with grafana-client: the folder by uid, each
dashboard by uid with ``overwrite``, so publishing again updates and never duplicates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError

from dashboards.build import DATASOURCE_TYPE, DATASOURCE_UID, build_all
from floor.errors import LyktaError

FOLDER_UID = "lykta"
FOLDER_TITLE = "lykta"
READER = "lykta_grafana"


@dataclass(frozen=True)
class Target:
    """Where Grafana finds the database: as seen from the Grafana server."""

    host: str
    port: int
    database: str
    user: str = READER
    sslmode: str = "disable"
    dashboards_path: str = "/var/lib/grafana/dashboards/lykta"


def build(out: Path, target: Target, console: str | None = None) -> list[Path]:
    """Write the dashboards and the provisioning files; returns what was written. ``console``: lykta's public
    address, for links from cases in the dashboards to the console."""
    written: list[Path] = []
    boards = out / "dashboards"
    boards.mkdir(parents=True, exist_ok=True)
    for doc in build_all(console).values():
        path = boards / f"{doc['uid']}.json"
        path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    datasources = out / "provisioning" / "datasources"
    datasources.mkdir(parents=True, exist_ok=True)
    source = {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "lykta",
                "uid": DATASOURCE_UID,
                "type": DATASOURCE_TYPE,
                "access": "proxy",
                "url": f"{target.host}:{target.port}",
                "user": target.user,
                "isDefault": False,
                "editable": False,
                "jsonData": {
                    "database": target.database,
                    "sslmode": target.sslmode,
                    "timescaledb": True,
                    "postgresVersion": 1500,
                    "maxOpenConns": 10,
                    "timeInterval": "1m",
                },
                # Grafana reads the password from its environment when it provisions the data source
                "secureJsonData": {"password": "$LYKTA_GRAFANA_DB_PASSWORD"},
            }
        ],
    }
    path = datasources / "lykta.yaml"
    path.write_text(yaml.safe_dump(source, sort_keys=False), encoding="utf-8")
    written.append(path)
    providers = out / "provisioning" / "dashboards"
    providers.mkdir(parents=True, exist_ok=True)
    provider = {
        "apiVersion": 1,
        "providers": [
            {
                "name": "lykta",
                "orgId": 1,
                "folder": FOLDER_TITLE,
                "folderUid": FOLDER_UID,
                "type": "file",
                "disableDeletion": True,
                "allowUiUpdates": False,
                "updateIntervalSeconds": 60,
                "options": {"path": target.dashboards_path, "foldersFromFilesStructure": False},
            }
        ],
    }
    path = providers / "lykta.yaml"
    path.write_text(yaml.safe_dump(provider, sort_keys=False), encoding="utf-8")
    written.append(path)
    return written


def publish(url: str, token: str, timeout: float = 10.0, console: str | None = None) -> list[dict[str, Any]]:
    """Create or update the folder and every dashboard on a Grafana server; returns Grafana's answers."""
    api = GrafanaApi.from_url(url, credential=token, timeout=timeout)
    try:
        try:
            api.folder.get_folder(FOLDER_UID)
        except GrafanaClientError as exc:
            if exc.status_code != 404:
                raise
            api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
        answers = []
        for doc in build_all(console).values():
            answers.append(
                api.dashboard.update_dashboard(
                    {
                        "dashboard": {**doc, "id": None},
                        "folderUid": FOLDER_UID,
                        "overwrite": True,
                        "message": "lykta dashboards publish",
                    }
                )
            )
    except GrafanaClientError as exc:
        raise LyktaError(f"Grafana at {url} refused: HTTP {exc.status_code} {exc.message}") from None
    except OSError as exc:
        raise LyktaError(f"cannot reach Grafana at {url}: {exc}") from None
    return answers
