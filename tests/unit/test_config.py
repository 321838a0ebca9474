"""Configuration: defaults, file, environment, and errors that name the setting."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from floor import config
from floor.errors import ConfigError
from tests.helpers import wait_for


def test_defaults() -> None:
    settings = config.load(environ={})
    assert settings.state_dir == Path(".lykta")
    assert settings.retention_days == 395
    assert settings.database_url is None


def test_file_then_environment_then_arguments(tmp_path: Path) -> None:
    elsewhere = str(tmp_path / "elsewhere")
    path = tmp_path / "lykta.toml"
    path.write_text('retention_days = 30\nstate_dir = "/srv/lykta"\nlog_level = "debug"\n')
    settings = config.load(path, environ={"LYKTA_RETENTION_DAYS": "60"})
    assert (settings.retention_days, settings.state_dir, settings.log_level) == (60, Path("/srv/lykta"), "DEBUG")
    settings = config.load(environ={"LYKTA_CONFIG": str(path)}, state_dir=elsewhere)
    assert (settings.retention_days, settings.state_dir) == (30, Path(elsewhere))


@pytest.mark.parametrize(
    ("content", "environ", "message"),
    [
        ("retention_days = 'many'", {}, "setting 'retention_days': expected a whole number"),
        ("retention_days = 0", {}, "setting 'retention_days': must be greater than 0"),
        ("retention_days = true", {}, "setting 'retention_days': expected a whole number"),
        ("colour = 'blue'", {}, "unknown setting 'colour'"),
        ("retention_days = ", {}, "is not valid TOML"),
        ("", {"LYKTA_DATABASE_URL": "mysql://x"}, "setting 'database_url': expected a URL starting with postgresql"),
        ("", {"LYKTA_MQTT_URL": "http://x"}, "setting 'mqtt_url'"),
        ("", {"LYKTA_LOG_LEVEL": "LOUD"}, "setting 'log_level'"),
    ],
)
def test_bad_configuration_names_the_setting(
    tmp_path: Path, content: str, environ: dict[str, str], message: str
) -> None:
    path = tmp_path / "lykta.toml"
    path.write_text(content)
    with pytest.raises(ConfigError) as exc:
        config.load(path, environ=environ)
    assert message in str(exc.value)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        config.load("/nonexistent/lykta.toml", environ={})


def test_help_lists_every_environment_variable() -> None:
    text = config.describe_environment()
    for name in (
        "LYKTA_STATE_DIR",
        "LYKTA_DATABASE_URL",
        "LYKTA_MQTT_URL",
        "LYKTA_RETENTION_DAYS",
        "LYKTA_LOG_LEVEL",
        "LYKTA_CONFIG",
    ):
        assert name in text


def test_secrets_stay_out_of_reprs_and_errors(tmp_path: Path) -> None:
    import subprocess
    import sys

    settings = config.load(environ={"LYKTA_MQTT_PASSWORD": "mq-s3cret", "LYKTA_SMTP_PASSWORD": "mail-s3cret"})
    assert settings.mqtt_password == "mq-s3cret"
    assert "mq-s3cret" not in repr(settings) and "mail-s3cret" not in repr(settings)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LYKTA_")} | {"LYKTA_STATE_DIR": str(tmp_path)}
    env["LYKTA_DATABASE_URL"] = "postgresql://lykta:db-s3cret@127.0.0.1:1/lykta"
    env |= {"LYKTA_MQTT_URL": "mqtt://127.0.0.1:1", "LYKTA_MQTT_USERNAME": "x", "LYKTA_MQTT_PASSWORD": "mq-s3cret"}
    for args in (["db", "info"], ["cases", "list"]):
        done = subprocess.run([sys.executable, "-m", "lykta.cli", *args], capture_output=True, text=True, env=env,
                              timeout=60, check=False)  # fmt: skip
        assert done.returncode == 1 and "lykta:***@127.0.0.1:1" in done.stderr, (args, done.stderr)
        assert "s3cret" not in done.stdout + done.stderr
    # ingest waits for its database (it says so, without the password) and stops cleanly when told to
    log = tmp_path / "ingest.log"
    with log.open("w") as sink:
        ingest = subprocess.Popen([sys.executable, "-m", "lykta.cli", "ingest"], env=env, stdout=sink, stderr=sink)
    try:
        wait_for(lambda: "waiting for the database" in log.read_text(), timeout=30, what="ingest to wait")
    finally:
        ingest.send_signal(signal.SIGTERM)
        assert ingest.wait(30) == 0
    assert "lykta:***@127.0.0.1:1" in log.read_text() and "s3cret" not in log.read_text()
