"""``fleet``'s exit statuses, so scripts can tell what happened without parsing output."""

from __future__ import annotations

from .errors import (
    Conflict,
    CoordinatorUnavailable,
    FleetError,
    NotFound,
    ServerError,
    Unauthorized,
)

__all__ = [
    "EXIT_CODES",
    "EXIT_CONFLICT",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_REJECTED",
    "EXIT_SERVER_ERROR",
    "EXIT_UNAUTHORIZED",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "exit_code_of",
    "not_the_coordinators",
]

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4
EXIT_UNAUTHORIZED = 5
EXIT_UNAVAILABLE = 6
EXIT_SERVER_ERROR = 7
EXIT_CODES = {
    EXIT_OK: "done",
    EXIT_REJECTED: "refused: invalid input (400, 413, 422) or some lines of a file not enqueued",
    EXIT_USAGE: "command-line mistake (a --url another server answers too), or "
    "FLEET_ADMIN_TOKEN not set or unusable",
    EXIT_NOT_FOUND: "no such job, agent or schedule (404)",
    EXIT_CONFLICT: "the state does not allow it (409: already ended, key reused …)",
    EXIT_UNAUTHORIZED: "the token was refused (401, 403)",
    EXIT_UNAVAILABLE: "the coordinator could not be reached, or its store is down (503)",
    EXIT_SERVER_ERROR: "the coordinator failed on a bug (500)",
}
"""Exit status → meaning, as ``docs/client.md`` lists them."""

_EXIT_BY_ERROR: tuple[tuple[type[FleetError], int], ...] = (
    (NotFound, EXIT_NOT_FOUND),
    (Conflict, EXIT_CONFLICT),
    (Unauthorized, EXIT_UNAUTHORIZED),
    (CoordinatorUnavailable, EXIT_UNAVAILABLE),
    (ServerError, EXIT_SERVER_ERROR),
)


def exit_code_of(error: FleetError) -> int:
    """The exit status for ``error``."""
    if not_the_coordinators(error):
        return EXIT_USAGE
    for kind, code in _EXIT_BY_ERROR:
        if isinstance(error, kind):
            return code
    if error.code == "unexpected_answer":
        return EXIT_USAGE  # another server answered: the --url (or FLEET_URL) is wrong
    return EXIT_REJECTED


def not_the_coordinators(error: FleetError) -> bool:
    """Whether another server answered: an error without the SPEC error shape.

    The coordinator answers every error in that shape; the usual wrong ``--url`` (another
    web server, the coordinator under a wrong prefix) answers 404/405/501 without it,
    which read as "no such job" (3) or "a coordinator bug" (7). 429/502/503/504 stay
    "unavailable": a proxy in front of a coordinator that is down answers them so.
    """
    return error.code == "http_error" and not isinstance(error, CoordinatorUnavailable)
