"""Write a folder of short videos to try the ``videos`` source on: each video is one mocap
appearance playing consecutive frames of its clips, so each video is one identity.

    python benchmarks/make_mocap_videos.py --out videos/ --videos 12
    rodi data inspect videos/ -o videos.png
    rodi train --data videos/ train.max_steps=500 train.out_dir=runs/videos

Prints the files written and their frame counts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import av
import numpy as np
import torch

from rodi.data.mocap import MocapHumanoid
from rodi.viz import to_uint8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="videos")
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--size", type=int, default=128, help="frame side in pixels")
    parser.add_argument("--fps", type=int, default=10)
    args = parser.parse_args()
    humanoid = MocapHumanoid(64)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    poses = humanoid.pose_split("train")
    yaw = humanoid.pose_labels[poses, 1]
    for v in range(args.videos):
        character = humanoid.split("train")[torch.randint(len(humanoid.split("train")), (1,),
                                                          generator=g)]
        direction = int(torch.randint(int(yaw.max()) + 1, (1,), generator=g))
        sequence = poses[yaw == direction][:60]  # consecutive frames of the first clips, one camera
        frames = to_uint8(humanoid.render(character.expand(len(sequence)), sequence))
        path = out / f"person {v:02d}.mp4"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("mpeg4", rate=args.fps)
            stream.width = stream.height = args.size
            stream.pix_fmt = "yuv420p"
            stream.bit_rate = 4_000_000
            for frame in frames:
                big = np.kron(frame, np.ones((args.size // 64, args.size // 64, 1), np.uint8))
                for packet in stream.encode(av.VideoFrame.from_ndarray(big, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        print(f"{path}: {len(frames)} frames")


if __name__ == "__main__":
    main()
