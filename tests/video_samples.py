"""Videos that are not what they claim, built for the tests of ``rodi retarget`` and
``rodi serve``."""

from pathlib import Path

import numpy as np

from conftest import write_video


def cut_mp4(path: Path, frames: np.ndarray, rate: int = 12, keep: float = 0.5) -> tuple[int, int]:
    """Write ``frames`` as an MP4 (MPEG-4 part 2, with :func:`conftest.write_video`) whose index
    (the ``moov`` box) comes first, then cut the file to ``keep`` of its bytes, as an interrupted
    download leaves it: the container still declares every frame, fewer decode. ``keep`` is of
    the media data (the ``mdat`` box), so the index is never cut.

    Returns:
        (frames declared, frames that decode), checked to be a real shortfall. The packet the cut
        goes through (flagged corrupt) may not decode: it is not counted.
    """
    import av

    whole = path.with_name(f"whole-{path.name}")
    write_video(whole, frames, rate=rate)
    # write_video puts the index last, where a cut would take it away: copy the packets into a
    # file with the index first ("faststart").
    with (av.open(str(whole)) as source,
          av.open(str(path), "w", options={"movflags": "faststart"}) as out):
        stream = out.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    whole.unlink()
    data = path.read_bytes()
    media = data.index(b"mdat") + 4
    path.write_bytes(data[:media + int((len(data) - media) * keep)])
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        declared = stream.frames
        decoded = 0
        for packet in container.demux(stream):
            try:
                decoded += len(packet.decode())
            except av.InvalidDataError:  # the packet the cut went through
                assert packet.is_corrupt
    assert declared == len(frames) and 0 < decoded < declared, (declared, decoded)
    return declared, decoded
