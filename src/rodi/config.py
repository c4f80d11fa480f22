"""Typed configuration: defaults in dataclasses, YAML files and ``key=value`` overrides merged on
top, validated before anything is built (OmegaConf structured configs).

The defaults are the authors' 64x64 Sprites setup (docs/method.md section 5).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Optional

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from rodi.variants import DEFAULT as DEFAULT_VARIANT, NAMES as VARIANTS


class ConfigError(ValueError):
    """A configuration file or override is malformed, names an unknown key, or holds an
    impossible value."""


UPSAMPLING = ("transpose", "resize")
APPEARANCE_CODES = ("spatial", "global", "attention", "vector", "cross")
SOURCES = ("sprites", "mocap", "flare", "folder", "videos", "index")
# Sprites protocols (rodi.data.sprites): the paper's 64x64 Sprites, or with every action's frames
PROTOCOLS = ("sprites", "sprites-full")


@dataclass
class DataConfig:
    source: str = "sprites"  # one of SOURCES
    protocol: str = "sprites"  # sprites: sprites | sprites-full
    # sprites: folder of layer sheets (None: $RODI_SPRITES_ROOT, cache, download);
    # flare: the extracted flare-game package or checkout (None: $RODI_FLARE_ROOT, cache, apt-get);
    # folder/videos: the folder; index: the CSV file; mocap: unused
    root: Optional[str] = None
    num_triplets: int = 8000  # held-out triplets (or same-identity pairs) evaluated
    triplet_seed: int = 0
    cache_dir: Optional[str] = None  # renders and decoded frames; None: the user cache
    frame_stride: Optional[int] = None  # videos: every n-th frame (default 1); mocap: default 3
    time_window: Optional[list] = None  # videos: [start_s, end_s]
    yaws: int = 8  # mocap: camera directions around the body
    flip: bool = False  # folder/videos/index: flip each image of a pair independently at random
    fit: str = "pad"  # folder/videos/index: pad | crop to square
    background: list = field(default_factory=lambda: [0, 0, 0])  # RGB 0..255 under transparency
    validation_fraction: float = 0.1  # folder/videos/index: identities held out
    split_seed: int = 0


@dataclass
class ModelConfig:
    image_size: int = 64
    code_channels: int = 16
    code_size: int = 4
    channels: int = 16
    max_channels: int = 128
    blocks: int = 1
    # decoder up-sampling: transpose (4x4 stride-2 ConvTranspose) | resize (nearest x2, then 3x3
    # conv)
    upsample: str = "transpose"
    # appearance code: spatial (a (C, h, w) map joined to the pose map, the authors' 64x64 setup) |
    # global (the map averaged over positions, one vector per image, which also scales and shifts
    # the decoder's features at every resolution) | attention (as global, the mean weighted by a
    # softmax over positions that the encoder learns) | vector (C * h * w numbers, each a mean over
    # positions of its own map, laid out as a (C, h, w) code with no spatial meaning; the whole
    # code drives the FiLM layers) | cross (the map itself; the decoder reads its mean as global
    # does, and the map through cross-attention from the pose features; docs/method.md section 9)
    appearance: str = "spatial"
    # residual blocks of the decoder at the image's own resolution before a 3x3 RGB head; 0 (the
    # authors') lets the last up-sampling write the pixels from half-resolution features
    output_blocks: int = 0


@dataclass
class ObjectiveConfig:
    variant: str = DEFAULT_VARIANT  # a name of the table in rodi.variants
    gamma: float = 1.0  # initial (rodi) or fixed (variational, adversarial) KL weight
    gamma_max: float = 100.0
    gamma_lr: float = 0.01  # l_gamma
    gamma_bias: float = 0.01  # b_gamma
    # adapt gamma while the constraint is still off (the authors' code does)
    gamma_in_warmup: bool = True
    epsilon: float = 0.1  # MI bound in nats
    # reconstruction term: sse (summed squared pixel error, the authors') | calibrated (Gaussian NLL
    # with the variance at the batch MSE, at least min_variance) | laplace (Laplace NLL with the
    # scale at the batch's mean absolute error, at least min_variance; docs/method.md section 9)
    reconstruction: str = "sse"
    min_variance: float = 1.0e-4
    # what the critics score: sample (of q(pi | x), the authors') | mean (what transfer uses)
    critic_code: str = "sample"
    # what the critics compare the pose code with: code (the appearance code alpha(x'), the
    # authors') | image (the appearance image x' itself, through each critic's own encoder, so an
    # appearance encoder that drops a factor cannot hide that factor's leak; docs/method.md
    # section 9)
    critic_appearance: str = "code"
    # random colour changes of the pose encoder's input only (not of the reconstruction target), so
    # the pose code cannot carry colours: 0 off (the authors'), 1 full strength (docs/method.md
    # section 9)
    pose_colour_jitter: float = 0.0
    # the kind of colour change: affine (channels permuted, gain and offset each) | map (a random
    # smooth map of the colour cube, which a few known colours cannot undo)
    pose_colour_change: str = "affine"
    # a random zoom of the pose encoder's input about the image centre, by a factor in
    # [1 / (1 + s), 1 + s] (0 off, the authors'), so the pose code cannot give the body's size,
    # which the appearance image gives (docs/method.md section 9)
    pose_zoom: float = 0.0
    mu: float = 0.1  # augmented-Lagrangian penalty weight
    lambda_init: float = 0.0
    warmup_steps: int = 1000
    ema_decay: float = 0.99
    critic_width: int = 512
    critic_blocks: int = 1
    drnet_similarity: float = 1.0  # DRNET: weight of the appearance-code MSE, relative to pixel MSE
    drnet_adversarial: float = 0.1  # DRNET: weight of confusing the scene discriminator


@dataclass
class OptimConfig:
    lr: float = 2e-4
    betas: list = field(default_factory=lambda: [0.5, 0.9])
    critic_lr_factor: float = 2.0
    schedule: str = "constant"  # constant | linear (to 0 at the end of the step or time budget)


@dataclass
class TrainConfig:
    batch_size: int = 32
    max_steps: int = 100_000
    max_minutes: Optional[float] = None  # wall-clock budget of training steps; None: steps only
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: Optional[int] = None  # torch intra-op threads on CPU; None: torch's default
    # 32 | bf16 (autocast: convolutions and matrix products in bf16, losses in float32) | auto
    # (bf16 where the device multiplies bf16 in hardware: CUDA, or a CPU with AMX; else 32)
    precision: str = "32"
    # torch.compile the encoders and decoder (opt-in; a minute of compiling first)
    compile: bool = False
    # an exponential moving average of the networks' weights, updated after every step with this
    # decay (0: none); where there is one, validation, evaluation, transfers and exports use it
    ema_decay: float = 0.0
    out_dir: str = "runs/sprites-rodi"
    log_every: int = 25
    image_every: int = 500
    checkpoint_every: int = 500
    keep_checkpoints: int = 3  # step-XXXXXXX.pt files kept besides last.pt and best.pt
    # held-out triplets (or pairs) scored at each checkpoint for best.pt
    validation_items: int = 256
    matrix_size: int = 6


@dataclass
class EvaluationConfig:
    probes: bool = True  # leakage probes and post-hoc MI, where the data has labels
    probe_train_codes: int = 5000  # codes of training characters the probes learn from
    probe_test_codes: int = 2000  # codes of held-out characters they are scored on
    probe_steps: int = 300
    mi_pairs: int = 4000  # held-out pairs for the post-hoc MI critic (half to train, half to score)
    mi_steps: int = 1500
    # pose accuracy and appearance retention of transfers, where renders are exact
    judges: bool = True
    judge_steps: int = 6000  # training steps of the judge (once per dataset, then cached)
    judge_batch_size: int = 32
    # seeds of the evaluation's random draws (rodi.evaluation.report.evaluate_state, write_report)
    # draws the training characters, poses and samples the probes learn from
    probe_train_seed: int = 11
    probe_test_seed: int = 12  # draws the held-out characters, poses and samples they are scored on
    probe_seed: int = 0  # initialises the probes
    mi_pairs_seed: int = 13  # draws the held-out pairs (and pose samples) of the post-hoc MI
    mi_seed: int = 0  # initialises and batches the post-hoc MI critic
    # the judge's training; part of its fingerprint: another seed cannot use the shipped judges
    judge_seed: int = 0
    # the held-out inputs of the report's transfer matrix and interpolation figures
    figure_seed: int = 7
    # the validation split's triplets (or pairs) scored at each checkpoint for best.pt
    validation_seed: int = 99
    # user data with ordered frames (folder, videos, index; docs/method.md section 10): FOMM's
    # protocol (first frame's appearance, frame t's pose, scored against frame t) and the
    # appearance judge, an embedding trained once per dataset on the training identities, cached
    fomm: bool = True
    appearance_judge: bool = True
    appearance_judge_steps: int = 400  # about 20 s on one CPU core at 64 px
    appearance_judge_batch_size: int = 32  # 8 identities x 4 images
    appearance_judge_seed: int = 0  # part of the judge's fingerprint, like judge_seed
    appearance_pairs: int = 1000  # held-out cross-identity transfers the judge scores
    appearance_pairs_seed: int = 14  # draws them
    # the keypoint judge of user data (rodi.evaluation.keypoints, the extra rodi[keypoints]):
    # AKD/MKR of cross-identity transfers against their pose frames. None: where the extra is
    # installed (a warning says how to get it otherwise); true: required; false: off
    keypoints: Optional[bool] = None
    keypoint_pairs: int = 500  # drawn as the appearance judge's pairs, with appearance_pairs_seed


@dataclass(frozen=True)
class ServeLimits:
    """What ``rodi serve`` accepts (not part of a run's config; its command-line defaults).

    Attributes:
        max_file_mb: largest upload in megabytes (checked by Gradio before the upload is stored).
        max_video_frames: longest pose video, in frames.
    """

    max_file_mb: float = 20.0
    max_video_frames: int = 300


TRACK_DETECTORS = ("background", "hog")
TRACK_FITS = ("pad", "square")


@dataclass(frozen=True)
class TrackSettings:
    """What ``rodi data tracks`` does (:func:`rodi.data.tracks.cut_tracks`; not part of a run's
    config; its command-line defaults). Pixels are those of the source video, seconds those of
    its time stamps.

    Attributes:
        detector: ``background`` (MOG2 background subtraction: static cameras) or ``hog``.
        size: side of the written crops in pixels.
        margin: added on each side of the box, as a share of the box's longer side, before the
            crop is made square (0.1: a box 100 px high gives a crop 120 px high).
        fit: ``pad``: the crop shows the box and its margin, and ``background`` beside them, as
            rodi pads images to a square; ``square``: the whole square of the scene around the
            box, where people walking together show up beside each other (see
            :func:`rodi.data.tracks.square_crop`).
        min_frames: a track with fewer detections is dropped as ``short``.
        min_height: a track whose median box height is below this many pixels is dropped as
            ``small``.
        min_travel: a track whose box centre never gets this many median box heights away from
            where it started is dropped as ``still``: the ghost a background model leaves where
            someone stood, and a static thing that the HOG detector takes for a person, stay put
            (0.00 and 0.05 on ``vtest.avi``). A person crossing the picture gets further within a
            second, but one walking towards or away from the camera may not: there 10 short tracks
            of one person (0.15-0.46, one showing only legs) were dropped too, beside 2 of two
            people one behind the other, which a lower value would keep.
        max_aspect: a track whose median box width is above this share of its height is dropped
            as ``wide``: two people walking side by side, seen as one blob. One walking person's
            median is 0.3-0.45 (measured on ``vtest.avi``), a pair's above 0.55.
        max_gap_s: a track that has no detection for this long ends; shorter gaps are bridged by
            the Kalman filter (the frames in the gap get no crop).
        min_iou: the least IoU between a track's predicted box and a detection that links them.
        max_resize: a detection links to a track only if its width and height are within this
            factor of the predicted box's (see :func:`box_distance`).
        max_colour_change: a track is cut where the colours in its box change by more than this
            share of their histogram (total variation distance, 0-1), and a detection or two
            that differ so from those around them are left out; within one person's track on
            ``vtest.avi`` the change stays below 0.25, where the tracker went from one person to
            another it is 0.3-0.6 (see :func:`rodi.data.tracks.split_by_colour`).
        trim_s: each track loses its detections of its first and last this many seconds: a track
            starts and ends where someone comes out of or goes behind something or someone else,
            where its boxes are least to be trusted (on ``vtest.avi`` most crops of another
            person, or of two, were in a track's last few frames).
        cut_threshold: a shot cut is a change of the colour histogram between consecutive frames
            above this share of its mass (total variation distance, 0-1; see :class:`CutDetector`).
        test_fraction: the share held out as ``test``: of the videos (the last ones given) where
            there are several, else of the footage's time (tracks starting in its last part).
        validation_fraction: the share before the test part held out as ``validation`` (used only
            to choose ``best.pt``), by video or by time in the same way.
        background: RGB (0-255) of the padding where a crop goes past the frame's edge.
    """

    detector: str = "background"
    size: int = 64
    margin: float = 0.1
    fit: str = "pad"
    min_frames: int = 10
    min_height: int = 40
    min_travel: float = 0.5
    max_aspect: float = 0.5
    max_gap_s: float = 1.0
    min_iou: float = 0.3
    max_resize: float = 1.5
    max_colour_change: float = 0.3
    trim_s: float = 0.3
    cut_threshold: float = 0.5
    test_fraction: float = 0.2
    validation_fraction: float = 0.1
    background: tuple[int, int, int] = (0, 0, 0)

    def check(self) -> None:
        """Raise :class:`ConfigError` for a setting out of its range, naming it."""
        problems = []
        if self.fit not in TRACK_FITS:
            problems.append(f"fit {self.fit!r} is not one of {', '.join(TRACK_FITS)}")
        if self.detector not in TRACK_DETECTORS:
            problems.append(f"detector {self.detector!r} is not one of "
                            f"{', '.join(TRACK_DETECTORS)}")
        for name in ("size", "min_frames", "min_height"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be 1 or more, got {getattr(self, name)}")
        for name in ("margin", "min_travel", "max_gap_s", "trim_s"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be 0 or more, got {getattr(self, name)}")
        if self.max_aspect <= 0:
            problems.append(f"max_aspect must be above 0, got {self.max_aspect}")
        if self.max_resize < 1:
            problems.append(f"max_resize must be 1 or more, got {self.max_resize}")
        for name in ("min_iou", "max_colour_change", "cut_threshold"):
            if not 0 < getattr(self, name) <= 1:
                problems.append(f"{name} must be in (0, 1], got {getattr(self, name)}")
        held_out = self.test_fraction + self.validation_fraction
        if self.test_fraction < 0 or self.validation_fraction < 0 or held_out >= 1:
            problems.append("test_fraction and validation_fraction must be 0 or more and add up "
                            f"to less than 1, got {self.test_fraction} and "
                            f"{self.validation_fraction}")
        if problems:
            raise ConfigError("; ".join(problems))


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)


def bundled_configs() -> list[str]:
    """Names of the configs shipped with rodi (usable in place of a path)."""
    return sorted(p.name[:-5] for p in resources.files("rodi.configs").iterdir()
                  if p.name.endswith(".yaml"))


def _resolve_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.is_file():
        return path
    bundled = resources.files("rodi.configs") / f"{name_or_path}.yaml"
    if bundled.is_file():
        return Path(str(bundled))
    raise ConfigError(
        f"config {name_or_path!r} is neither a file nor a bundled config "
        f"(bundled: {', '.join(bundled_configs())})"
    )


def _all_keys(node: Any, prefix: str = "") -> list[str]:
    keys = []
    for k, v in node.items():
        keys.append(prefix + k)
        if isinstance(v, dict):
            keys += _all_keys(v, prefix + k + ".")
    return keys


def _explain(err: OmegaConfBaseException, source: str,
             lines: Optional[dict[str, int]] = None) -> ConfigError:
    """A one-line :class:`ConfigError` for an OmegaConf error; ``lines`` (dotted key -> line of
    the file) puts the line of the offending key after ``source`` where it is known."""
    full_key = getattr(err, "full_key", None)
    line = _key_line(full_key, lines) if full_key and lines else None
    where = source if line is None else f"{source} line {line}"
    if isinstance(err, ConfigKeyError) and full_key:
        valid = _all_keys(OmegaConf.to_container(OmegaConf.structured(Config)))
        close = difflib.get_close_matches(full_key, valid, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return ConfigError(f"{where}: unknown key {full_key!r}{hint}")
    key = f" at {full_key!r}" if full_key else ""
    message = (str(err.msg if getattr(err, "msg", None) else err).splitlines()
               or [type(err).__name__])[0]
    return ConfigError(f"{where}{key}: {message}")


# A config file is a few kilobytes; these bound what reading a hostile one can cost.
MAX_CONFIG_BYTES = 1 << 20
MAX_EXPANDED_VALUES = 10_000  # values of the file with every alias replaced by what it names


def _file_error(shown: str, line: Optional[int], what: str) -> ConfigError:
    where = shown if line is None else f"{shown} line {line}"
    return ConfigError(f"{where}: {' '.join(what.split())}")  # one line, whatever the parts held


class _CheckedComposer(yaml.SafeLoader):
    """PyYAML's pure-Python safe loader, used only to compose the node tree (nothing is
    constructed) and to refuse, while composing, aliases that would make the document explode
    when it is expanded (the "billion laughs") or that point into their own anchor (a cycle).

    Composing is linear in the size of the file, since an alias is one shared node; what explodes
    is the expansion when the tree is turned into Python objects and then OmegaConf nodes, so the
    expanded size is added up (memoised per node) at each alias and the alias that takes it past
    :data:`MAX_EXPANDED_VALUES` is refused by its position.
    """

    def __init__(self, stream: str):
        super().__init__(stream)
        self._expanded = 0
        self._sizes: dict[int, int] = {}
        self._open_anchors: set[str] = set()

    def _size(self, node: yaml.Node) -> int:
        """Values under ``node``, itself included, with aliases expanded."""
        if id(node) not in self._sizes:
            children = node.value if isinstance(node, yaml.SequenceNode) else (
                [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode)
                else [])
            self._sizes[id(node)] = 1 + sum(self._size(child) for child in children)
        return self._sizes[id(node)]

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open_anchors:
                raise yaml.composer.ComposerError(
                    None, None, f"the alias *{event.anchor} is inside the value it names (a cycle)",
                    event.start_mark)
            if event.anchor in self.anchors:
                self._expanded += self._size(self.anchors[event.anchor])
                if self._expanded > MAX_EXPANDED_VALUES:
                    raise yaml.composer.ComposerError(
                        None, None, f"too many aliases: expanded, the file would hold more than "
                                    f"{MAX_EXPANDED_VALUES} values", event.start_mark)
        else:
            self._expanded += 1
        return super().compose_node(parent, index)

    def _compose_collection(self, compose, anchor):
        if anchor is not None:
            self._open_anchors.add(anchor)
        try:
            return compose(anchor)
        finally:
            self._open_anchors.discard(anchor)

    def compose_sequence_node(self, anchor):
        return self._compose_collection(super().compose_sequence_node, anchor)

    def compose_mapping_node(self, anchor):
        return self._compose_collection(super().compose_mapping_node, anchor)


def _key_lines(node: yaml.Node, prefix: str = "",
               lines: Optional[dict[str, int]] = None) -> dict[str, int]:
    """Dotted key (``train.max_steps``, ``optim.betas[1]``) -> 1-based line, from a composed
    tree."""
    lines = {} if lines is None else lines
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                name = f"{prefix}.{key.value}" if prefix else str(key.value)
                lines.setdefault(name, key.start_mark.line + 1)
                _key_lines(value, name, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            lines.setdefault(f"{prefix}[{i}]", value.start_mark.line + 1)
            _key_lines(value, f"{prefix}[{i}]", lines)
    return lines


def _key_line(full_key: str, lines: dict[str, int]) -> Optional[int]:
    """The line of ``full_key`` (``optim.betas[1]``), or of the nearest enclosing key the file
    has."""
    key = str(full_key)
    while key not in lines:
        shorter = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", key)
        if shorter == key:
            return None
        key = shorter
    return lines[key]


def _yaml_error(err: yaml.YAMLError, shown: str, text: str) -> ConfigError:
    """A one-line :class:`ConfigError` for a PyYAML error, with the line it is on."""
    if isinstance(err, yaml.reader.ReaderError):
        line = text[:err.position].count("\n") + 1 if isinstance(err.position, int) else None
        return _file_error(shown, line, f"character #x{err.character:04x} is not allowed in YAML "
                                        f"({err.reason})"
                           if isinstance(err.character, int) else err.reason)
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    line = mark.line + 1 if mark is not None else None
    problem = getattr(err, "problem", None) or (str(err).splitlines() or ["unreadable"])[0]
    unknown_tag = re.match(r"could not determine a constructor for the tag '([^']*)'", problem)
    if unknown_tag:
        tag = unknown_tag.group(1).replace("tag:yaml.org,2002:", "!!")
        return _file_error(shown, line, f"unknown tag {tag}: a config file holds plain values "
                                        "(numbers, strings, lists, mappings)")
    if problem.startswith(("too many aliases", "the alias *")):
        return _file_error(shown, line, problem)
    details = [f"column {mark.column + 1}"] if mark is not None else []
    context, context_mark = getattr(err, "context", None), getattr(err, "context_mark", None)
    if context and context_mark is not None and context_mark.line + 1 != line:
        details.append(f"{context} on line {context_mark.line + 1}")
    return _file_error(shown, line, f"not valid YAML: {problem}"
                       + (f" ({'; '.join(details)})" if details else ""))


def read_config_file(path: str | Path, shown: Optional[str] = None) -> tuple[Any, dict[str, int]]:
    """Read a YAML config file defensively: at most :data:`MAX_CONFIG_BYTES`, UTF-8 only, one
    mapping at the top, aliases that expand to at most :data:`MAX_EXPANDED_VALUES` values.

    Args:
        shown: how the file is named in messages (the path as the user gave it; default ``path``).

    Returns:
        The file as an OmegaConf ``DictConfig`` (None for an empty file), and the 1-based line of
        each dotted key in it (see :func:`_key_lines`).

    Raises:
        ConfigError: one line, ``SHOWN line N: what is wrong`` (without ``line N`` where no line
            applies): unreadable, too large, not UTF-8, a YAML syntax error, an unknown tag, too
            many aliases or a cycle of them, duplicate keys, nesting too deep, or a top level that
            is not a mapping.
    """
    shown = str(path) if shown is None else shown
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise _file_error(shown, None, f"cannot be read ({err.strerror or err})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise _file_error(shown, None, f"larger than {MAX_CONFIG_BYTES // (1 << 20)} MB; a config "
                                       "file is a few kilobytes of YAML")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        bom = (" (it starts with a UTF-16 byte-order mark)"
               if data[:2] in (b"\xff\xfe", b"\xfe\xff") else "")
        raise _file_error(shown, line, f"not UTF-8 text: byte 0x{data[err.start]:02x} at offset "
                                       f"{err.start} of the file{bom}; save it as UTF-8") from None
    try:
        composer = _CheckedComposer(text)
        try:
            root = composer.get_single_node()
        finally:
            composer.dispose()
        if root is None:
            return None, {}
        if not isinstance(root, yaml.MappingNode):
            kind = "a list" if isinstance(root, yaml.SequenceNode) else "a single value"
            raise _file_error(shown, root.start_mark.line + 1,
                              f"the file holds {kind}, not a mapping of sections "
                              f"({', '.join(f'{name}:' for name in Config.__dataclass_fields__)})")
        for key, value in root.value:
            if (getattr(key, "value", None) in Config.__dataclass_fields__
                    and not isinstance(value, yaml.MappingNode)):
                kind = ("empty" if value.tag == "tag:yaml.org,2002:null" else
                        "a list" if isinstance(value, yaml.SequenceNode) else "a single value")
                raise _file_error(shown, key.start_mark.line + 1,
                                  f"section {key.value}: is {kind}; it must be a mapping of its "
                                  f"keys (or be left out)")
        lines = _key_lines(root)
        # constructed by OmegaConf's own loader, as OmegaConf.load would
        conf = OmegaConf.create(text)
    except yaml.YAMLError as err:
        raise _yaml_error(err, shown, text) from None
    except OmegaConfBaseException as err:
        raise _explain(err, shown) from None
    except RecursionError:
        raise _file_error(shown, None, "nested too deeply to be a config file") from None
    return conf, lines


def load_config(name_or_path: Optional[str] = None, overrides: tuple[str, ...] | list[str] = (),
                base: Optional[dict] = None) -> Config:
    """Defaults, then ``base`` (a saved run's config), then the YAML file (a path or a bundled
    name, read by :func:`read_config_file`), then ``key=value`` overrides.

    Raises:
        ConfigError: one line: a malformed file (``NAME line N: ...``, see
            :func:`read_config_file`), unknown keys (with the closest valid key), wrong types,
            impossible values.
    """
    merged = OmegaConf.structured(Config)
    if base is not None:
        try:
            merged = OmegaConf.merge(merged, base)
        except OmegaConfBaseException as err:
            raise _explain(err, "saved config") from None
    lines: dict[str, int] = {}
    if name_or_path is not None:
        conf, lines = read_config_file(_resolve_path(name_or_path), str(name_or_path))
        if conf is not None:
            try:
                merged = OmegaConf.merge(merged, conf)
            except OmegaConfBaseException as err:
                raise _explain(err, str(name_or_path), lines) from None
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        try:
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist([item]))
        except OmegaConfBaseException as err:
            raise _explain(err, f"override {item!r}") from None
    try:
        cfg: Config = OmegaConf.to_object(merged)  # resolves ${...} interpolations
    except OmegaConfBaseException as err:
        raise _explain(err, "config" if name_or_path is None else str(name_or_path),
                       lines) from None
    validate(cfg)
    return cfg


def _numbers(values: Any, n: int) -> bool:
    """Whether ``values`` is a list of ``n`` numbers (not booleans, not strings)."""
    return (isinstance(values, (list, tuple)) and len(values) == n
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values))


def validate(cfg: Config) -> None:
    """Check values that types cannot express.

    Raises:
        ConfigError: naming the first impossible value found.
    """
    checks = [
        (cfg.objective.variant in VARIANTS,
         f"objective.variant must be one of {', '.join(VARIANTS)}"),
        (cfg.data.source in SOURCES, f"data.source must be one of {', '.join(SOURCES)}"),
        (cfg.data.source != "sprites" or cfg.data.protocol in PROTOCOLS,
         f"data.protocol must be one of {', '.join(PROTOCOLS)}"),
        (cfg.data.num_triplets >= 1, "data.num_triplets must be >= 1"),
        (cfg.data.root is not None or cfg.data.source in ("sprites", "mocap", "flare"),
         f"data.source={cfg.data.source} needs data.root (or --data PATH)"),
        (cfg.data.root is None or cfg.data.source == "mocap"
         or Path(cfg.data.root).expanduser().exists(),
         f"data.root {cfg.data.root!r} does not exist"),
        (cfg.data.source != "index" or cfg.data.root is None
         or Path(cfg.data.root).expanduser().is_file()
         or not Path(cfg.data.root).expanduser().exists(),
         f"data.root {cfg.data.root!r} must be a CSV file for data.source=index"),
        (cfg.data.source not in ("sprites", "flare", "folder", "videos") or cfg.data.root is None
         or Path(cfg.data.root).expanduser().is_dir()
         or not Path(cfg.data.root).expanduser().exists(),
         f"data.root {cfg.data.root!r} must be a folder for data.source={cfg.data.source}"),
        (cfg.data.frame_stride is None or cfg.data.frame_stride >= 1,
         "data.frame_stride must be >= 1"),
        (cfg.data.time_window is None
         or (_numbers(cfg.data.time_window, 2)
             and 0 <= cfg.data.time_window[0] < cfg.data.time_window[1]),
         "data.time_window must be [start_s, end_s] with 0 <= start_s < end_s"),
        (cfg.data.yaws >= 1, "data.yaws must be >= 1"),
        (cfg.data.fit in ("pad", "crop"), "data.fit must be 'pad' or 'crop'"),
        (_numbers(cfg.data.background, 3) and all(0 <= v <= 255 for v in cfg.data.background),
         "data.background must be three numbers in 0..255"),
        (0 < cfg.data.validation_fraction < 1, "data.validation_fraction must be in (0, 1)"),
        (cfg.data.source != "sprites" or cfg.model.image_size == 64,
         "model.image_size must be 64 for the Sprites data"),
        (cfg.model.image_size >= 8, "model.image_size must be >= 8"),
        (cfg.model.code_size >= 1 and cfg.model.image_size % cfg.model.code_size == 0
         and ((cfg.model.image_size // cfg.model.code_size)
              & (cfg.model.image_size // cfg.model.code_size - 1)) == 0
         and cfg.model.image_size // cfg.model.code_size >= 2,
         "model.image_size must be model.code_size times a power of two (at least 2)"),
        (min(cfg.model.code_channels, cfg.model.channels, cfg.model.max_channels) >= 1,
         "model widths must be >= 1"),
        (cfg.model.blocks >= 0, "model.blocks must be >= 0"),
        (cfg.model.output_blocks >= 0, "model.output_blocks must be >= 0"),
        (cfg.model.upsample in UPSAMPLING,
         f"model.upsample must be one of {', '.join(UPSAMPLING)}"),
        (cfg.model.appearance in APPEARANCE_CODES,
         f"model.appearance must be one of {', '.join(APPEARANCE_CODES)}"),
        (cfg.train.batch_size >= 2, "train.batch_size must be >= 2: the critics' negatives pair "
                                    "each pose code with another example's appearance code"),
        (cfg.train.max_steps >= 1, "train.max_steps must be >= 1"),
        (cfg.train.max_minutes is None or cfg.train.max_minutes > 0,
         "train.max_minutes must be > 0"),
        (cfg.train.threads is None or cfg.train.threads >= 1, "train.threads must be >= 1"),
        (cfg.train.precision in ("32", "bf16", "auto"),
         "train.precision must be '32', 'bf16' or 'auto'"),
        (min(cfg.train.log_every, cfg.train.image_every, cfg.train.checkpoint_every) >= 1,
         "train.log_every, image_every and checkpoint_every must be >= 1"),
        (cfg.train.matrix_size >= 1, "train.matrix_size must be >= 1"),
        (cfg.train.keep_checkpoints >= 1, "train.keep_checkpoints must be >= 1"),
        (0 <= cfg.train.ema_decay < 1, "train.ema_decay must be in [0, 1)"),
        (cfg.train.validation_items >= 1, "train.validation_items must be >= 1"),
        (min(cfg.evaluation.probe_train_codes, cfg.evaluation.probe_test_codes) >= 2
         and cfg.evaluation.mi_pairs >= 8
         and min(cfg.evaluation.probe_steps, cfg.evaluation.mi_steps) >= 1,
         "evaluation: at least 2 probe codes, 8 MI pairs and 1 step each"),
        (min(cfg.evaluation.judge_steps, cfg.evaluation.judge_batch_size) >= 1,
         "evaluation.judge_steps and judge_batch_size must be >= 1"),
        (cfg.evaluation.appearance_judge_steps >= 1 and cfg.evaluation.appearance_pairs >= 1
         and cfg.evaluation.appearance_judge_batch_size >= 8,
         "evaluation.appearance_judge_steps and appearance_pairs must be >= 1, "
         "appearance_judge_batch_size >= 8 (2 identities x 4 images)"),
        (cfg.evaluation.keypoint_pairs >= 1, "evaluation.keypoint_pairs must be >= 1"),
        (min(cfg.evaluation.probe_train_seed, cfg.evaluation.probe_test_seed,
             cfg.evaluation.probe_seed, cfg.evaluation.mi_pairs_seed, cfg.evaluation.mi_seed,
             cfg.evaluation.judge_seed, cfg.evaluation.figure_seed,
             cfg.evaluation.validation_seed, cfg.evaluation.appearance_judge_seed,
             cfg.evaluation.appearance_pairs_seed) >= 0,
         "evaluation seeds must be >= 0"),
        (cfg.optim.lr > 0 and cfg.optim.critic_lr_factor > 0,
         "optim.lr and critic_lr_factor must be > 0"),
        (_numbers(cfg.optim.betas, 2) and all(0 <= b < 1 for b in cfg.optim.betas),
         "optim.betas must be two numbers in [0, 1)"),
        (cfg.optim.schedule in ("constant", "linear"),
         "optim.schedule must be 'constant' or 'linear'"),
        (cfg.objective.gamma >= 0 and cfg.objective.gamma_max >= cfg.objective.gamma,
         "objective.gamma must be in [0, objective.gamma_max]"),
        (cfg.objective.mu > 0, "objective.mu must be > 0"),
        (cfg.objective.critic_code in ("sample", "mean"),
         "objective.critic_code must be 'sample' or 'mean'"),
        (cfg.objective.critic_appearance in ("code", "image"),
         "objective.critic_appearance must be 'code' or 'image'"),
        (cfg.objective.reconstruction in ("sse", "calibrated", "laplace"),
         "objective.reconstruction must be 'sse', 'calibrated' or 'laplace'"),
        (cfg.objective.min_variance > 0, "objective.min_variance must be > 0"),
        (0 <= cfg.objective.pose_colour_jitter <= 1,
         "objective.pose_colour_jitter must be in [0, 1]"),
        (cfg.objective.pose_zoom >= 0, "objective.pose_zoom must be >= 0"),
        (cfg.objective.pose_colour_change in ("affine", "map"),
         "objective.pose_colour_change must be 'affine' or 'map'"),
        (cfg.objective.lambda_init >= 0, "objective.lambda_init must be >= 0"),
        (0 < cfg.objective.ema_decay < 1, "objective.ema_decay must be in (0, 1)"),
        (cfg.objective.warmup_steps >= 0, "objective.warmup_steps must be >= 0"),
        (cfg.objective.critic_width >= 1, "objective.critic_width must be >= 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    dev = cfg.train.device
    if not (dev in ("auto", "cpu", "cuda") or dev.startswith("cuda:")):
        raise ConfigError(f"train.device {dev!r} must be auto, cpu, cuda or cuda:N")


def to_dict(cfg: Config) -> dict:
    """Plain-dict form (saved in checkpoints and beside runs)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg))


def from_dict(data: dict) -> Config:
    """Inverse of :func:`to_dict`, with validation of keys and types (values are not re-validated:
    a saved run's data root may not exist on this machine).

    Raises:
        ConfigError: unknown or mistyped keys.
    """
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), data))
    except OmegaConfBaseException as err:
        raise _explain(err, "saved config") from None


def to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
