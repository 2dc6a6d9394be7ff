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
