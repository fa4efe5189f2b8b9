"""The one table from berth's error kinds to HTTP status codes, and the error body.

Docker's clients read ``{"message": "..."}`` and print it after ``Error response from daemon:``;
the status decides what they do (docker-py raises NotFound for 404, ImageNotFound when the
message is about an image, APIError otherwise; the docker CLI exits 1).
"""

from __future__ import annotations

import logging

from berth import errors

from .http import Response, json_response

log = logging.getLogger("berth.api")

# Most specific kind first is not needed: the kinds do not inherit from each other.
STATUS: dict[type[errors.BerthError], int] = {
    errors.InvalidArgument: 400,
    errors.PermissionDenied: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.FailedPrecondition: 409,
    errors.Unavailable: 503,
    errors.Internal: 500,
}


def status_for(exc: BaseException) -> int:
    for kind, status in STATUS.items():
        if isinstance(exc, kind):
            return status
    return 500


def error_response(exc: BaseException) -> Response:
    status = status_for(exc)
    if isinstance(exc, errors.BerthError):
        message = exc.message
    else:
        log.exception("internal error", exc_info=exc)
        message = f"internal error: {exc}"
    return json_response({"message": message}, status)
