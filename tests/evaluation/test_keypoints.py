"""The keypoint judge: AKD and MKR give the known answers on hand-made keypoints, the scores
take any detector that keeps the protocol, a missing extra says how to install it, and MediaPipe
Pose (where ``rodi[keypoints]`` is installed) finds a person in a 64 px crop of ``rodi data
tracks``."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rodi.evaluation import keypoints
from rodi.evaluation.keypoints import (
    KeypointJudgeError,
    akd,
    format_scores,
    keypoint_scores,
    mkr,
)

PERSON = Path(__file__).resolve().parents[1] / "fixtures" / "keypoints" / "vtest-person-64.png"


def _mediapipe_missing() -> str | None:
    try:
        keypoints.require_extra()
    except KeypointJudgeError as err:
        return str(err)
    return None


MISSING = _mediapipe_missing()


def test_akd_known_answers():
    target = torch.tensor([[[10.0, 10.0], [20.0, 20.0], [30.0, 30.0]]])
    pred = target + torch.tensor([[[3.0, 4.0], [0.0, 0.0], [100.0, 100.0]]])
    seen = torch.tensor([[True, True, True]])
    # joint 2 is not found in the transfer: left out of AKD (it counts in MKR)
    pred_seen = torch.tensor([[True, True, False]])
    assert akd(pred, target, pred_seen, seen).item() == pytest.approx((3.5 + 0) / 2)
    assert akd(pred, target, pred_seen, seen, "euclidean").item() == pytest.approx((5 + 0) / 2)
    # every joint found: the far one counts
    assert akd(pred, target, seen, seen).item() == pytest.approx((3.5 + 0 + 100) / 3)


def test_akd_is_per_item_and_nan_without_common_joints():
    target = torch.zeros(2, 2, 2)
    pred = torch.tensor([[[1.0, 1.0], [3.0, 3.0]], [[5.0, 5.0], [5.0, 5.0]]])
    pred_seen = torch.tensor([[True, True], [False, False]])
    out = akd(pred, target, pred_seen, torch.ones(2, 2, dtype=torch.bool))
    assert out.shape == (2,) and out[0].item() == pytest.approx(2.0) and math.isnan(out[1])
    assert keypoints.mean_defined(out) == pytest.approx(2.0)
    assert keypoints.mean_defined(torch.tensor([math.nan])) is None


def test_mkr_known_answers():
    target_seen = torch.tensor([[True, True, True, False], [True, False, False, False],
                                [False, False, False, False]])
    pred_seen = torch.tensor([[True, False, False, True], [True, True, True, True],
                              [True, True, True, True]])
    out = mkr(pred_seen, target_seen)
    # 2 of 3 lost (the extra joint 3 found only in the transfer does not count); none lost; none
    # to lose
    assert out[0].item() == pytest.approx(2 / 3) and out[1].item() == 0 and math.isnan(out[2])


def test_bad_shapes_raise():
    k = torch.zeros(1, 3, 2)
    with pytest.raises(ValueError, match="B, K, 2"):
        akd(k, torch.zeros(1, 4, 2), torch.ones(1, 3, dtype=bool), torch.ones(1, 4, dtype=bool))
    with pytest.raises(ValueError, match="B, K"):
        akd(k, k, torch.ones(1, 2, dtype=bool), torch.ones(1, 3, dtype=bool))
    with pytest.raises(ValueError, match="distance"):
        akd(k, k, torch.ones(1, 3, dtype=bool), torch.ones(1, 3, dtype=bool), "l2")
    with pytest.raises(ValueError, match="B, K"):
        mkr(torch.ones(3, dtype=bool), torch.ones(3, dtype=bool))


class _BrightestPixel:
    """A detector keeping the protocol: one 'joint' at the brightest pixel, found where it is
    brighter than 0 (images in [-1, 1])."""

    name = "brightest pixel (test)"
    joints = ("spot",)

    def __call__(self, images):
        grey = images.mean(1).flatten(1)
        value, where = grey.max(1)
        w = images.shape[-1]
        xy = torch.stack([where % w + 0.5, where // w + 0.5], -1).float()
        return xy[:, None], (value > 0)[:, None]


def _spots(xs, size=16):
    images = -torch.ones(len(xs), 3, size, size)
    for i, x in enumerate(xs):
        if x is not None:
            images[i, :, 4, x] = 1
    return images


def test_keypoint_scores_with_a_plugged_in_detector():
    pose_frames = _spots([2, 5, 9, None])
    outputs = {"pose copied": pose_frames.clone(),
               "shifted": _spots([4, 5, None, 3]),  # 2 px off, exact, lost, nothing to lose
               "blank": _spots([None] * 4)}
    scores = keypoint_scores(_BrightestPixel(), pose_frames, outputs, batch_size=3)
    assert scores["detector"] == "brightest pixel (test)" and scores["joints"] == 1
    assert scores["pose_frames_with_joints"] == 3 and scores["image_size"] == [16, 16]
    assert scores["akd_px"]["pose copied"] == 0 and scores["mkr"]["pose copied"] == 0
    # l1 of a 2 px shift in x only: (2 + 0) / 2 = 1 px; averaged with the exact item
    assert scores["akd_px"]["shifted"] == pytest.approx(0.5)
    assert scores["akd_items"]["shifted"] == 2
    assert scores["mkr"]["shifted"] == pytest.approx(1 / 3)
    assert scores["akd_px"]["blank"] is None and scores["mkr"]["blank"] == 1
    table = format_scores(scores)
    assert "brightest pixel (test)" in table and "n/a" in table
    with pytest.raises(ValueError, match="pose frames"):
        keypoint_scores(_BrightestPixel(), pose_frames, {"small": _spots([1], 8)})


def test_missing_extra_says_how_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_mediapipe(name, *args, **kwargs):
        if name.startswith("mediapipe"):
            raise ImportError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mediapipe)
    with pytest.raises(KeypointJudgeError, match=r"pip install 'rodi\[keypoints\]'"):
        keypoints.MediaPipePose()


def test_to_uint8_range_and_size():
    x = torch.tensor([-1.0, 0.0, 1.0, 2.0]).view(1, 1, 1, 4).expand(1, 3, 4, 4)
    out = keypoints.to_uint8(x)
    assert out.shape == (1, 4, 4, 3) and out.dtype == np.uint8
    assert out[0, 0, :, 0].tolist() == [0, 128, 255, 255]
    assert keypoints.to_uint8(x, 8).shape == (1, 8, 8, 3)


@pytest.mark.skipif(MISSING is not None, reason=str(MISSING))
def test_mediapipe_finds_a_person_in_a_64px_crop():
    image = torch.from_numpy(np.array(Image.open(PERSON).convert("RGB"))).permute(2, 0, 1)
    person = (image.float() / 127.5 - 1)[None]
    assert person.shape == (1, 3, 64, 64)
    detector = keypoints.MediaPipePose()
    try:
        points, seen = detector(person)
        assert "MediaPipe Pose" in detector.name and points.shape == (1, 17, 2)
        # a person walking towards the camera: all 17 body joints, inside the 64 px image
        assert seen.sum() >= 12
        assert ((points[seen] >= 0) & (points[seen] <= 64)).all()
        j = keypoints.COCO_JOINTS.index
        nose, ankle = points[0, j("nose")], points[0, j("left_ankle")]
        assert nose[1] < points[0, j("left_hip"), 1] < ankle[1]  # head above hips above feet
        # nobody in a plain grey picture
        _, none_seen = detector(torch.zeros(1, 3, 64, 64))
        assert not none_seen.any()
        # the pose frame against itself: AKD 0, MKR 0; moved 4 px to the right (the crop's black
        # padding coming in from the left): |dx| about 4 and dy about 0, so l1 AKD about 2 px
        moved = torch.cat([-torch.ones(1, 3, 64, 4), person[..., :-4]], -1)
        scores = keypoint_scores(detector, person, {"copied": person, "moved": moved})
        assert scores["akd_px"]["copied"] == 0 and scores["mkr"]["copied"] == 0
        assert scores["pose_frames_with_joints"] == 1
        assert 1.0 < scores["akd_px"]["moved"] < 3.0
    finally:
        detector.close()
