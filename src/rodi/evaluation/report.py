"""``rodi evaluate``: the benchmark numbers of one checkpoint, as JSON and as a printed table."""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

import torch

from rodi.atomic import replacing
from rodi.data.folders import PairDataError
from rodi.data.protocols import LabelledSource, OrderedFramesSource, TripletSource
from rodi.data.sources import open_source
from rodi.evaluation.fomm import fomm_scores, summarize_fomm
from rodi.evaluation.html import write_html
from rodi.evaluation.judges import load_or_train_judge, summarize_judged, supports_judges
from rodi.evaluation.keypoints import KeypointJudgeError, MediaPipePose, judge_transfers
from rodi.evaluation.metrics import (
    CROSS_COLUMNS,
    FOMM_COLUMNS,
    KEYPOINT_COLUMNS,
    joined,
    label,
    metric,
    under,
)
from rodi.evaluation.plots import plot_training_curves
from rodi.evaluation.probes import (
    encode_codes,
    leakage_probes,
    pair_codes,
    posthoc_mutual_information,
    summarize_probes,
)
from rodi.evaluation.reid import (
    appearance_distances,
    judge_quality,
    load_or_train_appearance_judge,
    summarize_distances,
)
from rodi.evaluation.triplets import pair_errors, summarize, triplet_errors
from rodi.inference import grid_weights, interpolate
from rodi.training.state import TrainState
from rodi.viz import interpolation_grid, save_png, save_transfer_matrix


def evaluate_state(state: TrainState, source, num_triplets: int | None = None, progress: bool = True
                   ) -> tuple[dict, dict[str, torch.Tensor]]:
    """Metrics of a trained state on a pair source and the per-item errors behind them.

    Sources with exact targets are scored on held-out triplets (``transfer_target: triplets``),
    user data on held-out same-identity pairs (``transfer_target: pairs``, see
    :func:`rodi.evaluation.triplets.pair_errors`); the key is ``triplet_mse`` in both cases, with
    SSIM and PSNR beside it. Sources that render labelled characters exactly are also judged
    (``evaluation.judges``): pose accuracy and appearance retention of the transfers, each with the
    judge's ceiling and floor (see :mod:`rodi.evaluation.judges` and
    :func:`rodi.evaluation.judges.summarize_judged`). Every random draw of the probes, the post-hoc
    MI and the judge takes its seed from ``cfg.evaluation`` (``probe_train_seed``, ...).

    User data whose identities are clips (``folder``, ``videos``, ``index``) also gets FOMM's
    protocol and the appearance judge's cross-identity distances (``evaluation.fomm``,
    ``evaluation.appearance_judge``; see :func:`_ordered_frames`).

    Returns:
        ``(metrics, errors)``: metrics as in :func:`evaluate_checkpoint`; errors with per-item
        ``transfer`` and ``reconstruction`` MSE, (num_triplets,) each.
    """
    cfg = state.cfg
    n = num_triplets or cfg.data.num_triplets
    exact = isinstance(source, TripletSource)
    e = cfg.evaluation
    judge = None
    seconds = {}
    clock = time.perf_counter()
    if exact and e.judges and supports_judges(source):
        cache = Path(cfg.data.cache_dir) / "judges" if cfg.data.cache_dir else None
        judge = load_or_train_judge(source, e.judge_steps, e.judge_batch_size, e.judge_seed,
                                    cache_dir=cache, progress=progress)
        seconds["judge"], clock = time.perf_counter() - clock, time.perf_counter()
    if exact:
        errors = triplet_errors(state.eval_model, source, n, cfg.data.triplet_seed, judge=judge)
    else:
        errors = pair_errors(state.eval_model, source, n, cfg.data.triplet_seed)
    seconds["transfers"], clock = time.perf_counter() - clock, time.perf_counter()
    metrics = {
        "source": cfg.data.source,
        "protocol": cfg.data.protocol if cfg.data.source == "sprites" else cfg.data.source,
        "transfer_target": "triplets" if exact else "pairs",
        "variant": cfg.objective.variant,
        "step": state.step,
        "train_seconds": round(state.train_seconds, 1),
        "num_triplets": n,
        "triplet_seed": cfg.data.triplet_seed,
        "triplet_mse": summarize(errors["transfer"]),
        "reconstruction_mse": summarize(errors["reconstruction"]),
        "image_quality": {"ssim": summarize(errors["ssim"]), "psnr_db": summarize(errors["psnr"])},
        "gamma": state.objective.gamma.item(),
        "lambda": state.objective.multiplier.item(),
        "epsilon": cfg.objective.epsilon,
    }
    if not exact and isinstance(source, OrderedFramesSource):
        seconds.update(_ordered_frames(state, source, metrics, progress))
        clock = time.perf_counter()
    if judge is not None:
        metrics.update(summarize_judged(errors))
        metrics["judge_train_steps"] = judge.train_steps
        metrics["judge"] = {"origin": judge.origin, "fingerprint": judge.fingerprint,
                            "train_steps": judge.train_steps}
    if e.probes:
        model = state.eval_model
        if isinstance(source, LabelledSource):
            train = encode_codes(model, source, "train", e.probe_train_codes,
                                 seed=e.probe_train_seed)
            test = encode_codes(model, source, "test", e.probe_test_codes, seed=e.probe_test_seed)
            layers = source.appearance_attributes
            detail = leakage_probes(train, test, layers, source.pose_attributes,
                                    steps=e.probe_steps, seed=e.probe_seed)
            metrics["probes"] = summarize_probes(detail, layers, source.pose_attributes)
            metrics["probes_per_label"] = detail
            seconds["probes"], clock = time.perf_counter() - clock, time.perf_counter()
        samples, means, appearances = pair_codes(model, source, "test", e.mi_pairs,
                                                 seed=e.mi_pairs_seed)
        metrics["posthoc_mi_nats"] = posthoc_mutual_information(samples, appearances,
                                                                steps=e.mi_steps, seed=e.mi_seed)
        metrics["posthoc_mi_mean_nats"] = posthoc_mutual_information(means, appearances,
                                                                     steps=e.mi_steps,
                                                                     seed=e.mi_seed)
        seconds["posthoc_mi"] = time.perf_counter() - clock
    metrics["evaluation_seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    return metrics, errors


def _ordered_frames(state: TrainState, source: OrderedFramesSource, metrics: dict,
                    progress: bool) -> dict[str, float]:
    """Add FOMM's protocol (``fomm``, :mod:`rodi.evaluation.fomm`) and the appearance judge
    (``appearance_judge``: its recipe and held-out quality; ``appearance_distance``: the
    cross-identity distances, :mod:`rodi.evaluation.reid`) to ``metrics``, as the config's
    ``evaluation`` section asks; returns the seconds of each stage. With fewer than 2 held-out
    identities, the judge's quality and the cross-identity distances cannot be had: they are left
    out with a warning (FOMM's protocol needs one held-out clip).

    Raises:
        PairDataError: a held-out clip has fewer than 2 frames, or no clip is held out.
    """
    e, seconds = state.cfg.evaluation, {}
    model = state.eval_model
    device = next(model.parameters()).device
    clock = time.perf_counter()
    judge = None
    if e.appearance_judge:
        cache = Path(state.cfg.data.cache_dir) / "judges" if state.cfg.data.cache_dir else None
        judge = load_or_train_appearance_judge(
            source, e.appearance_judge_steps, e.appearance_judge_batch_size,
            e.appearance_judge_seed, cache_dir=cache, device=device, progress=progress)
        seconds["appearance_judge"], clock = time.perf_counter() - clock, time.perf_counter()
    if e.fomm:
        metrics["fomm"] = summarize_fomm(fomm_scores(model, source, "test", judge,
                                                     progress=progress), source.image_size)
        seconds["fomm"], clock = time.perf_counter() - clock, time.perf_counter()
    if e.keypoints is not False:
        scores = _keypoint_judge(model, source, e.keypoints, e.keypoint_pairs,
                                 e.appearance_pairs_seed)
        if scores is not None:
            metrics["keypoints"] = scores
            seconds["keypoints"] = time.perf_counter() - clock
        clock = time.perf_counter()
    if judge is None:
        return seconds
    record = {"origin": judge.origin, "fingerprint": judge.fingerprint,
              "train_steps": judge.train_steps, "train_identities": judge.train_identities}
    try:
        record.update(judge_quality(judge, source, "test"))
        distances = appearance_distances(model, judge, source, e.appearance_pairs,
                                         e.appearance_pairs_seed, "test")
        metrics["appearance_distance"] = summarize_distances(distances)
    except PairDataError as err:
        warnings.warn(f"no cross-identity appearance scores: {err}", stacklevel=3)
    metrics["appearance_judge"] = record
    seconds["appearance_distance"] = time.perf_counter() - clock
    return seconds


def _keypoint_judge(model, source: OrderedFramesSource, required: bool | None, pairs: int,
                    seed: int) -> dict | None:
    """The keypoint judge's AKD and MKR of cross-identity transfers
    (:func:`rodi.evaluation.keypoints.judge_transfers`, MediaPipe Pose); None, with a warning,
    where MediaPipe is not installed and not ``required``, or where fewer than 2 identities are
    held out.

    Raises:
        KeypointJudgeError: ``required`` (``evaluation.keypoints: true``) and the extra
            ``rodi[keypoints]`` is missing.
    """
    try:
        detector = MediaPipePose()
    except KeypointJudgeError as err:
        if required:
            raise
        warnings.warn(f"no keypoint judge ({err}; evaluation.keypoints=false silences this)",
                      stacklevel=4)
        return None
    try:
        return judge_transfers(model, source, detector, pairs, seed, "test")
    except PairDataError as err:
        warnings.warn(f"no keypoint scores: {err}", stacklevel=4)
        return None
    finally:
        detector.close()


def write_report(state: TrainState, source, metrics: dict, out_dir: str | os.PathLike,
                 scalars_csv: str | os.PathLike | None = None) -> Path:
    """Write one checkpoint's report into ``out_dir``: ``metrics.json`` for machines, and for
    people ``report.html`` (self-contained; see :func:`rodi.evaluation.html.write_html`) with the
    figures beside it: ``transfer_matrix.png``, ``interpolation.png`` (along pose and along
    appearance) and, given the run's ``scalars.csv``, ``training_curves.png`` (gamma, lambda, I_T).

    Returns:
        The HTML page's path.

    Raises:
        OSError: the folder cannot be written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(metrics, out / "metrics.json")
    figure_examples = source.fixed_examples(max(2, state.cfg.train.matrix_size),
                                            seed=state.cfg.evaluation.figure_seed)
    appearance, pose = (x["image"] for x in figure_examples)
    steps, device = 7, next(state.eval_model.parameters()).device
    cells = interpolate(state.eval_model, appearance[:2].to(device), pose[:2].to(device),
                        grid_weights(steps))
    walk = interpolation_grid(appearance[:2], pose[:2],
                              cells.cpu().reshape(steps, steps, *appearance.shape[1:]))
    figures = [("transfer matrix",
                save_transfer_matrix(state.eval_model, appearance, pose,
                                     out / "transfer_matrix.png", 2),
                "held-out appearance inputs head the rows and pose inputs the columns; cell (i, j) "
                "renders appearance i in pose j (posterior mean)"),
               ("interpolation", save_png(walk, out / "interpolation.png", 2),
                "along each row the pose code walks linearly from the first to the last column's "
                "pose input; down each column the appearance code walks from the first to the last "
                "row's appearance input")]
    if (scalars_csv is not None and Path(scalars_csv).is_file()
            and len(Path(scalars_csv).read_text().splitlines()) > 1):
        curves = plot_training_curves(scalars_csv, out / "training_curves.png",
                                      metrics.get("epsilon"))
        figures.append(("training curves", curves, "gamma (KL weight) and lambda (Lagrange "
                        "multiplier), and the critics' mutual-information estimates I_T and I_T' "
                        "in nats, over training steps"))
    return write_html(metrics, figures, out / "report.html")


def evaluate_checkpoint(checkpoint: str | os.PathLike, data_root: str | None = None,
                        num_triplets: int | None = None, device: torch.device | None = None,
                        report_dir: str | os.PathLike | None = None, progress: bool = True) -> dict:
    """Triplet MSE (mean, median, std; pixels in [-1, 1]) and self-reconstruction MSE of a
    checkpoint, with its protocol, step and wall-clock training time (seconds); unless the config's
    ``evaluation.probes`` is off, also the leakage probes' accuracies beside chance and a post-hoc
    MI estimate in nats; where the data renders labelled characters exactly, SSIM/PSNR, pose
    accuracy and appearance retention with their ceilings (see :func:`evaluate_state`); where
    user data's identities are clips, FOMM's protocol (``fomm``) and the appearance judge
    (``appearance_judge``, ``appearance_distance``; see :func:`_ordered_frames`); and
    ``evaluation_seconds``, the wall-clock seconds of each stage (``judge``, ``transfers``,
    ``appearance_judge``, ``fomm``, ``appearance_distance``, ``probes``, ``posthoc_mi``,
    ``report``). With ``report_dir``, also writes the report there
    (:func:`write_report`).

    Raises:
        CheckpointError: the checkpoint cannot be read.
        SpritesDataError, MocapDataError, PairDataError: the data cannot be opened.
    """
    state = TrainState.from_checkpoint(checkpoint, device)
    cfg = state.cfg
    if data_root is not None:
        cfg.data.root = str(data_root)
    source = open_source(cfg.data, cfg.model.image_size, progress)
    metrics, _ = evaluate_state(state, source, num_triplets, progress)
    metrics = {"checkpoint": str(checkpoint), **metrics}
    if report_dir is not None:
        clock = time.perf_counter()
        write_report(state, source, metrics, report_dir,
                     Path(checkpoint).parent.parent / "scalars.csv")
        metrics["evaluation_seconds"]["report"] = round(time.perf_counter() - clock, 1)
        write_json(metrics, Path(report_dir) / "metrics.json")
    return metrics


def format_table(metrics: dict) -> str:
    """A plain-text table of :func:`evaluate_checkpoint`'s result (labels, units and number formats
    from :mod:`rodi.evaluation.metrics`)."""
    t, r = metrics["triplet_mse"], metrics["reconstruction_mse"]
    rows = [
        (label("protocol"), metrics["protocol"]),
        (label("variant"), metrics["variant"]),
        (label("step"), str(metrics["step"])),
        # in minutes
        (label("train_seconds"), _value("train_seconds", metrics["train_seconds"] / 60)),
        (f"{label('triplet_mse')} ({metrics['num_triplets']} held-out "
         f"{metrics.get('transfer_target', 'triplets')})",
         _statistics("triplet_mse", t)),
        (label("reconstruction_mse"), _statistics("reconstruction_mse", r)),
        (joined("gamma", "lambda"),
         f"{_value('gamma', metrics['gamma'])} / {_value('lambda', metrics['lambda'])}"),
    ]
    if "image_quality" in metrics:
        q = metrics["image_quality"]
        rows.append((joined("image_quality.ssim", "image_quality.psnr_db"),
                     f"{_value('image_quality.ssim', q['ssim']['mean'])} / "
                     f"{_value('image_quality.psnr_db', q['psnr_db']['mean'])}"))
    rows += _ordered_frame_rows(metrics)
    if "judge" in metrics:
        j = metrics["judge"]
        rows.append((label("judge"),
                     f"{j['origin']} ({j['train_steps']} steps; renders {j['fingerprint']})"))
    for group in ("pose_accuracy", "appearance_retention"):
        for name, v in metrics.get(group, {}).items():
            key = f"{group}.{name}"
            rows.append((f"{label(group)}: {label(key)} (floor / transfer / ceiling; normalised)",
                         " / ".join(_number(key, v[s]) for s in ("floor", "transfer", "ceiling"))
                         + "; " + _number(key, v.get("normalised"))))
    if "normalised" in metrics:
        n = metrics["normalised"]
        rows.append((joined("normalised.pose", "normalised.appearance"),
                     f"{_value('normalised.pose', n['pose'])} / "
                     f"{_value('normalised.appearance', n['appearance'])}"))
        if "appearance_self_reconstruction" in n:
            key = "normalised.appearance_self_reconstruction"
            rows.append((label(key), _value(key, n["appearance_self_reconstruction"])))
    if "probes" in metrics:
        p = metrics["probes"]
        for m in under("probes"):
            name = m.key.removeprefix("probes.")
            rows.append((f"probe: {m.label}" + (" (leak)" if m.note.startswith("leak") else ""),
                         f"accuracy {_number(m.key, p[name])}  "
                         f"(chance {_number(m.key, p[name + '_chance'])})"))
    if "posthoc_mi_nats" in metrics:
        for key in ("posthoc_mi_nats", "posthoc_mi_mean_nats"):
            rows.append((label(key), _value(key, metrics[key])))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _ordered_frame_rows(metrics: dict) -> list[tuple[str, str]]:
    """The printed table's rows of FOMM's protocol and the appearance judge: a heading row naming
    the columns (floors first, as the judged rows print them), then one row per measure."""
    rows = []
    if "fomm" in metrics:
        f = metrics["fomm"]
        rows.append((label("fomm"), f"{f['clips']} {label('fomm.clips')}, {f['frames']} frames at "
                     f"{f['image_size']} px (FOMM: 256 px; not comparable with published "
                     "figures): " + " / ".join(name for _, name in FOMM_COLUMNS)))
        rows += _measure_rows("fomm", f, ("l1", "mse", "ssim", "psnr_db", "aed"), FOMM_COLUMNS)
    if "keypoints" in metrics:
        k = metrics["keypoints"]
        rows.append((label("keypoints"),
                     f"{k['detector']}; {k['pairs']} {label('keypoints.pairs')}, "
                     f"{k['pose_frames_with_joints']} with joints found, "
                     f"{k['joints_per_pose_frame']:.1f} of {k['joints']} joints each "
                     "(not comparable with OpenPose-based figures): "
                     + " / ".join(name for _, name in KEYPOINT_COLUMNS)))
        rows += _measure_rows("keypoints", k, ("akd_px", "mkr"), KEYPOINT_COLUMNS)
    if "appearance_judge" in metrics:
        j = metrics["appearance_judge"]
        rows.append((label("appearance_judge"),
                     f"{j['origin']} ({j['train_steps']} steps on {j['train_identities']} training "
                     f"identities; {j['fingerprint']})"))
        if "top1" in j:
            rows.append((f"{label('appearance_judge')}: {label('appearance_judge.top1')}",
                         f"{_number('appearance_judge.top1', j['top1'])}  (chance "
                         f"{_number('appearance_judge.top1_chance', j['top1_chance'])}; "
                         f"{j['identities']} identities, {j['frames']} frames)"))
            keys = ("appearance_judge.same_distance", "appearance_judge.different_distance")
            rows.append((f"{label('appearance_judge')}: {joined(*keys)}",
                         " / ".join(_number(k, j[k.split('.')[1]]) for k in keys)
                         + f"  ({label('appearance_judge.auc')} "
                         f"{_number('appearance_judge.auc', j['auc'])})"))
    if "appearance_distance" in metrics:
        d = metrics["appearance_distance"]
        *compared, (own, own_name) = CROSS_COLUMNS
        rows.append((label("appearance_distance"),
                     f"{d['pairs']} {label('appearance_distance.pairs')}: "
                     + " / ".join(name for _, name in compared) + f"; {own_name}"))
        for part in ("to_appearance", "to_pose"):
            key = f"appearance_distance.{part}"
            rows.append((f"cross-identity: {label(key)}",
                         " / ".join(_number(key, d[part][k]) for k, _ in compared)
                         + f"; {_number(key, d[part][own])}"))
        key = "appearance_distance.normalised"
        rows.append((f"cross-identity: {label(key)}", _number(key, d["normalised"])))
    return rows


def _measure_rows(group: str, section: dict, measures: tuple[str, ...],
                  columns: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    """One printed row per measure of ``section`` (``metrics[group]``) that it has: the values of
    its ``columns``, joined by `` / ``, with the measure's unit."""
    rows = []
    for measure in (m for m in measures if m in section):
        key = f"{group}.{measure}"
        unit = f" {metric(key).unit}" if metric(key).unit else ""
        rows.append((f"{label(group)}: {label(key)}",
                     " / ".join(_number(key, section[measure][c]) for c, _ in columns) + unit))
    return rows


def _number(key: str, v) -> str:
    """``v`` in the printed table's format of ``key``; ``n/a`` for None."""
    return "n/a" if v is None else format(v, metric(key).fmt)


def _value(key: str, v) -> str:
    """``v`` in the printed table's format of ``key``, with its unit."""
    unit = metric(key).unit
    return f"{_number(key, v)} {unit}" if unit and v is not None else _number(key, v)


def _statistics(key: str, s: dict) -> str:
    """Mean, median and std of a per-item error, as the printed table writes them."""
    return "  ".join(f"{k} {_number(key, s[k])}" for k in ("mean", "median", "std"))


def write_json(metrics: dict, path: str | os.PathLike) -> Path:
    """Write ``metrics`` as indented JSON, atomically."""
    with replacing(path) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    return Path(path)
