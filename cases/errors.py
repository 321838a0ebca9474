"""Errors of the case handling. Each docstring is the default message."""

from floor.errors import LyktaError


class CasesError(LyktaError):
    """The case handling could not do what was asked."""

    def __init__(self, message: str | None = None, *, code: str | None = None, **params: object) -> None:
        super().__init__(message)
        self.code = code
        """what was refused, for a message in the reader's language (cases/console/words.py ``refused``)"""
        self.params = params


class PolicyError(CasesError):
    """A tenant's case policy file is invalid."""


class CaseError(CasesError):
    """An operator's decision that does not fit the case's state (the API answers 409)."""


class WorkOrderError(CasesError):
    """A crew or operator action that does not fit the work order's state (the API answers 409)."""


class ReportError(CasesError):
    """A citizen report that cannot be accepted; the message says why (Open311 answers 400)."""


class Permanent(CasesError):
    """The receiver refused the message for good (a 4xx answer other than 408 and 429)."""


class TooManyReports(ReportError):
    """A reporter or a network address made too many reports lately (Open311 answers 429)."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
