"""``Client`` (blocking) and ``AsyncClient`` (asyncio) over one channel each.

Both take an address (``host:port``, ``http://host:port`` or ``https://host:port``), an
optional API key (sent as ``authorization: Bearer KEY``; ``EMPATHY_API_KEY`` by default)
and, for https, an optional CA file (``EMPATHY_CA``; else the system's roots).
"""

import os
from typing import Optional, Tuple

import grpc

from . import _requests
from ._errors import from_rpc_error
from ._proto.empathy.v1 import empathy_pb2
from ._proto.empathy.v1 import empathy_pb2_grpc

# Photos and clips can be large: as large as the server accepts (32 MiB by default).
_OPTIONS = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


def _target(address: str, ca: Optional[str]) -> Tuple[str, Optional[grpc.ChannelCredentials]]:
    """The gRPC target and, for https, its credentials."""
    if address.startswith("https://"):
        root = None
        ca = ca or os.environ.get("EMPATHY_CA")
        if ca:
            with open(ca, "rb") as f:
                root = f.read()
        return address[len("https://"):], grpc.ssl_channel_credentials(root_certificates=root)
    if address.startswith("http://"):
        address = address[len("http://"):]
    return address, None


class _Base:
    def __init__(self, address: str, api_key: Optional[str], ca: Optional[str], timeout: float):
        self.address = address
        self.timeout = timeout
        key = api_key if api_key is not None else os.environ.get("EMPATHY_API_KEY")
        self._metadata = [("authorization", f"Bearer {key}")] if key else []
        self._target, self._credentials = _target(address, ca)


class Client(_Base):
    """A blocking client. Use it as a context manager, or call :meth:`close`.

    ``timeout`` (seconds) bounds each call; ``stub`` reaches every other method of the
    service with the generated request messages.
    """

    def __init__(self, address: str = "localhost:50051", api_key: Optional[str] = None,
                 ca: Optional[str] = None, timeout: float = 30.0):
        super().__init__(address, api_key, ca, timeout)
        if self._credentials is None:
            self._channel = grpc.insecure_channel(self._target, options=_OPTIONS)
        else:
            self._channel = grpc.secure_channel(self._target, self._credentials, options=_OPTIONS)
        self.stub = empathy_pb2_grpc.EmpathyServiceStub(self._channel)

    def _call(self, method, request):
        try:
            return method(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    def analyze(self, text: str = "", **kwargs) -> empathy_pb2.AnalyzeResponse:
        """How the person feels. ``image``/``audio`` take a path or bytes; ``context``
        takes earlier turns (``("agent", "...")`` or ``"Agent: ..."``), oldest first;
        ``num_situations`` asks for imagined situations."""
        return self._call(self.stub.Analyze, _requests.analyze_request(text, **kwargs))

    def feedback(self, analysis_id: str, **kwargs) -> empathy_pb2.FeedbackResponse:
        """A correction of an earlier analysis: ``sentiment=``, ``emotion=``, ``rating=``."""
        return self._call(self.stub.Feedback, _requests.feedback_request(analysis_id, **kwargs))

    def info(self) -> empathy_pb2.InfoResponse:
        """The serving model version, the labels, and which modalities are up."""
        return self._call(self.stub.Info, empathy_pb2.InfoRequest())

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncClient(_Base):
    """The asyncio client: the same methods as :class:`Client`, awaited.

    ``async with AsyncClient("localhost:50051") as client: await client.analyze(text=...)``
    """

    def __init__(self, address: str = "localhost:50051", api_key: Optional[str] = None,
                 ca: Optional[str] = None, timeout: float = 30.0):
        super().__init__(address, api_key, ca, timeout)
        if self._credentials is None:
            self._channel = grpc.aio.insecure_channel(self._target, options=_OPTIONS)
        else:
            self._channel = grpc.aio.secure_channel(self._target, self._credentials, options=_OPTIONS)
        self.stub = empathy_pb2_grpc.EmpathyServiceStub(self._channel)

    async def _call(self, method, request):
        try:
            return await method(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    async def analyze(self, text: str = "", **kwargs) -> empathy_pb2.AnalyzeResponse:
        return await self._call(self.stub.Analyze, _requests.analyze_request(text, **kwargs))

    async def feedback(self, analysis_id: str, **kwargs) -> empathy_pb2.FeedbackResponse:
        return await self._call(self.stub.Feedback, _requests.feedback_request(analysis_id, **kwargs))

    async def info(self) -> empathy_pb2.InfoResponse:
        return await self._call(self.stub.Info, empathy_pb2.InfoRequest())

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
