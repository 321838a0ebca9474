"""Errors of the ingest service. Each docstring is the default message."""

from floor.errors import LyktaError


class IngestError(LyktaError):
    """Ingest failed."""


class BrokerUnavailable(IngestError):
    """The MQTT broker cannot be reached."""
