"""Errors every part of lykta may raise or catch. Each docstring is the default message."""


class LyktaError(Exception):
    """lykta failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (``no answer`` when it has none), for a message that stays one line."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no answer"


class ConfigError(LyktaError):
    """The configuration is invalid."""


class ServiceError(LyktaError):
    """A local service could not be started, stopped or found."""


class NotInstalledError(ServiceError):
    """A program lykta needs is not installed; run ./bootstrap setup."""


class InventoryError(LyktaError):
    """The asset inventory is invalid; nothing was imported."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        shown = "\n".join(f"  {p}" for p in problems[:200])
        more = f"\n  ... and {len(problems) - 200} more" if len(problems) > 200 else ""
        super().__init__(f"{source}: {len(problems)} problem(s), nothing imported:\n{shown}{more}")
