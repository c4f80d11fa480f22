"""FOMM's protocol (rodi.evaluation.fomm) and the appearance judge (rodi.evaluation.reid) on a tiny
identity folder drawn in the test: coloured rectangles moving over coloured backgrounds, one
identity per colour pair, frames named in time order."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from rodi.config import load_config
from rodi.data.folders import IdentityFolder, PairDataError
from rodi.data.sources import open_source
from rodi.evaluation import fomm, html, metrics, reid, report
from rodi.training.state import TrainState

SIZE = 32
FRAMES = 8
# (rectangle, background) colours: every identity differs from every other in both
COLOURS = [((230, 40, 40), (20, 20, 90)), ((40, 200, 60), (90, 20, 20)),
           ((40, 70, 230), (20, 90, 20)), ((230, 220, 40), (60, 60, 60)),
           ((220, 60, 220), (10, 60, 70)), ((50, 220, 220), (80, 50, 10)),
           ((250, 250, 250), (40, 10, 60)), ((250, 140, 20), (10, 10, 10)),
           ((120, 60, 20), (120, 150, 200)), ((140, 140, 255), (60, 30, 30)),
           ((20, 20, 20), (200, 200, 120)), ((90, 160, 90), (150, 60, 120))]


def draw(rect, background, t: int) -> np.ndarray:
    """Frame t of an identity: an 8 x 12 rectangle that moves 2 px right per frame."""
    img = np.empty((SIZE, SIZE, 3), np.uint8)
    img[:] = background
    x, y = 2 + 2 * t, 10 + (t % 3)
    img[y:y + 12, x:x + 8] = rect
    return img


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> tuple:
    """An identity folder of 12 clips (frames named 000.png ...) and the drawn frames."""
    root = tmp_path_factory.mktemp("clips") / "people"
    drawn = {}
    for i, (rect, background) in enumerate(COLOURS):
        folder = root / f"person{i:02d}"
        folder.mkdir(parents=True)
        # written in reverse, so that the order comes from the names, not from the writing
        for t in reversed(range(FRAMES)):
            Image.fromarray(draw(rect, background, t)).save(folder / f"{t:03d}.png")
        drawn[f"person{i:02d}"] = np.stack([draw(rect, background, t) for t in range(FRAMES)])
    return root, drawn


@pytest.fixture(scope="module")
def source(clips, tmp_path_factory):
    root, _ = clips
    s = IdentityFolder(root, image_size=SIZE, validation_fraction=0.3,
                       cache_dir=tmp_path_factory.mktemp("pairs"), progress=False)
    assert [len(s.split(k)) for k in ("train", "validation", "test")] == [6, 2, 4]
    return s


class Copying(nn.Module):
    """A stand-in model whose transfer copies one of its inputs."""

    def __init__(self, which: str):
        super().__init__()
        self.which = which
        self.weight = nn.Parameter(torch.zeros(1))  # gives the evaluation a device

    def transfer(self, appearance, pose):
        return (pose if self.which == "pose" else appearance).clone()


def unit(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64) / 255


def test_l1_is_the_mean_absolute_difference_on_unit_pixels():
    a = torch.full((2, 3, 4, 4), -1.0)  # black: 0 on [0, 1]
    b = torch.zeros(2, 3, 4, 4)  # grey: 0.5
    b[1, :, :2] = 1.0  # half white
    # image 0: |0 - 0.5| everywhere; image 1: half |0 - 1|, half |0 - 0.5|
    assert fomm.l1_distance(a, b).tolist() == pytest.approx([0.5, 0.75])


def test_the_floors_of_a_clip_are_the_first_and_the_mean_frame():
    clip = torch.stack([torch.full((3, 8, 8), v) for v in (-1.0, 0.0, 1.0)])  # 0, 0.5, 1
    s = fomm.clip_scores(Copying("pose"), clip)
    assert s["transfer/l1"].tolist() == [0, 0, 0]
    assert s["first_frame/l1"].tolist() == pytest.approx([0, 0.5, 1])
    assert s["mean_frame/l1"].tolist() == pytest.approx([0.5, 0, 0.5])  # the mean is grey
    copying_first = fomm.clip_scores(Copying("appearance"), clip)
    for measure in fomm.MEASURES:  # a model that copies its appearance input is that floor
        assert torch.equal(copying_first[f"transfer/{measure}"],
                           copying_first[f"first_frame/{measure}"])


def test_a_clip_of_one_frame_is_refused_in_one_line():
    with pytest.raises(PairDataError, match="1 frame; FOMM's protocol needs at least 2") as err:
        fomm.clip_scores(Copying("pose"), torch.zeros(1, 3, 8, 8))
    assert "\n" not in str(err.value)


def test_frames_come_in_file_name_order(source, clips):
    _, drawn = clips
    for i, name in enumerate(source.identities):
        frames = ((source.frames(i) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
        np.testing.assert_array_equal(frames, drawn[name])
    last = source.frames(0, torch.tensor([FRAMES - 1]))
    assert torch.equal(last, source.frames(0)[-1:])
    with pytest.raises(IndexError):
        source.frames(0, torch.tensor([FRAMES]))


def test_the_protocol_on_held_out_clips_matches_a_hand_computation(source, clips):
    _, drawn = clips
    test = source.split("test").tolist()
    s = fomm.fomm_scores(Copying("pose"), source)
    assert s["clip"].tolist() == [i for i in test for _ in range(FRAMES)]
    assert s["transfer/l1"].abs().max() < 1e-6  # the exact target
    summary = fomm.summarize_fomm(s, SIZE)
    assert (summary["clips"], summary["frames"], summary["image_size"]) == (4, 4 * FRAMES, SIZE)
    first, mean = [], []
    for i in test:
        x = unit(drawn[source.identities[i]])
        first += [np.abs(x[0] - x[t]).mean() for t in range(FRAMES)]
        mean += [np.abs(x.mean(0) - x[t]).mean() for t in range(FRAMES)]
    assert summary["l1"]["first_frame"] == pytest.approx(np.mean(first), abs=1e-6)
    assert summary["l1"]["mean_frame"] == pytest.approx(np.mean(mean), abs=1e-6)
    assert summary["l1"]["transfer"] == pytest.approx(0, abs=1e-6)
    assert 0 < summary["l1"]["mean_frame"] < summary["l1"]["first_frame"]
    assert summary["ssim"]["transfer"] == pytest.approx(1, abs=1e-4)
    with pytest.raises(ValueError, match="no clips of ordered frames"):
        fomm.fomm_scores(Copying("pose"), object())


@pytest.fixture(scope="module")
def judged(source, tmp_path_factory):
    cache = tmp_path_factory.mktemp("judges")
    first = reid.load_or_train_appearance_judge(source, steps=60, batch_size=16, cache_dir=cache,
                                                progress=False)
    second = reid.load_or_train_appearance_judge(source, steps=60, batch_size=16,
                                                 cache_dir=cache, progress=False)
    return first, second, cache


def test_the_appearance_judge_is_trained_once_and_then_read_from_the_cache(judged, source):
    first, second, cache = judged
    assert (first.origin, second.origin) == ("trained", "cache")
    assert first.fingerprint == second.fingerprint
    files = list(cache.glob("appearance-*.safetensors"))
    assert [f.name for f in files] == [f"appearance-{first.fingerprint}.safetensors"]
    x = source.frames(0)
    assert torch.allclose(first.embed(x), second.embed(x), atol=1e-6)
    assert (second.train_steps, second.batch_size, second.train_identities) == (60, 16, 6)
    other = reid.load_or_train_appearance_judge(source, steps=2, batch_size=16, cache_dir=cache,
                                                progress=False)
    assert other.origin == "trained" and other.fingerprint != first.fingerprint


def test_the_appearance_judge_tells_held_out_identities_apart(judged, source):
    judge = judged[0]
    q = reid.judge_quality(judge, source)
    assert (q["identities"], q["frames"], q["top1_chance"]) == (4, 4 * FRAMES, 0.25)
    assert q["top1"] >= 0.75  # three times chance
    assert q["auc"] > 0.9
    assert q["different_distance"] > 2 * q["same_distance"]


def test_the_auc_counts_closer_same_identity_pairs_and_ties_half():
    assert reid._auc(torch.tensor([0.1, 0.2]), torch.tensor([0.3, 0.4])) == 1.0
    assert reid._auc(torch.tensor([0.5]), torch.tensor([0.3, 0.5, 0.7])) == pytest.approx(0.5)


def test_cross_identity_distances_know_their_references(judged, source):
    judge = judged[0]
    keeps_pose = reid.appearance_distances(Copying("pose"), judge, source, n=40, seed=3)
    keeps_appearance = reid.appearance_distances(Copying("appearance"), judge, source, n=40,
                                                 seed=3)
    assert keeps_pose["transfer/to_pose"].abs().max() < 1e-5
    assert keeps_pose["pose_copied/to_pose"].abs().max() < 1e-5
    assert torch.allclose(keeps_appearance["transfer/to_appearance"],
                          keeps_appearance["appearance_copied/to_appearance"], atol=1e-5)
    pose_summary = reid.summarize_distances(keeps_pose)
    appearance_summary = reid.summarize_distances(keeps_appearance)
    assert pose_summary["pairs"] == 40
    assert pose_summary["normalised"] == pytest.approx(0, abs=1e-5)
    assert appearance_summary["normalised"] == pytest.approx(1, abs=1e-5)
    # another frame of A is much nearer A's frame than B's frame is
    a = appearance_summary["to_appearance"]
    assert a["appearance_copied"] < 0.5 * a["pose_copied"]
    pairs = reid.cross_identity_pairs(source, 40, seed=3)
    assert (pairs["appearance_identity"] != pairs["pose_identity"]).all()
    assert not any(torch.equal(a, o) for a, o in zip(pairs["appearance_image"],
                                                     pairs["other_image"]))


def test_too_few_identities_are_refused_in_one_line(source):
    with pytest.raises(PairDataError, match="at least 2 training identities") as err:
        reid.train_appearance_judge(source, steps=1, identities=torch.tensor([0]))
    assert "\n" not in str(err.value)
    judge = reid.train_appearance_judge(source, steps=1, batch_size=8)
    one = _OneHeldOut(source)
    for score in (lambda: reid.cross_identity_pairs(one, 4),
                  lambda: reid.judge_quality(judge, one)):
        with pytest.raises(PairDataError, match="at least 2 held-out identities.*got 1") as err:
            score()
        assert "\n" not in str(err.value)


class _OneHeldOut:
    """``source`` with a single held-out identity."""

    def __init__(self, source):
        self._source = source

    def split(self, name):
        return self._source.split(name)[:1] if name == "test" else self._source.split(name)

    def __getattr__(self, name):
        return getattr(self._source, name)


def test_evaluate_reports_both_on_user_data(clips, tmp_path):
    root, _ = clips
    overrides = {
        "data.source": "folder", "data.root": str(root), "data.validation_fraction": 0.3,
        "data.cache_dir": str(tmp_path / "cache"), "data.num_triplets": 16,
        "model.image_size": SIZE, "model.channels": 8, "model.max_channels": 16,
        "model.code_channels": 4, "objective.critic_width": 16, "train.batch_size": 3,
        "train.out_dir": str(tmp_path / "run"), "evaluation.mi_pairs": 16,
        "evaluation.mi_steps": 5, "evaluation.appearance_judge_steps": 20,
        "evaluation.appearance_judge_batch_size": 16, "evaluation.appearance_pairs": 24,
        "evaluation.keypoints": False,  # test_the_keypoint_judge_joins_the_report_on_user_data
    }
    cfg = load_config(None, [f"{k}={v}" for k, v in overrides.items()])
    torch.manual_seed(0)
    state = TrainState(cfg, torch.device("cpu"))
    src = open_source(cfg.data, SIZE, progress=False)
    m, _ = report.evaluate_state(state, src, progress=False)
    assert m["transfer_target"] == "pairs"
    f, j, d = m["fomm"], m["appearance_judge"], m["appearance_distance"]
    assert (f["clips"], f["frames"]) == (4, 4 * FRAMES)
    assert set(f) >= {"l1", "mse", "ssim", "psnr_db", "aed"}
    assert set(f["l1"]) == {"transfer", "first_frame", "mean_frame"}
    assert (j["origin"], j["train_steps"], j["train_identities"]) == ("trained", 20, 6)
    assert d["pairs"] == 24 and set(d["to_pose"]) == set(reid.CROSS_OUTPUTS)
    assert {"fomm", "appearance_judge", "appearance_distance"} <= set(m["evaluation_seconds"])
    json.dumps(m)  # plain numbers only

    def leaves(tree, prefix=""):
        out = []
        for k, v in tree.items():
            out += leaves(v, f"{prefix}{k}.") if isinstance(v, dict) and v else [prefix + k]
        return out

    for path in leaves(m):
        metrics.metric(path)  # every key has an entry
    for group, names in (("fomm", ("l1", "mse", "ssim", "psnr_db", "aed")),
                         ("appearance_judge", ("top1", "auc", "same_distance")),
                         ("appearance_distance", ("to_appearance", "to_pose", "normalised"))):
        for name in names:
            assert metrics.metric(f"{group}.{name}").key == f"{group}.{name}"
    table = report.format_table({"checkpoint": "x.pt", **m})
    rows = dict(line.split("  ", 1) for line in table.splitlines())
    rows = {k.strip(): v.strip() for k, v in rows.items()}
    assert rows["FOMM protocol"] == (f"4 held-out clips, {4 * FRAMES} frames at {SIZE} px (FOMM: "
                                     "256 px; not comparable with published figures): first frame "
                                     "copied / mean frame / transfer")
    assert rows["FOMM protocol: L1"] == " / ".join(
        f"{f['l1'][k]:.4f}" for k in ("first_frame", "mean_frame", "transfer"))
    assert rows["FOMM protocol: PSNR"].endswith(" dB")
    assert rows["appearance judge: held-out re-identification top-1"].startswith(
        f"{j['top1']:.3f}  (chance 0.250; 4 identities")
    assert rows["cross-identity outputs"] == ("24 held-out pairs (appearance of A, pose of B): "
                                              "pose input copied / transfer / appearance input "
                                              "copied; self-reconstruction")
    to_pose = d["to_pose"]
    assert rows["cross-identity: distance to the pose input"] == (
        f"0.000 / {to_pose['transfer']:.3f} / {to_pose['appearance_copied']:.3f}; "
        f"{to_pose['self_reconstruction']:.3f}")
    page = html.write_html({"checkpoint": "x.pt", **m}, [], tmp_path / "report.html")
    text = page.read_text(encoding="utf-8")
    assert f"<h2>FOMM protocol on 4 held-out clips ({4 * FRAMES} frames)</h2>" in text
    assert "these numbers are not comparable with published ones" in text
    assert "<td>L1 (pixels in [0, 1], FOMM&#39;s measure)</td>" in text
    assert f"<b>{m['fomm']['l1']['transfer']:.4f}</b>" in text
    assert "distance to the pose input (high: the pose input&#39;s appearance" in text
    # one held-out identity: FOMM's protocol still runs, the cross-identity scores say why not
    with pytest.warns(UserWarning, match="no cross-identity appearance scores: .*got 1"):
        few = {}
        report._ordered_frames(state, _OneHeldOut(src), few, progress=False)
    assert few["fomm"]["clips"] == 1 and few["appearance_judge"]["origin"] == "cache"
    assert "top1" not in few["appearance_judge"] and "appearance_distance" not in few
    table = report.format_table({**{k: v for k, v in m.items() if k != "appearance_distance"},
                                 **few})
    assert "appearance judge  " in table and "re-identification" not in table
    assert "cross-identity" not in table


class _Rectangle:
    """A keypoint detector keeping rodi.evaluation.keypoints.KeypointDetector: one 'joint' at the
    centre of the pixels that differ from the top-left corner (the drawn rectangle of
    :func:`draw`), found where there are any."""

    name = "rectangle centre (test)"
    joints = ("centre",)
    closed = False

    def __call__(self, images):
        moved = (images - images[..., :1, :1]).abs().sum(1) > 0.1  # (B, H, W)
        ys, xs = torch.meshgrid(torch.arange(SIZE) + 0.5, torch.arange(SIZE) + 0.5, indexing="ij")
        count = moved.sum((1, 2)).clamp(min=1)
        xy = torch.stack([(moved * xs).sum((1, 2)) / count, (moved * ys).sum((1, 2)) / count], -1)
        return xy[:, None].float(), moved.any(-1).any(-1)[:, None]

    def close(self):
        _Rectangle.closed = True


def test_the_keypoint_judge_scores_cross_identity_transfers(source):
    from rodi.evaluation.keypoints import judge_transfers

    keeps_pose = judge_transfers(Copying("pose"), source, _Rectangle(), n=30, seed=2)
    keeps_appearance = judge_transfers(Copying("appearance"), source, _Rectangle(), n=30, seed=2)
    assert keeps_pose["pairs"] == 30 and keeps_pose["detector"] == "rectangle centre (test)"
    assert set(keeps_pose["akd_px"]) == {k for k, _ in metrics.KEYPOINT_COLUMNS}
    for model_copy in ("transfer", "self_reconstruction"):
        assert keeps_pose["akd_px"][model_copy] == 0 and keeps_pose["mkr"][model_copy] == 0
    # the rectangle moves 2 px a frame: another identity's frame is mostly another frame
    assert keeps_appearance["akd_px"]["transfer"] > 1
    assert keeps_appearance["akd_px"]["transfer"] == keeps_pose["akd_px"]["appearance_copied"]
    assert keeps_pose["mkr"]["pose_round_trip"] == 0


def test_the_keypoint_judge_joins_the_report_on_user_data(clips, tmp_path, monkeypatch):
    from rodi.evaluation.keypoints import KeypointJudgeError

    root, _ = clips
    overrides = {
        "data.source": "folder", "data.root": str(root), "data.validation_fraction": 0.3,
        "data.cache_dir": str(tmp_path / "cache"), "model.image_size": SIZE,
        "model.channels": 8, "model.max_channels": 16, "model.code_channels": 4,
        "objective.critic_width": 16, "train.out_dir": str(tmp_path / "run"),
        "evaluation.fomm": False, "evaluation.appearance_judge": False,
        "evaluation.keypoint_pairs": 12,
    }
    cfg = load_config(None, [f"{k}={v}" for k, v in overrides.items()])
    torch.manual_seed(0)
    state = TrainState(cfg, torch.device("cpu"))
    src = open_source(cfg.data, SIZE, progress=False)
    monkeypatch.setattr(report, "MediaPipePose", _Rectangle)
    m = {}
    seconds = report._ordered_frames(state, src, m, progress=False)
    k = m["keypoints"]
    assert "keypoints" in seconds and _Rectangle.closed
    assert (k["pairs"], k["pose_frames"], k["joints"]) == (12, 12, 1)
    for path in ("keypoints.akd_px", "keypoints.mkr", "keypoints.pairs"):
        assert metrics.metric(path).key == path
    table = report.format_table({"checkpoint": "x.pt", **_placeholders(), **m})
    rows = {a.strip(): b.strip() for a, b in (line.split("  ", 1) for line in table.splitlines())}
    assert rows["keypoint judge: AKD"] == " / ".join(
        f"{k['akd_px'][c]:.2f}" for c, _ in metrics.KEYPOINT_COLUMNS) + " px"
    assert rows["keypoint judge"].startswith("rectangle centre (test); 12 held-out pairs")
    text = html.write_html({"checkpoint": "x.pt", **_placeholders(), **m}, [],
                           tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<h2>Keypoint judge on 12 held-out pairs" in text
    assert "<b>rectangle centre (test)</b>" in text

    def missing(*args, **kwargs):
        raise KeypointJudgeError("the keypoint judge needs MediaPipe: pip install ...")

    monkeypatch.setattr(report, "MediaPipePose", missing)
    with pytest.warns(UserWarning, match="no keypoint judge .*evaluation.keypoints=false"):
        quiet = {}
        report._ordered_frames(state, src, quiet, progress=False)
    assert "keypoints" not in quiet
    state.cfg.evaluation.keypoints = True
    with pytest.raises(KeypointJudgeError, match="needs MediaPipe"):
        report._ordered_frames(state, src, {}, progress=False)
    state.cfg.evaluation.keypoints = False
    off = {}
    report._ordered_frames(state, src, off, progress=False)
    assert off == {}


def _placeholders() -> dict:
    """The fields format_table and write_html need besides the sections under test."""
    stats = {"mean": 0.1, "median": 0.1, "std": 0.0}
    return {"protocol": "folder", "variant": "rodi", "step": 0, "train_seconds": 0.0,
            "num_triplets": 1, "transfer_target": "pairs", "triplet_mse": stats,
            "reconstruction_mse": stats, "gamma": 1.0, "lambda": 0.0, "epsilon": 0.0}
