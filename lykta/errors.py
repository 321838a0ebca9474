"""Errors of the lykta core. Each docstring is the default message."""


class LyktaError(Exception):
    """lykta failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(LyktaError):
    """The configuration is invalid."""


class ServiceError(LyktaError):
    """A local service could not be started, stopped or found."""


class NotInstalledError(ServiceError):
    """A program lykta needs is not installed; run ./bootstrap setup."""
