"""Write the first frames of a video next to each other as one PNG (a strip), e.g. to show a
retargeted video in a document that cannot play it; with ``--frames 1`` it extracts one frame.

    python benchmarks/video_strip.py retarget.mp4 -o strip.png --frames 8
    python benchmarks/video_strip.py side-by-side.mp4 -o strip.png --frames 8 --vertical
    python benchmarks/video_strip.py dance.mp4 -o frame30.png --frames 1 --start 30

Prints the file written and the frames' size.
"""

from __future__ import annotations

import argparse
from itertools import islice

import av
import numpy as np

from rodi.viz import save_png


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video")
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--start", type=int, default=0, help="frames to skip first")
    parser.add_argument("--gap", type=int, default=4, help="white pixels between frames")
    parser.add_argument("--vertical", action="store_true",
                        help="frames one below the other (for wide frames)")
    args = parser.parse_args()
    with av.open(args.video) as container:
        frames = [f.to_ndarray(format="rgb24")
                  for f in islice(container.decode(video=0), args.start, args.start + args.frames)]
    h, w = frames[0].shape[:2]
    axis = 0 if args.vertical else 1
    gap = np.full((args.gap, w, 3) if args.vertical else (h, args.gap, 3), 255, np.uint8)
    strip = np.concatenate([part for frame in frames for part in (gap, frame)][1:], axis=axis)
    print(f"{save_png(strip, args.output)}: {len(frames)} frames of {w} x {h}")


if __name__ == "__main__":
    main()
