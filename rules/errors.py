"""Errors of the rules engine. Each docstring is the default message."""

from floor.errors import LyktaError


class RulesError(LyktaError):
    """The rules engine failed."""


class RuleFileError(RulesError):
    """A rule file is invalid."""
