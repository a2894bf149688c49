"""Errors of the models capability; each message names the field or id and the value."""
from __future__ import annotations


class ModelError(ValueError):
    """A training spec, model or monitor input is invalid (the message names the field and value)."""


class UnknownModel(ModelError, KeyError):
    """No registered model has this id (the message lists close matches)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
