"""The one error type of the server state: a refused command, with the HTTP status it maps to."""


class Rejected(Exception):
    """A command the server refuses; nothing was changed or logged.

    ``status`` is the HTTP status the gateway answers with (400 bad input, 403 not allowed,
    404 unknown resource, 409 conflict with the current state).
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Unavailable(Exception):
    """The write could not be made durable now (the event log is unreachable); try again after
    ``retry_after`` seconds. The gateway answers 503 with Retry-After."""

    def __init__(self, reason: str, retry_after: int = 5) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
