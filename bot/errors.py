"""Matrix errors as classes: one per errcode modbot handles, so callers catch them by name.

The homeserver client (bot/act/homeserver.py) and the media fetcher (bot/fetch.py) turn an
error answer into one of these through `matrix_error`, the one place that reads errcodes:
mautrix's request errors (which mautrix classes by the same errcode) and aiohttp answers
alike. An answer without a known errcode is classed by its HTTP status (a 404 from a proxy
is still "not found"); anything else is a plain `HomeserverError`.
"""

from __future__ import annotations

__all__ = [
    "HomeserverError",
    "MForbidden",
    "MLimitExceeded",
    "MMissingToken",
    "MNotFound",
    "MNotYetUploaded",
    "MUnknownToken",
    "MUserInUse",
    "matrix_error",
]


class HomeserverError(Exception):
    """A homeserver call failed for good (after retries, or with a permanent error)."""

    errcode_class: str | None = None  # the errcode a subclass stands for

    def __init__(self, message: str, *, status: int | None = None, errcode: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.errcode = errcode

    @property
    def transient(self) -> bool:
        """Whether the same request may succeed later as it is: no answer at all, 429 or 5xx.

        Any other answer (403 M_FORBIDDEN, 404, 400...) is the homeserver's considered
        refusal, which stays the same until a person changes something.
        """
        return self.status is None or self.status == 429 or self.status >= 500


class MForbidden(HomeserverError):
    """M_FORBIDDEN (or a 403 without an errcode we know): not allowed."""

    errcode_class = "M_FORBIDDEN"


class MUnknownToken(HomeserverError):
    """M_UNKNOWN_TOKEN (or a 401 without an errcode we know): the access token is not valid."""

    errcode_class = "M_UNKNOWN_TOKEN"


class MMissingToken(HomeserverError):
    """M_MISSING_TOKEN: no access token was sent."""

    errcode_class = "M_MISSING_TOKEN"


class MNotFound(HomeserverError):
    """M_NOT_FOUND (or a 404 without an errcode we know): no such thing."""

    errcode_class = "M_NOT_FOUND"


class MLimitExceeded(HomeserverError):
    """M_LIMIT_EXCEEDED (or a 429 without an errcode we know): rate limited."""

    errcode_class = "M_LIMIT_EXCEEDED"


class MUserInUse(HomeserverError):
    """M_USER_IN_USE: the user ID is registered already."""

    errcode_class = "M_USER_IN_USE"


class MNotYetUploaded(HomeserverError):
    """M_NOT_YET_UPLOADED (MSC2246): the media was created but its upload has not come."""

    errcode_class = "M_NOT_YET_UPLOADED"


_BY_ERRCODE: dict[str, type[HomeserverError]] = {
    cls.errcode_class: cls
    for cls in (MForbidden, MUnknownToken, MMissingToken, MNotFound, MLimitExceeded, MUserInUse, MNotYetUploaded)
    if cls.errcode_class
}
_BY_STATUS: dict[int, type[HomeserverError]] = {401: MUnknownToken, 403: MForbidden, 404: MNotFound, 429: MLimitExceeded}


def matrix_error(message: str, *, status: int | None, errcode: str | None) -> HomeserverError:
    """The exception for an error answer: by its errcode, else by its HTTP status."""
    cls = _BY_ERRCODE.get(errcode or "") or _BY_STATUS.get(status or 0, HomeserverError)
    return cls(message, status=status, errcode=errcode)
