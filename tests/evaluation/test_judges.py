"""Judged metrics mean what they say: with a perfect judge, a transfer that copies the pose input
scores at the ceiling on pose and at the floor on appearance, one that copies the appearance input
the other way round; a trained judge learns from renders; image quality is perfect for a copy and
falls with noise; the judge is cached, not retrained."""

import pytest
import torch
from torch import nn

from rodi.evaluation import judges
from rodi.evaluation.judges import load_or_train_judge, summarize_judged
from rodi.evaluation.triplets import MAX_PSNR_DB, image_quality, triplet_errors


class _Copy(nn.Module):
    """A 'model' whose transfer returns one of its inputs unchanged."""

    def __init__(self, which: str):
        super().__init__()
        self.which = which
        self.unused = nn.Parameter(torch.zeros(1))

    def transfer(self, appearance_image, pose_image):
        return pose_image if self.which == "pose" else appearance_image


class _LookupJudge:
    """A perfect judge of the images of some triplets: it looks each image up by its bytes."""

    has_keypoints = True

    def __init__(self, source, batch: dict):
        self.pose_labels = source.pose_attributes
        self.appearance_labels = source.appearance_attributes
        self.truth = {}
        for image, app, pose, keypoints in (
                ("appearance_image", "appearance", "appearance", "appearance_keypoints"),
                ("pose_image", "pose", "pose", "pose_keypoints"),
                ("target", "appearance", "pose", "target_keypoints")):
            for i, x in enumerate(batch[image]):
                labels = {k: batch[f"{app}_{k}"][i] for k in self.appearance_labels}
                labels.update({k: batch[f"{pose}_{k}"][i] for k in self.pose_labels})
                self.truth[x.numpy().tobytes()] = {**labels, "keypoints": batch[keypoints][i]}

        first = next(iter(self.truth.values()))
        # an image it has not seen (the mean target image) is read as label 0, joints at the centre
        self.unknown = {k: torch.full_like(v, 0 if k != "keypoints" else source.image_size / 2)
                        for k, v in first.items()}

    def predict(self, images):
        found = [self.truth.get(x.numpy().tobytes(), self.unknown) for x in images]
        return {k: torch.stack([f[k] for f in found]) for k in found[0]}


class _Constant(nn.Module):
    """Transfers that are one constant image: whatever the inputs, ``image``."""

    def __init__(self, image):
        super().__init__()
        self.image = image
        self.unused = nn.Parameter(torch.zeros(1))

    def transfer(self, appearance_image, pose_image):
        return self.image.expand_as(pose_image).clone()


@pytest.fixture(scope="module")
def scores(humanoid):
    judge = _LookupJudge(humanoid, humanoid.triplets(humanoid.triplet_indices(300, seed=3)))
    out = {which: summarize_judged(triplet_errors(_Copy(which), humanoid, 300, seed=3, judge=judge))
           for which in ("pose", "appearance")}
    batch = humanoid.triplets(humanoid.triplet_indices(300, seed=3))
    for name, image in judges.trivial_outputs(batch["target"]).items():
        out[name] = summarize_judged(triplet_errors(_Constant(image), humanoid, 300, seed=3,
                                                    judge=judge))
    return out


def test_a_perfect_judge_scores_the_exact_targets_perfectly(scores):
    pose, look = scores["pose"]["pose_accuracy"], scores["pose"]["appearance_retention"]
    assert all(v["ceiling"] == 1 for k, v in pose.items() if k != "pixel_error")
    assert pose["pixel_error"]["ceiling"] == 0 and look["mean"]["ceiling"] == 1


def test_copying_the_pose_input_scores_at_the_pose_ceiling_and_the_appearance_floor(scores):
    pose, look = scores["pose"]["pose_accuracy"], scores["pose"]["appearance_retention"]
    for label in ("action", "direction", "frame"):
        assert pose[label]["transfer"] == pose[label]["ceiling"] == 1
    # the pose input shows the target's pose on another body: keypoints differ only by the body
    # scale
    assert pose["pck@0.1"]["transfer"] > 0.9
    assert pose["pck@0.1"]["transfer"] > pose["pck@0.1"]["floor"] + 0.4
    # only attributes A and B share by chance; a constant output may match more often than that
    assert look["mean"]["transfer"] == look["mean"]["floor_input"] <= look["mean"]["floor"] < 0.4


def test_copying_the_appearance_input_scores_at_the_pose_floor_and_the_appearance_ceiling(scores):
    pose, look = scores["appearance"]["pose_accuracy"], scores["appearance"]["appearance_retention"]
    for name, v in pose.items():
        assert v["transfer"] == v["floor_input"]
        assert v["transfer"] >= v["floor"] if name == "pixel_error" else v["transfer"] <= v["floor"]
    assert pose["pck@0.1"]["transfer"] < 0.6 and pose["pixel_error"]["transfer"] > 3
    assert look["mean"]["transfer"] == look["mean"]["ceiling"] == 1
    normalised = scores["appearance"]["normalised"]
    assert normalised["pose"] <= 0 and normalised["appearance"] == 1


def test_the_floor_is_the_best_trivial_output_and_normalises_to_zero(scores):
    for name in ("mean_image", "average_body"):
        pose, look = scores[name]["pose_accuracy"], scores[name]["appearance_retention"]
        for metric, v in {**pose, **look}.items():
            if metric == "mean":  # the mean of the attributes' own floors, each the best of three
                continue
            # the constant output is scored as its own floor
            assert v[f"floor_{name}"] == v["transfer"]
            assert v["floor"] == (min if metric == "pixel_error" else max)(
                v[k] for k in ("floor_input", "floor_mean_image", "floor_average_body"))
        # a constant image knows no pose: it cannot beat the floor
        assert scores[name]["normalised"]["pose"] <= 0
        assert all(v["normalised"] <= 1e-9 for v in pose.values())
    copy_pose = scores["pose"]["normalised"]
    assert copy_pose["pose"] > 0.7 and copy_pose["pose_labels"] == 1
    assert copy_pose["appearance"] <= 0


def test_self_reconstructions_tell_a_leak_from_a_model_that_renders_no_appearance(scores):
    # copying the pose input leaks everything: its transfers lose the appearance, yet it
    # reconstructs each image perfectly, so its self-reconstructions score at the ceiling
    leak = scores["pose"]
    assert leak["normalised"]["appearance"] <= 0
    assert leak["normalised"]["appearance_self_reconstruction"] == 1
    look = leak["appearance_retention"]
    assert all(v["self_reconstruction"] == v["ceiling"] for v in look.values())
    # a constant image renders no appearance at all: its self-reconstructions are at the floor too
    for name in ("mean_image", "average_body"):
        assert scores[name]["normalised"]["appearance_self_reconstruction"] <= 1e-9
    # the appearance code alone: transfers and self-reconstructions both at the ceiling
    assert scores["appearance"]["normalised"]["appearance_self_reconstruction"] == 1


def test_a_trained_judge_learns_from_exact_renders(tmp_path):
    from rodi.data.mocap import MocapHumanoid

    small = MocapHumanoid(32, frame_stride=40, yaws=2, cache_dir=tmp_path, progress=False)
    judge = judges.train_judge(small, steps=100, batch_size=16)
    batch = small.triplets(small.triplet_indices(200, seed=1))
    target, other = judge.predict(batch["target"]), judge.predict(batch["pose_image"])
    assert target["keypoints"].shape == (200, 15, 2)
    # the background colour is learnt first; B's background rarely matches A's
    assert (target["background"] == batch["appearance_background"]).float().mean() > 0.9
    assert (other["background"] == batch["appearance_background"]).float().mean() < 0.4


def test_image_quality_is_perfect_for_a_copy_and_falls_with_noise():
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    same = image_quality(x, x)
    assert torch.all(same["mse"] == 0) and torch.allclose(same["ssim"], torch.ones(4))
    assert torch.all(same["psnr"] == MAX_PSNR_DB)
    g = torch.Generator().manual_seed(1)
    little, much = (image_quality((x + s * torch.randn(x.shape, generator=g)).clamp(-1, 1), x)
                    for s in (0.05, 0.5))
    assert torch.all(much["ssim"] < little["ssim"]) and torch.all(little["ssim"] < 1)
    assert torch.all(much["psnr"] < little["psnr"]) and torch.all(little["psnr"] > 20)


def test_the_judge_is_cached_and_not_trained_again(humanoid, tmp_path, monkeypatch):
    first = load_or_train_judge(humanoid, steps=2, batch_size=4, cache_dir=tmp_path,
                                progress=False)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    monkeypatch.setattr(judges, "train_judge", lambda *a, **k: pytest.fail("trained again"))
    second = load_or_train_judge(humanoid, steps=2, batch_size=4, cache_dir=tmp_path,
                                 progress=False)
    x = humanoid.render(torch.tensor([0, 1]), torch.tensor([0, 1]))
    assert torch.equal(first.net(x)["keypoints"], second.net(x)["keypoints"])


def test_a_source_without_exact_renders_gets_a_clear_error():
    with pytest.raises(ValueError, match="no exact renders"):
        judges.train_judge(object(), steps=1, batch_size=1)


def test_judge_recipe_options_keep_the_shapes_and_draw_the_weighted_poses(humanoid):
    """The options of judges.train_judge that benchmarks/judge_ceilings.py compares."""
    net = judges.JudgeNet(32, {"a": 3}, num_keypoints=2, width=8, first_stride=1)
    out = net(torch.zeros(2, 3, 32, 32))
    assert out["a"].shape == (2, 3) and out["keypoints"].shape == (2, 2, 2)
    assert net.trunk(torch.zeros(1, 3, 32, 32)).shape[-1] == 8  # still S/4
    weights = torch.zeros(humanoid.num_poses)
    weights[3] = 1.0
    _, pose = judges._sample(humanoid, 50, torch.Generator().manual_seed(0), weights)
    assert torch.all(pose == 3)
    judge = judges.train_judge(humanoid, steps=2, batch_size=4, width=8, first_stride=1,
                               blurred_fraction=0.0, pose_weights=weights)
    assert judge.net.trunk[0][0].stride == (1, 1)


def test_bad_judge_recipe_options_get_clear_errors(humanoid):
    with pytest.raises(ValueError, match="first_stride must be 1 or 2"):
        judges.JudgeNet(32, {"a": 3}, first_stride=4)
    with pytest.raises(ValueError, match="pose_weights must be"):
        judges.train_judge(humanoid, steps=1, batch_size=2, pose_weights=torch.ones(3))
