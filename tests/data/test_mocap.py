"""The mocap humanoid: pairs share an appearance, targets are exact, keypoints land on the body,
test poses come from held-out clips, and the render cache is reused."""

import pytest
import torch

from rodi.data import mocap
from rodi.data.mocap import ATTRIBUTES, CLIPS, KEYPOINTS, TEST_CLIPS, MocapHumanoid


def test_pairs_share_appearance_and_come_from_training_clips(humanoid):
    batch = humanoid.sample_pairs(16, torch.Generator().manual_seed(0))
    assert batch["pose_image"].shape == batch["appearance_image"].shape == (16, 3, 64, 64)
    assert batch["pose_image"].min() >= -1 and batch["pose_image"].max() <= 1
    assert torch.equal(batch["pose_character"], batch["appearance_character"])
    assert set(batch["pose_character"].tolist()) <= set(humanoid.split("train").tolist())
    train_clips = {CLIPS.index(c) for c in CLIPS if c not in TEST_CLIPS}
    assert set(batch["pose_action"].tolist()) <= train_clips
    assert batch["pose_keypoints"].shape == (16, len(KEYPOINTS), 2)
    again = humanoid.sample_pairs(16, torch.Generator().manual_seed(0))
    assert torch.equal(again["pose_image"], batch["pose_image"])


def test_splits_are_disjoint_and_test_poses_are_unseen_clips(humanoid):
    assert not set(humanoid.split("train").tolist()) & set(humanoid.split("test").tolist())
    test_clips = set(humanoid.pose_labels[humanoid.pose_split("test"), 0].tolist())
    assert test_clips == {CLIPS.index(c) for c in TEST_CLIPS}
    train_poses = set(humanoid.pose_split("train").tolist())
    assert not train_poses & set(humanoid.pose_split("test").tolist())


def test_triplet_target_is_appearance_a_in_pose_p(humanoid):
    idx = humanoid.triplet_indices(6, seed=3)
    t = humanoid.triplets(idx)
    a, b, p, q = idx.unbind(1)
    assert torch.equal(t["target"], humanoid.render(a, p))
    assert torch.equal(t["appearance_image"], humanoid.render(a, q))
    assert torch.equal(t["pose_image"], humanoid.render(b, p))
    assert (a != b).all()
    assert set(a.tolist()) <= set(humanoid.split("test").tolist())


def test_appearance_changes_colours_not_silhouette(humanoid):
    colours = humanoid.region_colours(torch.arange(2))
    pose = torch.tensor([5, 5])
    # two appearances with the same scale: the body covers the same pixels
    same_scale = humanoid.characters[:, list(ATTRIBUTES).index("scale")]
    a = torch.nonzero(same_scale == same_scale[0]).squeeze(1)[:2]
    images = humanoid.render(a, pose)
    backgrounds = humanoid.region_colours(a)[:, -1]
    body = [(img - bg.view(3, 1, 1)).abs().amax(0) > 1e-4 for img, bg in zip(images, backgrounds)]
    assert body[0].sum() > 20
    assert (body[0] ^ body[1]).float().mean() < 0.02  # edges may blend into similar backgrounds
    assert colours.shape == (2, 7, 3)


def test_keypoints_land_on_the_body_and_follow_scale(humanoid):
    scale_col = list(ATTRIBUTES).index("scale")
    small = torch.nonzero(humanoid.characters[:, scale_col] == 0).squeeze(1)[:1]
    large = torch.nonzero(humanoid.characters[:, scale_col] == len(mocap.SCALES) - 1).squeeze(1)[:1]
    pose = torch.arange(0, humanoid.num_poses, max(1, humanoid.num_poses // 20))
    for character in (small, large):
        c = character.expand(len(pose))
        images, kp = humanoid.render(c, pose), humanoid.keypoints(c, pose)
        background = humanoid.region_colours(c)[:, -1].view(-1, 3, 1, 1)
        body = ((images - background).abs().amax(1) > 1e-3).float()  # (B, H, W)
        # 2-pixel tolerance
        near = torch.nn.functional.max_pool2d(body.unsqueeze(1), 5, 1, 2).squeeze(1)
        inside = (kp >= 0).all(-1) & (kp < 64).all(-1)
        xy = kp.round().long().clamp(0, 63)
        hit = near[torch.arange(len(pose)).view(-1, 1), xy[..., 1], xy[..., 0]].bool()
        assert hit[inside].float().mean() > 0.95

    def spread(c):
        return humanoid.keypoints(c.expand(len(pose)), pose).std(1).mean()

    assert spread(large) / spread(small) == pytest.approx(mocap.SCALES[-1] / mocap.SCALES[0],
                                                          rel=1e-4)


def test_render_cache_is_reused(tmp_path, monkeypatch):
    first = MocapHumanoid(32, frame_stride=60, yaws=1, cache_dir=tmp_path, progress=False)
    monkeypatch.setattr(mocap, "render_poses", lambda *a, **k: pytest.fail("rendered again"))
    second = MocapHumanoid(32, frame_stride=60, yaws=1, cache_dir=tmp_path, progress=False)
    c, p = torch.arange(4), torch.arange(4)
    assert torch.equal(first.render(c, p), second.render(c, p))
    assert not list(tmp_path.glob(".*tmp"))  # written atomically: no temporary files left


def test_corrupt_cache_is_rendered_again(tmp_path):
    MocapHumanoid(32, frame_stride=60, yaws=1, cache_dir=tmp_path, progress=False)
    (cache,) = tmp_path.glob("poses-*.npz")
    cache.write_bytes(cache.read_bytes()[:1000])  # a run killed mid-write by an older version
    again = MocapHumanoid(32, frame_stride=60, yaws=1, cache_dir=tmp_path, progress=False)
    assert again.render(torch.arange(2), torch.arange(2)).shape == (2, 3, 32, 32)


def test_validation_holds_out_training_appearances_in_training_clips(humanoid):
    validation = set(humanoid.split("validation").tolist())
    assert validation and not validation & set(humanoid.split("train").tolist())
    assert not validation & set(humanoid.split("test").tolist())
    a, b, p, q = humanoid.triplet_indices(300, seed=99, split="validation").unbind(1)
    assert set(a.tolist()) | set(b.tolist()) <= validation
    assert set(p.tolist()) | set(q.tolist()) <= set(humanoid.pose_split("train").tolist())
