"""``rodi serve``: try a trained model in the browser (a Gradio app).

Three things on one page, each going through :class:`rodi.inference.Model`, so uploads are
prepared exactly as ``rodi transfer`` and ``rodi retarget`` prepare files:

- **Transfer**: an appearance image and a pose image (uploaded, or picked from examples of the
  checkpoint's own data) give the appearance of the first in the pose of the second; two sliders
  then walk linearly between the codes of the two images (the paper's interpolation figure, one
  cell at a time).
- **Video**: an appearance image and a pose video give the retargeted video (H.264 MP4), optionally
  side by side with the inputs.

Uploads are read by rodi, not by Gradio's own image handling, so a file that is not an image or a
video is refused with rodi's one-line message; uploads are limited in size and videos in length.
The server binds to the loopback address unless told otherwise.
"""

from __future__ import annotations

import os
import tempfile
import uuid
import warnings
from pathlib import Path

import gradio as gr
import numpy as np
import torch

from rodi.config import ServeLimits
from rodi.data.images import ImageReadError
from rodi.data.sources import DataError
from rodi.data.video import VideoReadError, VideoWarning
from rodi.inference import Model, load
from rodi.viz import save_png, to_uint8

# Renders are the model's size (64 pixels for the paper's setup): shown larger, with sharp pixels.
_CSS = (".rodi-render img {image-rendering: pixelated; width: 100%; height: 100%; "
        "object-fit: contain;}")


def dataset_examples(model: Model, folder: Path, n: int = 4,
                     data_root: str | None = None) -> list[list[str]]:
    """``n`` (appearance, pose) pairs of PNG files in ``folder``, from the model's own data
    (:meth:`rodi.inference.Model.examples`: held-out identities where there are any): the inputs
    the model knows best. An empty list, with a warning, when that data cannot be opened here.

    Args:
        data_root: where the checkpoint's data is on this machine, if not at its ``data.root``.
    """
    if n <= 0:
        return []
    try:
        appearance, pose = model.examples(n, data_root)
    except DataError as err:
        warnings.warn(f"no examples: the checkpoint's data ({model.config.data.source}) cannot be "
                      f"opened here ({err}); give --data-root where it is", stacklevel=2)
        return []
    pairs = []
    for i, (a, p) in enumerate(zip(appearance, pose)):
        pairs.append([str(save_png(np.asarray(a), folder / f"appearance-{i}.png")),
                      str(save_png(np.asarray(p), folder / f"pose-{i}.png"))])
    return pairs


class Handlers:
    """What the app's events call: Gradio's raw upload payloads (``{"path", "orig_name", ...}``)
    in, arrays and files out, rodi's errors turned into messages shown in the page.

    Args:
        model: the model and its preprocessing.
        limits: see :class:`ServeLimits`.
        outputs: folder for the videos made.
    """

    def __init__(self, model: Model, limits: ServeLimits, outputs: Path):
        self.model = model
        self.limits = limits
        self.outputs = outputs

    @staticmethod
    def _path(payload: dict | None, what: str) -> Path:
        if not payload or not payload.get("path"):
            raise gr.Error(f"Upload or pick {what} first.", print_exception=False)
        return Path(payload["path"])

    @staticmethod
    def _refuse(err: ImageReadError | VideoReadError, *payloads: dict) -> Exception:
        """A page message naming the file as the user called it, not Gradio's cached copy."""
        names = {Path(p["path"]): p.get("orig_name") for p in payloads}
        name = names.get(err.path) or err.path.name
        # Decoders quote the path they were given: the server's cache, which is no business of the
        # page.
        return gr.Error(f"{name}: {err.reason.replace(str(err.path), name)}", print_exception=False)

    def _images(self, *payloads_and_names: tuple[dict | None, str]) -> torch.Tensor:
        paths = [self._path(payload, what) for payload, what in payloads_and_names]
        try:
            return self.model.prepare(paths)
        except ImageReadError as err:
            raise self._refuse(err, *(payload for payload, _ in payloads_and_names)) from None

    def transfer(self, appearance: dict | None, pose: dict | None) -> np.ndarray:
        """The appearance image in the pose image's pose: (S, S, 3) uint8."""
        a, p = self._images((appearance, "an appearance image"), (pose, "a pose image")).split(1)
        return to_uint8(self.model.network.transfer(a, p))[0]

    def mix(self, appearance: dict | None, pose: dict | None, appearance_weight: float,
            pose_weight: float) -> np.ndarray:
        """The render at one point of the interpolation between the two images' codes: appearance
        and pose each from the appearance image's (0) to the pose image's (1): (S, S, 3) uint8."""
        both = self._images((appearance, "an appearance image"), (pose, "a pose image"))
        weights = torch.tensor([[appearance_weight, pose_weight]])
        return to_uint8(self.model.interpolation(both, both, weights))[0]

    def retarget(self, appearance: dict | None, video: dict | None, side_by_side: bool) -> str:
        """The appearance image in the pose of every frame of the video: an H.264 MP4's path.

        rodi's warnings about the video (:class:`~rodi.data.video.VideoWarning`: fewer frames
        decode than it declares, no frame rate) are shown in the page (``gr.Warning``), naming
        the file as the user called it.

        Raises:
            gr.Error: no appearance or video given, or either is refused: unreadable, a still image
                where the video belongs, or over the length limit (rodi's one-line message).
        """
        app_path, video_path = (self._path(appearance, "an appearance image"),
                                self._path(video, "a pose video"))
        output = self.outputs / f"retargeted-{uuid.uuid4().hex[:12]}.mp4"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", VideoWarning)
            try:
                self.model.retarget(app_path, video_path, output, side_by_side=side_by_side,
                                    scale=4, progress=True,
                                    max_frames=self.limits.max_video_frames)
            except (ImageReadError, VideoReadError) as err:
                # StillImageError and InputLimitError too
                raise self._refuse(err, appearance, video) from None
        shown = []
        for w in caught:
            if not issubclass(w.category, VideoWarning):
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
                continue
            message = str(w.message)
            # the server's cached copies are named as uploaded
            for payload in (appearance, video):
                name = payload.get("orig_name") or Path(payload["path"]).name
                message = (message.replace(str(Path(payload["path"])), name)
                           .replace(payload["path"], name))
            if message not in shown:
                shown.append(message)
                gr.Warning(message)
        return str(output)


def build_app(model: Model, limits: ServeLimits, outputs: Path, examples: list[list[str]] = ()):
    """The Gradio app (not launched). Elements the browser test finds have ``elem_id`` s:
    ``appearance``, ``pose``, ``transfer``, ``result``, ``mix-result``, ``video-appearance``,
    ``pose-video``, ``retarget``, ``video-result``.

    Args:
        examples: (appearance, pose) image files offered as inputs (the appearances for videos
            too).
    """
    handlers = Handlers(model, limits, outputs)
    s = model.size
    shown = dict(format="png", height=256, elem_classes="rodi-render")
    image = dict(type="filepath", image_mode=None, sources=["upload", "clipboard"], **shown)
    with gr.Blocks(title="rodi", analytics_enabled=False) as app:
        gr.Markdown(
            "# rodi: appearance and pose\n"
            "Unsupervised disentangling of appearance and pose (Esser, Haux & Ommer, ICCV 2019). "
            "Inputs are prepared as the model's training data: padded to a square and resized to "
            f"{s} x {s} pixels. Images or videos only, up to {limits.max_file_mb:g} MB; videos up "
            f"to {limits.max_video_frames} frames.")
        with gr.Tab("Transfer"):
            with gr.Row():
                appearance = gr.Image(label="Appearance", elem_id="appearance", **image)
                pose = gr.Image(label="Pose", elem_id="pose", **image)
                result = gr.Image(label="Appearance in the pose", elem_id="result",
                                  interactive=False, **shown)
            transfer = gr.Button("Transfer", variant="primary", elem_id="transfer")
            if examples:
                gr.Examples(examples=list(examples), inputs=[appearance, pose],
                            label="Examples from the checkpoint's data (appearance, pose)")
            gr.Markdown("**Interpolation**: walk linearly between the codes of the two images "
                        "(0: the appearance image's, 1: the pose image's).")
            with gr.Row():
                with gr.Column():
                    appearance_weight = gr.Slider(0, 1, value=0, step=0.05, label="Appearance code",
                                                  elem_id="appearance-weight")
                    pose_weight = gr.Slider(0, 1, value=1, step=0.05, label="Pose code",
                                            elem_id="pose-weight")
                mixed = gr.Image(label="Interpolated", elem_id="mix-result", interactive=False,
                                 **shown)
        with gr.Tab("Video"):
            with gr.Row():
                video_appearance = gr.Image(label="Appearance", elem_id="video-appearance", **image)
                pose_video = gr.Video(label="Pose video", elem_id="pose-video", sources=["upload"])
                video_result = gr.Video(label="Retargeted", elem_id="video-result",
                                        interactive=False)
            side_by_side = gr.Checkbox(label="Side by side: pose | appearance | result")
            retarget = gr.Button("Retarget", variant="primary", elem_id="retarget")
            if examples:
                gr.Examples(examples=[[a] for a, _ in examples], inputs=[video_appearance],
                            label="Appearances from the checkpoint's data")
        # Gradio's own preprocessing would decode images itself (and convert them, ignoring the
        # training background under transparency); rodi reads the uploaded files instead.
        transfer.click(handlers.transfer, [appearance, pose], result, preprocess=False).success(
            handlers.mix, [appearance, pose, appearance_weight, pose_weight], mixed,
            preprocess=False)
        for slider in (appearance_weight, pose_weight):
            slider.release(handlers.mix, [appearance, pose, appearance_weight, pose_weight], mixed,
                           preprocess=False)
        retarget.click(lambda a, v, side, progress=gr.Progress(track_tqdm=True):
                       handlers.retarget(a, v, side),
                       [video_appearance, pose_video, side_by_side], video_result, preprocess=False)
    return app


def serve(checkpoint: str | os.PathLike, host: str = "127.0.0.1", port: int = 7860,
          device: torch.device | None = None, limits: ServeLimits = ServeLimits(),
          examples: int = 4, data_root: str | None = None) -> None:
    """Load a model (a checkpoint, an export or a shipped model's name, with
    :func:`rodi.inference.load`) and serve the app until interrupted.

    Args:
        host: address to bind; the loopback address keeps the app on this machine.
        examples: example pairs from the checkpoint's data (0 for none).
        data_root: where the checkpoint's data is, if not at its ``data.root``.

    Raises:
        CheckpointError: the checkpoint cannot be read.
    """
    model = load(checkpoint, device or "auto")
    with tempfile.TemporaryDirectory(prefix="rodi-serve-") as work:
        work = Path(work)
        app = build_app(model, limits, work, dataset_examples(model, work, examples, data_root))
        app.queue(default_concurrency_limit=1)  # one model, and CPU renders compete for the cores
        app.launch(server_name=host, server_port=port,
                   max_file_size=int(limits.max_file_mb * 1024 * 1024), allowed_paths=[str(work)],
                   ssr_mode=False, enable_monitoring=False, share=False, show_error=False,
                   inbrowser=False, css=_CSS)
