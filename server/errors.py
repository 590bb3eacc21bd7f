"""Domain errors, named after the gRPC status each one becomes (see status.py).

Raise them once, near the cause, with the ids and field names in the message; servicers never build statuses.
"""


class DomainError(Exception):
    """Root of the errors the server reports to callers."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DomainError):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


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
