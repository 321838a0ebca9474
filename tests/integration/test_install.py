"""The set-up scripts: a second run changes nothing, and an unsupported system is refused clearly."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / script)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
        check=False,
    )


def test_everything_is_installed_and_a_check_finds_nothing_to_change() -> None:
    result = _run("install-system", {"LYKTA_INSTALL_CHECK": "1"})
    assert result.returncode == 0, result.stderr
    assert "system packages present" in result.stderr
    assert "TimescaleDB present for PostgreSQL" in result.stderr
    assert "would" not in result.stderr


def test_python_environment_is_not_rebuilt_when_unchanged() -> None:
    result = _run("install-python", {})
    assert result.returncode == 0, result.stderr
    assert "Python environment up to date" in result.stderr


def test_unsupported_systems_are_refused(tmp_path: Path) -> None:
    for content, name in [
        ('ID=ubuntu\nVERSION_ID="24.04"\nPRETTY_NAME="Ubuntu 24.04 LTS"\n', "Ubuntu 24.04 LTS"),
        (
            'ID=debian\nVERSION_ID="11"\nVERSION_CODENAME=bullseye\nPRETTY_NAME="Debian GNU/Linux 11"\n',
            "Debian GNU/Linux 11",
        ),
    ]:
        release = tmp_path / "os-release"
        release.write_text(content)
        result = _run("install-system", {"LYKTA_OS_RELEASE": str(release), "LYKTA_INSTALL_CHECK": "1"})
        assert result.returncode == 1
        assert f"unsupported system '{name}'" in result.stderr
        assert "Debian 12 (bookworm) or Debian 13 (trixie)" in result.stderr
