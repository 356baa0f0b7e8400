"""Python client for the empathy engine (``empathy.v1.EmpathyService`` over gRPC).

    from empathy_client import Client
    with Client("localhost:50051") as client:
        print(client.analyze(text="I love this").sentiment.label)

Results are the generated protobuf messages (``AnalyzeResponse`` and friends, typed
through the generated ``.pyi`` stubs); errors are :class:`EmpathyError` subclasses.
"""

from ._client import AsyncClient, Client
from ._errors import (
    DeadlineExceeded,
    EmpathyError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from ._proto.empathy.v1 import common_pb2, empathy_pb2

__all__ = [
    "AsyncClient",
    "Client",
    "DeadlineExceeded",
    "EmpathyError",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "common_pb2",
    "empathy_pb2",
]
