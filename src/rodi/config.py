"""Typed configuration: defaults in dataclasses, YAML files and ``key=value`` overrides merged on
top, validated before anything is built (OmegaConf structured configs).

The defaults are the authors' 64x64 Sprites setup (docs/method.md section 5).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Optional

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

VARIANTS = ("ae", "variational", "adversarial", "rodi", "drnet")


class ConfigError(ValueError):
    """A configuration file or override is malformed, names an unknown key, or holds an
    impossible value."""


UPSAMPLING = ("transpose", "resize")
SOURCES = ("sprites", "mocap", "flare", "folder", "videos", "index")


@dataclass
class DataConfig:
    source: str = "sprites"  # sprites | mocap | flare | folder | videos | index
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
    upsample: str = "transpose"  # decoder up-sampling: transpose (4x4 stride-2 ConvTranspose) | resize (nearest x2, then 3x3 conv)


@dataclass
class ObjectiveConfig:
    variant: str = "rodi"  # ae | variational | adversarial | rodi | drnet
    gamma: float = 1.0  # initial (rodi) or fixed (variational, adversarial) KL weight
    gamma_max: float = 100.0
    gamma_lr: float = 0.01  # l_gamma
    gamma_bias: float = 0.01  # b_gamma
    gamma_in_warmup: bool = True  # adapt gamma while the constraint is still off (the authors' code does)
    epsilon: float = 0.1  # MI bound in nats
    # reconstruction term: sse (summed squared pixel error, the authors') | calibrated (Gaussian NLL with
    # the variance at the batch MSE, at least min_variance; docs/method.md section 9)
    reconstruction: str = "sse"
    min_variance: float = 1.0e-4
    critic_code: str = "sample"  # what the critics score: sample (of q(pi | x), the authors') | mean (what transfer uses)
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
    precision: str = "32"  # 32 | bf16 (autocast; meant for CUDA)
    compile: bool = False  # torch.compile the encoders and decoder (opt-in; a minute of compiling first)
    out_dir: str = "runs/sprites-rodi"
    log_every: int = 25
    image_every: int = 500
    checkpoint_every: int = 500
    keep_checkpoints: int = 3  # step-XXXXXXX.pt files kept besides last.pt and best.pt
    validation_items: int = 256  # held-out triplets (or pairs) scored at each checkpoint for best.pt
    matrix_size: int = 6


@dataclass
class EvaluationConfig:
    probes: bool = True  # leakage probes and post-hoc MI, where the data has labels
    probe_train_codes: int = 5000  # codes of training characters the probes learn from
    probe_test_codes: int = 2000  # codes of held-out characters they are scored on
    probe_steps: int = 300
    mi_pairs: int = 4000  # held-out pairs for the post-hoc MI critic (half to train, half to score)
    mi_steps: int = 1500
    judges: bool = True  # pose accuracy and appearance retention of transfers, where renders are exact
    judge_steps: int = 6000  # training steps of the judge (once per dataset, then cached)
    judge_batch_size: int = 32


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
    return sorted(p.name[:-5] for p in resources.files("rodi.configs").iterdir() if p.name.endswith(".yaml"))


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


def _explain(err: OmegaConfBaseException, source: str) -> ConfigError:
    if isinstance(err, ConfigKeyError) and err.full_key:
        valid = _all_keys(OmegaConf.to_container(OmegaConf.structured(Config)))
        close = difflib.get_close_matches(err.full_key, valid, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return ConfigError(f"{source}: unknown key {err.full_key!r}{hint}")
    key = f" at {err.full_key!r}" if getattr(err, "full_key", None) else ""
    message = str(err.msg if getattr(err, "msg", None) else err).splitlines()[0]
    return ConfigError(f"{source}{key}: {message}")


def load_config(name_or_path: Optional[str] = None, overrides: tuple[str, ...] | list[str] = (),
                base: Optional[dict] = None) -> Config:
    """Defaults, then ``base`` (a saved run's config), then the YAML file (a path or a bundled
    name), then ``key=value`` overrides.

    Raises:
        ConfigError: unknown keys (with the closest valid key), wrong types, impossible values.
    """
    merged = OmegaConf.structured(Config)
    try:
        if base is not None:
            merged = OmegaConf.merge(merged, base)
        if name_or_path is not None:
            path = _resolve_path(name_or_path)
            merged = OmegaConf.merge(merged, OmegaConf.load(path))
    except OmegaConfBaseException as err:
        raise _explain(err, str(name_or_path)) from None
    except yaml.YAMLError as err:  # a syntax error: say where, in one line
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{name_or_path}: not valid YAML{where}: {problem}") from None
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        try:
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist([item]))
        except OmegaConfBaseException as err:
            raise _explain(err, f"override {item!r}") from None
    cfg: Config = OmegaConf.to_object(merged)
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Check values that types cannot express.

    Raises:
        ConfigError: naming the first impossible value found.
    """
    from rodi.data.sprites import PROTOCOLS

    checks = [
        (cfg.objective.variant in VARIANTS, f"objective.variant must be one of {', '.join(VARIANTS)}"),
        (cfg.data.source in SOURCES, f"data.source must be one of {', '.join(SOURCES)}"),
        (cfg.data.source != "sprites" or cfg.data.protocol in PROTOCOLS,
         f"data.protocol must be one of {', '.join(PROTOCOLS)}"),
        (cfg.data.num_triplets >= 1, "data.num_triplets must be >= 1"),
        (cfg.data.root is not None or cfg.data.source in ("sprites", "mocap", "flare"),
         f"data.source={cfg.data.source} needs data.root (or --data PATH)"),
        (cfg.data.root is None or cfg.data.source == "mocap" or Path(cfg.data.root).expanduser().exists(),
         f"data.root {cfg.data.root!r} does not exist"),
        (cfg.data.source != "index" or cfg.data.root is None or Path(cfg.data.root).expanduser().is_file()
         or not Path(cfg.data.root).expanduser().exists(), f"data.root {cfg.data.root!r} must be a CSV file for data.source=index"),
        (cfg.data.source not in ("sprites", "flare", "folder", "videos") or cfg.data.root is None
         or Path(cfg.data.root).expanduser().is_dir() or not Path(cfg.data.root).expanduser().exists(),
         f"data.root {cfg.data.root!r} must be a folder for data.source={cfg.data.source}"),
        (cfg.data.frame_stride is None or cfg.data.frame_stride >= 1, "data.frame_stride must be >= 1"),
        (cfg.data.time_window is None or (len(cfg.data.time_window) == 2
                                          and 0 <= cfg.data.time_window[0] < cfg.data.time_window[1]),
         "data.time_window must be [start_s, end_s] with 0 <= start_s < end_s"),
        (cfg.data.yaws >= 1, "data.yaws must be >= 1"),
        (cfg.data.fit in ("pad", "crop"), "data.fit must be 'pad' or 'crop'"),
        (len(cfg.data.background) == 3 and all(0 <= v <= 255 for v in cfg.data.background),
         "data.background must be three numbers in 0..255"),
        (0 < cfg.data.validation_fraction < 1, "data.validation_fraction must be in (0, 1)"),
        (cfg.data.source != "sprites" or cfg.model.image_size == 64,
         "model.image_size must be 64 for the Sprites data"),
        (cfg.model.image_size >= 8, "model.image_size must be >= 8"),
        (cfg.model.code_size >= 1 and cfg.model.image_size % cfg.model.code_size == 0
         and ((cfg.model.image_size // cfg.model.code_size) & (cfg.model.image_size // cfg.model.code_size - 1)) == 0
         and cfg.model.image_size // cfg.model.code_size >= 2,
         "model.image_size must be model.code_size times a power of two (at least 2)"),
        (min(cfg.model.code_channels, cfg.model.channels, cfg.model.max_channels) >= 1, "model widths must be >= 1"),
        (cfg.model.blocks >= 0, "model.blocks must be >= 0"),
        (cfg.model.upsample in UPSAMPLING, f"model.upsample must be one of {', '.join(UPSAMPLING)}"),
        (cfg.train.batch_size >= 2, "train.batch_size must be >= 2: the critics' negatives pair each "
                                    "pose code with another example's appearance code"),
        (cfg.train.max_steps >= 1, "train.max_steps must be >= 1"),
        (cfg.train.max_minutes is None or cfg.train.max_minutes > 0, "train.max_minutes must be > 0"),
        (cfg.train.threads is None or cfg.train.threads >= 1, "train.threads must be >= 1"),
        (cfg.train.precision in ("32", "bf16"), "train.precision must be '32' or 'bf16'"),
        (min(cfg.train.log_every, cfg.train.image_every, cfg.train.checkpoint_every) >= 1,
         "train.log_every, image_every and checkpoint_every must be >= 1"),
        (cfg.train.matrix_size >= 1, "train.matrix_size must be >= 1"),
        (cfg.train.keep_checkpoints >= 1, "train.keep_checkpoints must be >= 1"),
        (cfg.train.validation_items >= 1, "train.validation_items must be >= 1"),
        (min(cfg.evaluation.probe_train_codes, cfg.evaluation.probe_test_codes) >= 2
         and cfg.evaluation.mi_pairs >= 8 and min(cfg.evaluation.probe_steps, cfg.evaluation.mi_steps) >= 1,
         "evaluation: at least 2 probe codes, 8 MI pairs and 1 step each"),
        (min(cfg.evaluation.judge_steps, cfg.evaluation.judge_batch_size) >= 1,
         "evaluation.judge_steps and judge_batch_size must be >= 1"),
        (cfg.optim.lr > 0 and cfg.optim.critic_lr_factor > 0, "optim.lr and critic_lr_factor must be > 0"),
        (len(cfg.optim.betas) == 2 and all(0 <= b < 1 for b in cfg.optim.betas), "optim.betas must be two numbers in [0, 1)"),
        (cfg.optim.schedule in ("constant", "linear"), "optim.schedule must be 'constant' or 'linear'"),
        (cfg.objective.gamma >= 0 and cfg.objective.gamma_max >= cfg.objective.gamma,
         "objective.gamma must be in [0, objective.gamma_max]"),
        (cfg.objective.mu > 0, "objective.mu must be > 0"),
        (cfg.objective.critic_code in ("sample", "mean"), "objective.critic_code must be 'sample' or 'mean'"),
        (cfg.objective.reconstruction in ("sse", "calibrated"), "objective.reconstruction must be 'sse' or 'calibrated'"),
        (cfg.objective.min_variance > 0, "objective.min_variance must be > 0"),
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
