"""gRPC errors as Python exceptions, one class per status a caller acts on."""

import grpc


class EmpathyError(Exception):
    """A call the server refused or could not answer.

    ``code`` is the ``grpc.StatusCode``; ``message`` is the server's explanation, written
    for a person (what was wrong and what to do).
    """

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


class InvalidArgument(EmpathyError):
    """The request is malformed (no input, an unknown label, a file that does not decode...)."""


class Unauthenticated(EmpathyError):
    """No API key, or one the server does not know."""


class PermissionDenied(EmpathyError):
    """The key's role may not call this method."""


class NotFound(EmpathyError):
    """Unknown or expired id (an analysis to correct, a model version...)."""


class ResourceExhausted(EmpathyError):
    """The server is at a limit (requests in flight, a rate limit): retry with backoff."""


class Unavailable(EmpathyError):
    """The server cannot be reached or is shutting down: retry."""


class DeadlineExceeded(EmpathyError):
    """The call took longer than its timeout."""


_BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
}


def from_rpc_error(error: grpc.RpcError) -> EmpathyError:
    """The exception for a failed call (grpc's sync and asyncio errors alike)."""
    code = error.code() if callable(getattr(error, "code", None)) else grpc.StatusCode.UNKNOWN
    details = error.details() if callable(getattr(error, "details", None)) else str(error)
    return _BY_CODE.get(code, EmpathyError)(code, details or "")
