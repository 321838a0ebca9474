"""Errors of the storage layer. Each docstring is the default message."""

from lykta.errors import LyktaError


class StorageError(LyktaError):
    """The database operation failed."""


class DatabaseUnavailable(StorageError):
    """The database cannot be reached."""


class TimescaleMissing(StorageError):
    """TimescaleDB is not loaded in this database server (shared_preload_libraries)."""


class MigrationError(StorageError):
    """A migration could not be applied."""


class SchemaTooNew(MigrationError):
    """The database schema is newer than this version of lykta; upgrade lykta before running it."""


class InventoryError(StorageError):
    """The asset inventory is invalid; nothing was imported."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        shown = "\n".join(f"  {p}" for p in problems[:200])
        more = f"\n  ... and {len(problems) - 200} more" if len(problems) > 200 else ""
        super().__init__(f"{source}: {len(problems)} problem(s), nothing imported:\n{shown}{more}")


class UnknownTenant(StorageError):
    """No such tenant."""
