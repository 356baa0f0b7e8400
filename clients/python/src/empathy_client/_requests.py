"""Building requests from Python values: shared by the sync and async clients."""

import os
from pathlib import Path
from typing import Iterable, Optional, Sequence, Tuple, Union

from ._proto.empathy.v1 import empathy_pb2

Media = Union[str, "os.PathLike[str]", bytes, None]
Context = Iterable[Union[str, Tuple[str, str]]]


def media(value: Media, what: str) -> bytes:
    """Bytes as they are; a path is read (a photo or a clip on disk)."""
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    path = Path(value)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: no such file: {path}")
    return path.read_bytes()


def turns(context: Optional[Context]) -> Sequence[empathy_pb2.Turn]:
    """Earlier turns, oldest first: ``("agent", "...")`` pairs or ``"Agent: ..."`` lines
    (a line without a ``Speaker:`` prefix is the person's own)."""
    out = []
    for turn in context or []:
        if isinstance(turn, tuple):
            speaker, text = turn
        else:
            head, sep, rest = turn.partition(":")
            if sep and head.strip() and " " not in head.strip():
                speaker, text = head.strip().lower(), rest.strip()
            else:
                speaker, text = "user", turn
        out.append(empathy_pb2.Turn(speaker=speaker, text=text))
    return out


def analyze_request(
    text: str = "",
    image: Media = None,
    audio: Media = None,
    context: Optional[Context] = None,
    num_situations: int = 0,
    seed: int = 0,
    language: str = "",
    deadline_ms: int = 0,
    subject_id: str = "",
    request_id: str = "",
) -> empathy_pb2.AnalyzeRequest:
    return empathy_pb2.AnalyzeRequest(
        text=text,
        image=media(image, "image"),
        audio=media(audio, "audio"),
        context=turns(context),
        options=empathy_pb2.AnalyzeOptions(
            num_situations=num_situations,
            seed=seed,
            language=language,
            deadline_ms=deadline_ms,
        ),
        subject_id=subject_id,
        request_id=request_id,
    )


def feedback_request(
    analysis_id: str,
    sentiment: str = "",
    emotion: str = "",
    rating: int = 0,
    note: str = "",
) -> empathy_pb2.FeedbackRequest:
    return empathy_pb2.FeedbackRequest(
        analysis_id=analysis_id, sentiment=sentiment, emotion=emotion, rating=rating, note=note
    )
