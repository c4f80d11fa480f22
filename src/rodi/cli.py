"""The ``rodi`` command line: sub-commands only, each parsing its options and calling the library.

Start-up time: this module imports only click and the configuration at the top. Everything that
imports torch (training, inference, evaluation, serving) is imported inside the command that uses
it, so ``rodi --help`` and option errors answer in a fraction of a second instead of the two
seconds importing torch takes. Those are the package's only function-local imports.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import time
import warnings
from pathlib import Path

import click

from rodi.config import (
    SOURCES,
    TRACK_DETECTORS,
    TRACK_FITS,
    ConfigError,
    DataConfig,
    ModelConfig,
    ServeLimits,
    TrackSettings,
    load_config,
)
from rodi.variants import NAMES as VARIANT_NAMES
from rodi.version import __version__


class _Errors(click.Group):
    """Turn rodi's own errors into one-line messages instead of tracebacks."""

    def invoke(self, ctx):
        # deferred (module docstring): these import torch
        from rodi.data.errors import DataError
        from rodi.data.images import MediaReadError
        from rodi.evaluation.judges import JudgeFileError
        from rodi.media import VideoWriteError
        from rodi.training.state import CheckpointError, RunExistsError
        from rodi.training.step import NonFiniteLossError

        try:
            return super().invoke(ctx)
        except (ConfigError, MediaReadError, VideoWriteError, NonFiniteLossError, RunExistsError,
                CheckpointError, JudgeFileError, DataError) as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            sys.exit(130)
        except OSError as err:  # a full disk, a read-only or blocked output folder
            where = f": {err.filename}" if err.filename else ""
            click.echo(f"error: {err.strerror or err}{where}", err=True)
            sys.exit(2)


@click.group(cls=_Errors)
@click.version_option(__version__, prog_name="rodi")
def main():
    """Unsupervised, robust disentangling of appearance and pose (Esser, Haux & Ommer, ICCV
    2019)."""
    warnings.formatwarning = lambda message, category, *args, **kwargs: f"warning: {message}\n"


def _overrides(overrides: tuple[str, ...], data_root: str | None,
               data: str | None = None) -> list[str]:
    """OVERRIDES plus what ``--data-root`` and ``--data`` say, without overriding an explicit
    ``data.source=`` or ``data.root=`` among the OVERRIDES."""
    from rodi.data.sources import guess_source  # deferred (module docstring)

    out = list(overrides)
    given = {item.split("=", 1)[0] for item in out}
    if data is not None:
        if data in SOURCES:
            source, root = data, None
        else:
            source, root = guess_source(data), data
        if "data.source" not in given:
            out.append(f"data.source={source}")
        if root is not None and "data.root" not in given:
            out.append(f"data.root={root}")
        if "train.out_dir" not in given:  # not the bundled config's folder, named for other data
            out.insert(0, f"train.out_dir=runs/{_run_name(root) or source}")
    if data_root is not None:
        out.append(f"data.root={data_root}")
    return out


def _run_name(root: str | None) -> str | None:
    """The run folder's name for ``--data ROOT``: a folder's name, or the folder of an index CSV
    (``people/index.csv`` -> ``people``)."""
    if root is None:
        return None
    path = Path(root).expanduser().resolve()
    return path.parent.name if path.suffix.lower() == ".csv" else path.name


_DATA_HELP = ("The data: 'mocap', 'sprites', or a path to a folder of identities "
              "(ROOT/<identity>/<images>), a folder of videos (one identity each), a CSV index "
              "(identity,path[,split]) or the LPC sheets.")


@main.command()
@click.argument("config", required=False)
@click.argument("overrides", nargs=-1)
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False), default=None,
              help="Continue the run in this folder exactly where it stopped (its saved config, "
                   "plus OVERRIDES).")
@click.option("--data", "data", default=None, help=_DATA_HELP)
@click.option("--data-root", type=click.Path(), default=None,
              help="Sets data.root (e.g. the folder of LPC layer sheets).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def train(config, overrides, resume_dir, data, data_root, no_progress):
    """Train a model. CONFIG is a YAML file or a bundled name (sprites, demo); OVERRIDES are
    key=value pairs such as objective.variant=ae train.max_minutes=60."""
    # deferred (module docstring)
    from rodi.evaluation.validation import validation
    from rodi.training.loop import checkpoint_path, train as run_training
    from rodi.training.state import read_checkpoint

    if config is not None and "=" in config:
        overrides, config = (config,) + overrides, None
    if resume_dir is not None:
        saved = read_checkpoint(checkpoint_path(resume_dir))["config"]
        cfg = load_config(config, _overrides((f"train.out_dir={resume_dir}", *overrides),
                                             data_root, data),
                          base=saved)
    elif config is None and data is None and not overrides:
        raise ConfigError("give a CONFIG (a YAML file or one of the bundled names), --data, or "
                          "--resume RUN_DIR")
    else:
        cfg = load_config(config, _overrides(overrides, data_root, data))
    run_dir = run_training(cfg, resume=resume_dir is not None, progress=not no_progress,
                           validate=validation(cfg))
    click.echo(f"run folder: {run_dir}")


_CHECKPOINT_HELP = ("A rodi checkpoint (.pt), an exported model (.safetensors) or a shipped "
                    "model's name (humanoid).")
_SCALE_HELP = "Each pixel of the model's renders becomes SCALE x SCALE pixels (nearest neighbour)."


@main.command()
@click.option("--checkpoint", "-c", required=True, type=click.Path(dir_okay=False),
              help=_CHECKPOINT_HELP)
@click.option("--appearance", "-a", multiple=True, required=True,
              help="Image(s) or folder(s) whose appearance is kept.")
@click.option("--pose", "-p", multiple=True, required=True,
              help="Image(s) or folder(s) whose pose is kept.")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), help="Output PNG.")
@click.option("--matrix", is_flag=True,
              help="Write an N x M grid: rows = appearance inputs, columns = pose inputs, with the "
                   "inputs as headers.")
@click.option("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
def transfer(checkpoint, appearance, pose, output, matrix, device):
    """Render the appearance of one image in the pose of another (posterior mean of pi)."""
    # deferred (module docstring)
    from rodi.data.images import expand_image_paths
    from rodi.inference import load
    from rodi.viz import save_png, save_transfer_matrix, to_uint8

    model = load(checkpoint, device)
    apps = model.prepare(expand_image_paths(list(appearance)))
    poses = model.prepare(expand_image_paths(list(pose)))
    if matrix:
        path = save_transfer_matrix(model.network, apps, poses, output)
    else:
        if len(apps) != 1 or len(poses) != 1:
            raise click.UsageError(f"got {len(apps)} appearance and {len(poses)} pose images; "
                                   "give one of each, or use --matrix for a grid")
        path = save_png(to_uint8(model.transfer(apps, poses))[0], output)
    click.echo(f"wrote {path}")


@main.command()
@click.option("--checkpoint", "-c", required=True, type=click.Path(dir_okay=False),
              help=_CHECKPOINT_HELP)
@click.option("--appearance", "-a", required=True,
              help="Image whose appearance is kept, or a video whose frames' appearance codes are "
                   "averaged.")
@click.option("--pose-video", "-p", required=True,
              help="Video whose every frame gives the pose, or a folder of frames (file-name "
                   "order, as `rodi data tracks` writes an identity).")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False),
              help="Output video: .mp4, .mov or .mkv (H.264) or .gif.")
@click.option("--side-by-side", is_flag=True,
              help="Each frame shows pose frame | appearance | result.")
@click.option("--scale", type=click.IntRange(1, 16), default=4, show_default=True, help=_SCALE_HELP)
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Frame rate of the output. Default: the pose video's (25 for a folder).")
@click.option("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def retarget(checkpoint, appearance, pose_video, output, side_by_side, scale, fps, device,
             no_progress):
    """Motion retargeting: the appearance of one image (or video) in the pose of every frame of
    another video, written at that video's frame rate."""
    from rodi.inference import load  # deferred (module docstring)
    from rodi.media import check_video_output

    check_video_output(output)  # before the model is loaded
    result = load(checkpoint, device).retarget(appearance, pose_video, output,
                                               side_by_side=side_by_side, scale=scale,
                                               progress=not no_progress, rate=fps)
    click.echo(f"wrote {result.path}: {result.frames} frames at {float(result.rate):g} fps "
               f"(appearance from {result.appearance_frames} frame(s))")


@main.command()
@click.option("--checkpoint", "-c", required=True, type=click.Path(dir_okay=False),
              help=_CHECKPOINT_HELP)
@click.option("--appearance", "-a", multiple=True, required=True,
              help="Given twice: the images whose appearance is at the top and at the bottom.")
@click.option("--pose", "-p", multiple=True, required=True,
              help="Given twice: the images whose pose is at the left and at the right.")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False),
              help="Output grid PNG.")
@click.option("--steps", type=click.IntRange(min=2), default=7, show_default=True,
              help="Renders per side of the grid.")
@click.option("--walk", type=click.Path(dir_okay=False), default=None,
              help="Also write a looping walk around the grid's edge: .gif, or .mp4/.mov/.mkv "
                   "(H.264).")
@click.option("--walk-frames", type=click.IntRange(min=1), default=12, show_default=True,
              help="Frames per side of the walk.")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=12, show_default=True,
              help="Frame rate of the walk.")
@click.option("--scale", type=click.IntRange(1, 16), default=2, show_default=True, help=_SCALE_HELP)
@click.option("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
def interpolate(checkpoint, appearance, pose, output, steps, walk, walk_frames, fps, scale, device):
    """Interpolation figure: a grid walking linearly between two appearance codes down the rows and
    two pose codes across the columns; corners are the plain transfers."""
    from rodi.inference import load  # deferred (module docstring)
    from rodi.media import check_video_output

    if len(appearance) != 2 or len(pose) != 2:
        raise click.UsageError(f"give --appearance twice and --pose twice (got {len(appearance)} "
                               f"and {len(pose)})")
    if walk is not None:
        check_video_output(walk)
    model = load(checkpoint, device)
    apps, poses = model.prepare(list(appearance)), model.prepare(list(pose))
    click.echo(f"wrote {model.save_interpolation_grid(apps, poses, output, steps, scale)}")
    if walk is not None:
        click.echo(f"wrote {model.save_walk(apps, poses, walk, walk_frames, fps, scale)}")


@main.command()
@click.option("--checkpoint", "-c", required=True, type=click.Path(dir_okay=False),
              help=_CHECKPOINT_HELP)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 makes the app reachable from other machines.")
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True)
@click.option("--max-upload-mb", type=click.FloatRange(min=0, min_open=True),
              default=ServeLimits.max_file_mb, show_default=True, help="Largest file accepted.")
@click.option("--max-video-frames", type=click.IntRange(min=1),
              default=ServeLimits.max_video_frames, show_default=True,
              help="Longest pose video accepted.")
@click.option("--examples", type=click.IntRange(min=0), default=4, show_default=True,
              help="Example pairs from the checkpoint's data (0: none).")
@click.option("--data-root", type=click.Path(), default=None,
              help="Where the checkpoint's data is on this machine, if not where it was in "
                   "training (data.root).")
@click.option("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
def serve(checkpoint, host, port, max_upload_mb, max_video_frames, examples, data_root, device):
    """A demo in the browser (Gradio): transfer between two images with interpolation sliders, and
    retargeting to a pose video. Serves until Ctrl-C."""
    # deferred (module docstring; gradio takes seconds more)
    from rodi.distributed import resolve_device
    from rodi.serve import serve as run_server

    run_server(checkpoint, host, port, resolve_device(device),
               ServeLimits(max_upload_mb, max_video_frames), examples, data_root)


@main.command()
@click.option("--checkpoint", "-c", required=True, type=click.Path(dir_okay=False),
              help="A rodi checkpoint (.pt).")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False),
              help="Output .safetensors file.")
@click.option("--half", is_flag=True, help="Store the weights as float16 (half the size).")
def export(checkpoint, output, half):
    """Write the encoders and decoder of a checkpoint as safetensors (config in its metadata), for
    `rodi transfer` and sharing: no critics, optimisers or pickled code."""
    from rodi.inference import export_model  # deferred (module docstring)

    if not output.endswith(".safetensors"):
        raise click.UsageError(f"--output {output!r} must end in .safetensors")
    click.echo(f"wrote {export_model(checkpoint, output, half)}")


@main.command()
@click.option("--checkpoint", "-c", required=True, type=click.Path(dir_okay=False),
              help="A rodi checkpoint.")
@click.option("--data-root", type=click.Path(), default=None,
              help="Where the run's data is on this machine, if not where it was in training "
                   "(data.root).")
@click.option("--num-triplets", type=int, default=None,
              help=f"Default: the config's data.num_triplets ({DataConfig.num_triplets}).")
@click.option("--output", "-o", type=click.Path(file_okay=False), default=None,
              help="Report folder (default: reports/step-NNNNNNN in the run folder).")
@click.option("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
def evaluate(checkpoint, data_root, num_triplets, output, device):
    """Score a checkpoint on held-out data and write its report: metrics.json and a self-contained
    report.html (transfer error, SSIM/PSNR, pose accuracy and appearance retention with ceilings;
    on user data FOMM's protocol and cross-identity appearance distances beside their floors;
    leakage probes, transfer matrix, interpolation, training curves)."""
    from rodi.distributed import resolve_device  # deferred (module docstring)

    _evaluate_and_report(checkpoint, data_root, num_triplets, resolve_device(device), output)


def _evaluate_and_report(checkpoint, data_root, num_triplets, device, report_dir) -> Path:
    """Evaluate, print the table and write the report (default: RUN/reports/step-NNNNNNN)."""
    # deferred (module docstring)
    from rodi.data.errors import DataError
    from rodi.evaluation.report import evaluate_checkpoint, format_table
    from rodi.inference import is_shipped
    from rodi.training.state import CheckpointError, read_checkpoint

    if is_shipped(checkpoint):
        raise CheckpointError(f"{checkpoint} is a shipped model (an export): `rodi transfer`, "
                              "`retarget`, `interpolate` and `serve` read it; evaluating needs a "
                              "run's .pt checkpoint")
    # a missing or foreign file fails here, before any work
    step = read_checkpoint(checkpoint)["step"]
    if report_dir is None:
        report_dir = Path(checkpoint).parent.parent / "reports" / f"step-{step:07d}"
    Path(report_dir).mkdir(parents=True, exist_ok=True)
    if not os.access(report_dir, os.W_OK):  # fail now, not after minutes of evaluation
        raise OSError(errno.EACCES, "cannot write the report folder", str(report_dir))
    click.echo("evaluating: held-out transfers, judges of pose and appearance where renders are "
               "exact (shipped for the built-in sources, else trained once and cached), FOMM's "
               "protocol and an appearance judge (trained once per dataset, cached) on user data, "
               "leakage probes where there are labels, post-hoc MI (a few minutes on a CPU) ...")
    try:
        metrics = evaluate_checkpoint(checkpoint, data_root, num_triplets, device, report_dir)
    except DataError as err:
        if data_root is not None:
            raise
        raise DataError(f"{err} (the run's data.root; give --data-root if the data is elsewhere "
                        "now)") from None
    click.echo(format_table(metrics))
    click.echo(f"wrote {Path(report_dir) / 'report.html'} and metrics.json beside it")
    return Path(report_dir)


@main.command()
@click.argument("data", type=click.Choice(["mocap", "sprites", "flare"]))
@click.argument("overrides", nargs=-1)
@click.option("--data-root", type=click.Path(), default=None,
              help="Sets data.root (e.g. the folder of LPC layer sheets).")
@click.option("--output-dir", "-o", type=click.Path(file_okay=False), required=True,
              help="Where the judge file goes (the package's src/rodi/assets/judges to ship it).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def judge(data, overrides, data_root, output_dir, no_progress):
    """Train (or take from the cache) the judge of a built-in source and write it as a shipped
    safetensors file with its fingerprint, recipe, ceilings, licence and credit. OVERRIDES
    (data.*, evaluation.judge_*) change what it is made for; `rodi evaluate` uses a shipped judge
    only where its fingerprint matches."""
    from rodi.data.sources import open_source  # deferred (module docstring)
    from rodi.evaluation.judges import ship_judge

    cfg = load_config(None, _overrides(overrides, data_root, data))
    source = open_source(cfg.data, cfg.model.image_size, progress=not no_progress)
    cache = Path(cfg.data.cache_dir) / "judges" if cfg.data.cache_dir else None
    path, ceilings = ship_judge(source, cfg.evaluation.judge_steps, cfg.evaluation.judge_batch_size,
                                cfg.data.num_triplets, cfg.data.triplet_seed, output_dir, cache,
                                not no_progress, seed=cfg.evaluation.judge_seed)
    for group in ("pose", "appearance"):
        click.echo(f"{group} ceilings: "
                   + ", ".join(f"{k} {v:.3f}" for k, v in ceilings[group].items()))
    click.echo(f"wrote {path}")


@main.command()
@click.argument("config")
@click.argument("overrides", nargs=-1)
@click.option("--variants", default=",".join(VARIANT_NAMES), show_default=True,
              help="Comma-separated variants to train and compare.")
@click.option("--budget", default="10m", show_default=True,
              help="Per variant: wall clock (90s, 10m, 1h) or steps (5000steps).")
@click.option("--out-dir", default="runs/benchmark", show_default=True, help="Output folder.")
@click.option("--data", "data", default=None, help=_DATA_HELP)
@click.option("--data-root", type=click.Path(), default=None,
              help="Sets data.root (e.g. the folder of LPC layer sheets).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bars.")
def benchmark(config, overrides, variants, budget, out_dir, data, data_root, no_progress):
    """Train every variant with the same data, networks, seed and budget; compare them in one
    folder (table, violin plot, transfer matrices, rodi's gamma/lambda/I_T curves). Reruns
    resume."""
    from rodi.evaluation.benchmark import run_benchmark  # deferred (module docstring)

    cfg = load_config(config, _overrides(overrides, data_root, data))
    out = run_benchmark(cfg, [v.strip() for v in variants.split(",") if v.strip()], budget, out_dir,
                        progress=not no_progress)
    click.echo((out / "results.md").read_text())
    click.echo(f"outputs: {out.resolve()}")


@main.command()
@click.option("--data", "data", default="mocap", show_default=True, help=_DATA_HELP)
@click.option("--data-root", type=click.Path(), default=None,
              help="Sprites: folder of LPC layer sheets (default: $RODI_SPRITES_ROOT, the user "
                   "cache, or a download).")
@click.option("--out-dir", default=None,
              help="Output folder (default: the demo config's train.out_dir, runs/demo).")
@click.option("--minutes", type=float, default=None,
              help="Training budget (default: the demo config's train.max_minutes).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def demo(data, data_root, out_dir, minutes, no_progress):
    """Train `rodi` for about 10 minutes (default: the mocap humanoid, which needs nothing but
    pip), evaluate it, and write everything into one folder."""
    # deferred (module docstring)
    from rodi.evaluation.validation import validation
    from rodi.training.loop import checkpoint_path, train as run_training

    if data_root is not None and data == "mocap":
        data = "sprites"  # --data-root only makes sense for the sheets
    # the Sprites sheets keep the authors' objective (sprites-demo.yaml says why)
    name = "sprites-demo" if data == "sprites" else "demo"
    started = time.perf_counter()
    out_dir = out_dir or load_config(name).train.out_dir
    overrides = _overrides((f"train.out_dir={out_dir}",), data_root, data)
    if minutes is not None:
        overrides.append(f"train.max_minutes={minutes}")
    cfg = load_config(name, overrides)
    # the data's set-up (rendering the humanoid, loading the sheets) takes a while before the bar
    click.echo(f"rodi demo: preparing {cfg.data.source} data, then training the '{name}' config "
               f"for {cfg.train.max_minutes:g} min into {out_dir}")
    run_dir = run_training(cfg, resume=checkpoint_path(out_dir).exists(), progress=not no_progress,
                           validate=validation(cfg))
    trained = time.perf_counter() - started  # this call's: data, set-up and training steps
    report = _evaluate_and_report(checkpoint_path(run_dir), cfg.data.root, None, None, None)
    metrics = json.loads((report / "metrics.json").read_text())
    stages = metrics.get("evaluation_seconds", {})
    total = time.perf_counter() - started
    # a resumed run's earlier sessions are not this call's
    steps_seconds = min(trained, metrics["train_seconds"])
    click.echo(f"time: {total / 60:.1f} min in all: data and set-up "
               f"{trained - steps_seconds:.0f} s, training {steps_seconds:.0f} s, evaluation "
               f"{total - trained:.0f} s (" +
               ", ".join(f"{k} {v:.0f} s" for k, v in stages.items()) + ")")
    click.echo(f"outputs (config, checkpoints, transfer matrices, scalars; report in "
               f"{report.relative_to(run_dir)}): {run_dir.resolve()}")


@main.group()
def data():
    """Look at data before training on it."""


@data.command("inspect")
@click.argument("source_or_path")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default="data-inspect.png",
              show_default=True, help="Contact sheet PNG of sample training pairs.")
@click.option("--pairs", type=int, default=8, show_default=True, help="Pairs on the contact sheet.")
@click.option("--image-size", type=int, default=ModelConfig.image_size, show_default=True,
              help="Side of the images in pixels.")
@click.option("--data-root", type=click.Path(), default=None,
              help="Sets data.root (e.g. the folder of LPC layer sheets).")
@click.argument("overrides", nargs=-1)
def inspect(source_or_path, output, pairs, image_size, data_root, overrides):
    """Count identities, images and skipped files of SOURCE_OR_PATH ('mocap', 'sprites' or a path)
    and write a contact sheet of the pairs the model will see. OVERRIDES are data.* key=value
    pairs."""
    # deferred (module docstring)
    from rodi.data.inspect import inspect_source
    from rodi.data.sources import open_source

    cfg = load_config(None, _overrides(overrides, data_root, source_or_path)
                      + [f"model.image_size={image_size}"])
    source = open_source(cfg.data, cfg.model.image_size)
    summary = inspect_source(source, output, pairs=pairs)
    for key, value in summary.items():
        if isinstance(value, list) and len(value) > 5:
            value = value[:5] + [f"... {len(value) - 5} more"]
        click.echo(f"{key}: {value}")
    click.echo(f"wrote {output}")


@data.command("tracks")
@click.argument("videos", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False),
              help="The identity folder to write (new, or an empty folder).")
@click.option("--detector", type=click.Choice(TRACK_DETECTORS), default=TrackSettings.detector,
              show_default=True,
              help="background: moving blobs of a static camera (MOG2); hog: OpenCV's HOG people "
                   "detector (any camera; about 15 times slower on a 768 x 576 video).")
@click.option("--size", type=click.IntRange(min=1), default=TrackSettings.size, show_default=True,
              help="Side of the square crops in pixels.")
@click.option("--margin", type=click.FloatRange(min=0), default=TrackSettings.margin,
              show_default=True, help="Added on each side of a box, as a share of its longer side.")
@click.option("--fit", type=click.Choice(TRACK_FITS), default=TrackSettings.fit,
              show_default=True,
              help="pad: the box and its margin, a plain colour beside them; square: the scene "
                   "around the box (with whoever walks beside).")
@click.option("--min-frames", type=click.IntRange(min=1), default=TrackSettings.min_frames,
              show_default=True, help="Drop tracks with fewer detections.")
@click.option("--min-height", type=click.IntRange(min=1), default=TrackSettings.min_height,
              show_default=True, help="Drop tracks whose median box is lower (video pixels).")
@click.option("--max-aspect", type=click.FloatRange(min=0, min_open=True),
              default=TrackSettings.max_aspect, show_default=True,
              help="Drop tracks whose median box is wider than this share of its height (two "
                   "people side by side).")
@click.option("--min-travel", type=click.FloatRange(min=0), default=TrackSettings.min_travel,
              show_default=True,
              help="Drop tracks that never move this many box heights (ghosts, static things).")
@click.option("--cut-threshold", type=click.FloatRange(0, 1, min_open=True),
              default=TrackSettings.cut_threshold, show_default=True,
              help="Change of the colour histogram between two frames that makes a shot cut.")
@click.option("--test-fraction", type=click.FloatRange(0, 1, max_open=True),
              default=TrackSettings.test_fraction, show_default=True,
              help="Held out as test: the last videos given, or the last part of one video's "
                   "time.")
@click.option("--validation-fraction", type=click.FloatRange(0, 1, max_open=True),
              default=TrackSettings.validation_fraction, show_default=True,
              help="Held out as validation, just before the test part.")
@click.option("--sheet", type=click.Path(dir_okay=False), default=None,
              help="Contact sheet PNG (default: the output folder's name with .png, beside it).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def tracks(videos, output, detector, size, margin, fit, min_frames, min_height, max_aspect,
           min_travel, cut_threshold, test_fraction, validation_fraction, sheet, no_progress):
    """Cut footage of people into an identity folder: find and track every person in VIDEOS,
    write each track's square crops as OUTPUT/<identity>/<frame>.png (the folder source), with
    manifest.csv, index.csv (identity,path,split), summary.json and a contact sheet. Needs
    `pip install 'rodi[tracks]'`."""
    from rodi.data.tracks import cut_tracks  # deferred (module docstring)

    settings = TrackSettings(detector=detector, size=size, margin=margin, fit=fit,
                             min_frames=min_frames,
                             min_height=min_height, max_aspect=max_aspect, min_travel=min_travel,
                             cut_threshold=cut_threshold, test_fraction=test_fraction,
                             validation_fraction=validation_fraction)
    summary = cut_tracks(videos, output, settings, sheet, progress=not no_progress)
    for video in summary["videos"]:
        click.echo(f"{video['path']}: {video['frames']} frames, {len(video['cuts'])} shot "
                   f"cut(s), {video['detections']} detections")
    kept = summary["identities_per_split"]
    dropped = summary["dropped_per_reason"]
    click.echo(f"tracks: {summary['tracks']}; identities kept: {sum(kept.values())} ("
               + ", ".join(f"{n} {split}" for split, n in kept.items()) + "); dropped: "
               + ", ".join(f"{n} {reason}" for reason, n in dropped.items()))
    click.echo(f"wrote {output} (crops, manifest.csv, index.csv, summary.json) and "
               f"{summary['sheet']}")


if __name__ == "__main__":
    main()
