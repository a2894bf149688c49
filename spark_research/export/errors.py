"""Exceptions of the export capability; each names the field and the value at fault.

Example::

    >>> from spark_research.export.errors import ExportParamError
    >>> str(ExportParamError("format", "xls", "must be one of ['csv', 'csv.gz', 'pdf']"))
    "field 'format' = 'xls': must be one of ['csv', 'csv.gz', 'pdf']"
"""
from __future__ import annotations


class ExportError(Exception):
    """Base class of every export error."""


class ExportParamError(ExportError, ValueError):
    """A request or source parameter is invalid (HTTP 400). Carries ``field`` and ``value``."""

    def __init__(self, field: str, value: object, reason: str):
        self.field, self.value, self.reason = field, value, reason
        super().__init__(f"field {field!r} = {value!r}: {reason}")


class UnknownExportError(ExportError, KeyError):
    """No export with this id for this user (HTTP 404); other users' ids look the same."""

    def __init__(self, export_id: str, user: str):
        self.export_id, self.user = export_id, user
        super().__init__(f"no export {export_id!r} for user {user!r}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class ExportNotReadyError(ExportError):
    """The export exists but has no file to download (yet, or it failed): HTTP 409."""


class ExportFinishedError(ExportError):
    """The export already finished, so it cannot be cancelled (HTTP 409). Carries ``state``."""

    def __init__(self, export_id: str, state: str):
        self.export_id, self.state = export_id, state
        super().__init__(f"export {export_id!r} already {state}: only a queued or running export can be cancelled")


class ExportCancelledError(ExportError):
    """Raised inside an export that was asked to stop; the job ends ``cancelled``, not ``failed``."""


class ConcurrencyLimitError(ExportError):
    """The user already runs as many exports as allowed (HTTP 429)."""

    def __init__(self, user: str, running: int, limit: int):
        self.user, self.running, self.limit = user, running, limit
        super().__init__(f"user {user!r} has {running} exports queued or running; the limit is {limit}: "
                         "wait for one to finish")


class AuthError(ExportError):
    """Missing or unknown token (HTTP 401)."""


class ExportSourceError(ExportError):
    """A source failed while producing rows (missing data, unreadable file)."""


class ReportRenderError(ExportError):
    """Executing or printing a report failed (browser missing, remote resource requested, timeout)."""
