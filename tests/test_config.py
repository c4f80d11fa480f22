"""rodi.config: defaults, files, saved configs and overrides merged and checked into one typed
config, and every refusal one line that names what is wrong."""

import json

import pytest
import torch

from rodi.config import (
    Config,
    ConfigError,
    EvaluationConfig,
    bundled_configs,
    from_dict,
    load_config,
    read_config_file,
    to_dict,
    to_yaml,
    validate,
)
from rodi.variants import NAMES


def _refusal(*args, **kwargs) -> str:
    """The message of the ConfigError that ``load_config(*args, **kwargs)`` raises, checked to be
    one line."""
    with pytest.raises(ConfigError) as caught:
        load_config(*args, **kwargs)
    message = str(caught.value)
    assert len(message.splitlines()) == 1, message
    return message


def test_unknown_key_suggests_the_closest_valid_one():
    with pytest.raises(ConfigError, match="did you mean 'train.batch_size'"):
        load_config("sprites", ["train.batch_sise=8"])


@pytest.mark.parametrize("override, message", [
    ("train.batch_size=1", "batch_size must be >= 2"),
    ("objective.variant=vae", "objective.variant"),
    ("train.batch_size=many", "batch_size"),
    ("data.root=/does/not/exist", "does not exist"),
])
def test_impossible_values_are_refused_before_training(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("sprites", [override])


@pytest.mark.parametrize("override, unknown, close", [
    ("trian.max_steps=3", "trian", "train"),
    ("train.max_stepz=3", "train.max_stepz", "train.max_steps"),
    ("objective.varient=ae", "objective.varient", "objective.variant"),
    ("evaluation.validation_sed=3", "evaluation.validation_sed", "evaluation.validation_seed"),
])
def test_an_unknown_override_names_itself_and_the_closest_key(override, unknown, close):
    assert _refusal("sprites", [override]) == (
        f"override {override!r}: unknown key {unknown!r}; did you mean {close!r}?")


def test_an_unknown_key_in_a_file_or_a_saved_config_names_the_closest_key(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  batch_size: 3\n  max_stepz: 3\n")
    assert _refusal(str(path)) == (
        f"{path} line 3: unknown key 'train.max_stepz'; did you mean 'train.max_steps'?")
    saved = to_dict(Config())
    saved["model"]["chanels"] = 8
    with pytest.raises(ConfigError, match=r"^saved config: unknown key 'model.chanels'; "
                                          r"did you mean 'model.channels'\?$"):
        from_dict(saved)


def test_a_wrong_type_names_the_key_wherever_it_comes_from(tmp_path):
    assert _refusal("sprites", ["train.max_steps=many"]).startswith(
        "override 'train.max_steps=many' at 'train.max_steps': Value 'many'")
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  seed: 1\n  max_steps: many\n")
    assert _refusal(str(path)).startswith(f"{path} line 3 at 'train.max_steps': Value 'many'")
    saved = to_dict(Config())
    saved["model"]["image_size"] = "large"
    with pytest.raises(ConfigError, match=r"^saved config at 'model.image_size': Value 'large'"):
        from_dict(saved)


def test_an_unknown_variant_lists_the_variants():
    assert _refusal("sprites", ["objective.variant=nope"]) == (
        f"objective.variant must be one of {', '.join(NAMES)}")
    assert ", ".join(NAMES) == "ae, variational, adversarial, rodi, drnet"


@pytest.mark.parametrize("override, message", [
    ("model.image_size=48", "model.image_size must be 64 for the Sprites data"),
    ("optim.betas=[0.5,many]", "optim.betas must be two numbers in [0, 1)"),
    ("train.device=gpu", "train.device 'gpu' must be auto, cpu, cuda or cuda:N"),
    ("train", "override 'train' is not of the form key=value"),
    ("objective.pose_colour_jitter=2", "objective.pose_colour_jitter must be in [0, 1]"),
])
def test_an_impossible_value_is_one_line_naming_the_key(override, message):
    assert _refusal("sprites", [override]) == message


def test_a_code_size_that_does_not_divide_the_image_into_a_power_of_two_is_refused():
    message = "model.image_size must be model.code_size times a power of two (at least 2)"
    for code_size in (3, 6, 32, 64):
        assert _refusal(None, ["data.source=mocap", "model.image_size=32",
                               f"model.code_size={code_size}"]) == message
    assert load_config(None, ["data.source=mocap", "model.image_size=32",
                              "model.code_size=8"]).model.code_size == 8


def test_every_bundled_config_loads_and_an_unknown_name_lists_them(tmp_path):
    names = bundled_configs()
    (tmp_path / "index.csv").write_text("identity,path\n")
    assert {"sprites", "mocap", "demo"} <= set(names)
    for name in names:
        if name == "people-1h":  # footage of people: the user's own data, given with --data
            assert _refusal(name) == "data.source=index needs data.root (or --data PATH)"
            validate(load_config(name, [f"data.root={tmp_path / 'index.csv'}"]))
        else:
            validate(load_config(name))
    assert _refusal("no-such-config") == (
        f"config 'no-such-config' is neither a file nor a bundled config "
        f"(bundled: {', '.join(names)})")


def test_the_defaults_are_valid_and_the_sprites_config_pins_the_authors_setup():
    validate(Config())
    cfg = load_config("sprites")
    assert (cfg.model.image_size, cfg.model.code_channels, cfg.model.code_size) == (64, 16, 4)
    assert (cfg.objective.variant, cfg.train.batch_size, cfg.optim.betas) == (
        "rodi", 32, [0.5, 0.9])


def test_later_sources_override_earlier_ones(tmp_path):
    base = to_dict(Config())
    base["train"].update(seed=1, batch_size=4, max_steps=7)
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  batch_size: 5\n  max_steps: 8\n")
    cfg = load_config(str(path), ["train.max_steps=9"], base=base)
    assert (cfg.train.seed, cfg.train.batch_size, cfg.train.max_steps) == (1, 5, 9)
    assert cfg.train.log_every == Config().train.log_every  # the defaults under all of them


def test_overrides_may_refer_to_other_keys():
    cfg = load_config("sprites", ["objective.variant=ae",
                                  "train.out_dir=runs/${objective.variant}"])
    assert cfg.train.out_dir == "runs/ae"


def test_to_dict_and_from_dict_round_trip():
    cfg = load_config("sprites", ["objective.variant=drnet", "train.max_minutes=1.5",
                                  "data.time_window=[1,2]", "optim.betas=[0.4,0.8]"])
    saved = to_dict(cfg)
    assert json.loads(json.dumps(saved)) == saved  # plain values, as checkpoints store them
    assert from_dict(saved) == cfg
    assert from_dict(json.loads(json.dumps(saved))) == cfg
    assert load_config(None, base=saved) == cfg


def test_to_yaml_writes_a_file_that_loads_back_the_same(tmp_path):
    cfg = load_config("mocap", ["train.seed=5", "model.upsample=resize"])
    path = tmp_path / "config.yaml"
    path.write_text(to_yaml(cfg))
    assert load_config(str(path)) == cfg


def test_a_saved_config_without_newer_keys_loads_with_the_defaults():
    saved = to_dict(load_config("sprites", ["train.seed=3"]))
    del saved["evaluation"]["validation_seed"]
    del saved["model"]["upsample"]
    del saved["objective"]["pose_colour_jitter"]
    cfg = from_dict(saved)
    assert cfg.evaluation.validation_seed == EvaluationConfig().validation_seed == 99
    assert (cfg.model.upsample, cfg.objective.pose_colour_jitter, cfg.train.seed) == (
        "transpose", 0.0, 3)
    del saved["evaluation"]  # a whole section newer than the run
    assert from_dict(saved).evaluation == EvaluationConfig()
    assert load_config(None, base=saved).evaluation == EvaluationConfig()


def test_a_saved_config_is_not_revalidated_until_it_is_loaded(tmp_path):
    saved = to_dict(load_config("sprites"))
    saved["data"]["root"] = str(tmp_path / "on another machine")
    assert from_dict(saved).data.root == saved["data"]["root"]
    assert _refusal(None, base=saved) == f"data.root {saved['data']['root']!r} does not exist"
    root = tmp_path / "sheets"
    root.mkdir()
    assert load_config(None, [f"data.root={root}"], base=saved).data.root == str(root)


def test_read_config_file_gives_the_line_of_every_key(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("# a comment\ntrain:\n  seed: 1\n\noptim:\n  betas:\n    - 0.5\n    - 0.9\n")
    conf, lines = read_config_file(path)
    assert conf == {"train": {"seed": 1}, "optim": {"betas": [0.5, 0.9]}}
    assert lines == {"train": 2, "train.seed": 3, "optim": 5, "optim.betas": 6,
                     "optim.betas[0]": 7, "optim.betas[1]": 8}
    path.write_text("optim:\n  betas:\n    - 0.5\n    - 1.5\n")
    assert _refusal(str(path)) == "optim.betas must be two numbers in [0, 1)"
    path.write_text("")
    assert read_config_file(path) == (None, {})
    assert load_config(str(path)) == Config()


def test_read_config_file_names_the_file_as_shown(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  a: b: c\n")
    with pytest.raises(ConfigError, match=r"^my run line 2: not valid YAML: mapping values"):
        read_config_file(path, shown="my run")
    with pytest.raises(ConfigError, match=r"^missing\.yaml: cannot be read"):
        read_config_file(tmp_path / "missing.yaml", shown="missing.yaml")


def test_a_config_file_with_anchors_and_merge_keys_within_the_limit_still_loads(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("model:\n  <<: &small {channels: 8, max_channels: 16}\n  blocks: 2\n"
                    "evaluation:\n  probe_seed: &seed 5\n  mi_seed: *seed\n"
                    "optim:\n  betas: &b [0.5, 0.9]\n  lr: 1e-3\n")
    cfg = load_config(str(good))
    assert (cfg.model.channels, cfg.model.max_channels, cfg.model.blocks) == (8, 16, 2)
    assert (cfg.evaluation.probe_seed, cfg.evaluation.mi_seed) == (5, 5)
    assert (cfg.optim.betas, cfg.optim.lr) == ([0.5, 0.9], 1e-3)


def test_precision_auto_is_bf16_only_where_the_device_has_it():
    from rodi.distributed import native_bf16, uses_bf16

    cpu = torch.device("cpu")
    assert not uses_bf16("32", cpu)
    assert uses_bf16("bf16", cpu)
    assert uses_bf16("auto", cpu) == native_bf16(cpu)
    load_config("demo", ["train.precision=auto"])  # a valid value
    with pytest.raises(ConfigError, match="train.precision must be"):
        load_config("demo", ["train.precision=16"])
