"""Errors of the storage layer. Each docstring is the default message."""

from floor.errors import LyktaError


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


class UnknownTenant(StorageError):
    """No such tenant."""


class RowMissing(StorageError):
    """A row that must exist (it was just written or linked) is not there."""
