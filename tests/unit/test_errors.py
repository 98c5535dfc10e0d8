"""errors: one class per errcode modbot handles, chosen in one place (`matrix_error`)."""

from __future__ import annotations

import pytest

from bot.errors import (
    HomeserverError,
    MForbidden,
    MLimitExceeded,
    MMissingToken,
    MNotFound,
    MNotYetUploaded,
    MUnknownToken,
    MUserInUse,
    matrix_error,
)


@pytest.mark.parametrize(
    ("status", "errcode", "cls"),
    [
        (403, "M_FORBIDDEN", MForbidden),
        (401, "M_UNKNOWN_TOKEN", MUnknownToken),
        (401, "M_MISSING_TOKEN", MMissingToken),
        (404, "M_NOT_FOUND", MNotFound),
        (429, "M_LIMIT_EXCEEDED", MLimitExceeded),
        (400, "M_USER_IN_USE", MUserInUse),
        (504, "M_NOT_YET_UPLOADED", MNotYetUploaded),
    ],
)
def test_the_errcode_picks_the_class(status: int, errcode: str, cls: type[HomeserverError]) -> None:
    error = matrix_error("refused", status=status, errcode=errcode)
    assert type(error) is cls and isinstance(error, HomeserverError)
    assert (error.status, error.errcode, str(error)) == (status, errcode, "refused")


@pytest.mark.parametrize(
    ("status", "errcode", "cls"),
    [
        (404, "M_UNRECOGNIZED", MNotFound),
        (404, None, MNotFound),
        (403, None, MForbidden),
        (401, "M_UNKNOWN", MUnknownToken),
        (429, None, MLimitExceeded),
        (400, "M_EXCLUSIVE", HomeserverError),
        (500, "M_UNKNOWN", HomeserverError),
        (None, None, HomeserverError),
    ],
)
def test_without_a_known_errcode_the_status_picks_the_class(
    status: int | None, errcode: str | None, cls: type[HomeserverError]
) -> None:
    assert type(matrix_error("x", status=status, errcode=errcode)) is cls


def test_only_no_answer_429_and_5xx_are_transient() -> None:
    assert matrix_error("x", status=429, errcode="M_LIMIT_EXCEEDED").transient
    assert matrix_error("x", status=502, errcode=None).transient
    assert HomeserverError("unreachable").transient
    assert not matrix_error("x", status=403, errcode="M_FORBIDDEN").transient
    assert not matrix_error("x", status=404, errcode="M_NOT_FOUND").transient
