"""Domain errors, named after the gRPC status each one becomes (see status.py).

Raise them once, near the cause, with the ids and field names in the message; servicers never build statuses.
"""


class DomainError(Exception):
    """Root of the errors the server reports to callers."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DomainError):
    """A bad request field: `field` is its path in the request (e.g. "command[3]", "chunk.sha256"), `problem` what
    is wrong with it; status.py sends both as a google.rpc.BadRequest field violation beside the message."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class NotFound(DomainError):
    pass


class AlreadyExists(DomainError):
    pass


class FailedPrecondition(DomainError):
    pass


class PermissionDenied(DomainError):
    pass


class Unauthenticated(DomainError):
    pass


class ResourceExhausted(DomainError):
    pass


class OutOfRange(DomainError):
    pass


class Unavailable(DomainError):
    """Something needed is away for now (an agent reconnecting): the caller may retry."""
