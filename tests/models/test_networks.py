import math

import pytest
import torch
from torch import nn

from rodi.config import Config, ModelConfig, ObjectiveConfig
from rodi.models.networks import (
    LOGVAR_RANGE,
    AppearancePoseModel,
    ResBlock,
    SeparableCritic,
    _upsample,
    build_model,
)
from rodi.objectives.losses import critic_loss, derangement
from rodi.variants import NAMES, variant

# 16x16 images, 2x2 codes: three x2 levels, widths 4, 8, then capped at 8
TINY = dict(image_size=16, code_channels=3, code_size=2, channels=2, max_channels=8)


def _images(b: int = 3, size: int = 16, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, size, size, generator=g) * 2 - 1


def _config(variant_name: str = "rodi", **model) -> Config:
    return Config(model=ModelConfig(**{**TINY, **model}),
                  objective=ObjectiveConfig(variant=variant_name))


def _convs(module: nn.Module, kind=nn.Conv2d) -> list[nn.Module]:
    return [m for m in module.modules() if type(m) is kind]


@pytest.mark.parametrize("blocks, upsample", [(1, "transpose"), (2, "resize")])
def test_build_model_follows_the_model_section(blocks, upsample):
    torch.manual_seed(0)
    model = build_model(_config(blocks=blocks, upsample=upsample))
    levels = 3  # 16 = 2 * 2**3
    x = _images()
    mean, logvar = model.encode_pose(x)
    assert mean.shape == logvar.shape == model.encode_appearance(x).shape == (3, 3, 2, 2)
    assert model.decode(mean, model.encode_appearance(x)).shape == (3, 3, 16, 16)
    for encoder, head in ((model.pose_encoder, 2 * 3), (model.appearance_encoder, 3)):
        # a stride-2 stem and one stride-2 convolution per level, the width doubling up to the cap
        downs = [c.out_channels for c in _convs(encoder) if c.stride == (2, 2)]
        assert downs == [min(2 * 2**i, 8) for i in range(1, levels + 1)] == [4, 8, 8]
        assert sum(isinstance(m, ResBlock) for m in encoder.modules()) == blocks * levels
        assert _convs(encoder)[-1].out_channels == head  # mean and log-variance, or alpha
    ups = _convs(model.decoder, nn.ConvTranspose2d)
    resizes = [m for m in model.decoder.modules() if isinstance(m, nn.Upsample)]
    assert (len(ups), len(resizes)) == ((levels, 0) if upsample == "transpose" else (0, levels))
    assert max(c.out_channels for c in _convs(model.decoder)) <= 8


@pytest.mark.parametrize("name", NAMES)
def test_the_pose_code_is_deterministic_exactly_where_the_variant_says(name):
    model = build_model(_config(name))
    assert model.stochastic_pose is variant(name).stochastic_pose
    assert model.image_size == 16


def test_both_kinds_of_pose_code_are_among_the_variants():
    assert {variant(n).stochastic_pose for n in NAMES} == {True, False}


def test_transfer_decodes_the_posterior_mean_and_draws_no_sample():
    torch.manual_seed(0)
    model = build_model(_config("rodi")).eval()
    assert model.stochastic_pose
    appearance, pose = _images(seed=1), _images(seed=2)
    torch.manual_seed(1)
    first = model.transfer(appearance, pose)
    torch.manual_seed(2)
    assert torch.equal(model.transfer(appearance, pose), first)
    assert not first.requires_grad and first.min() >= -1 and first.max() <= 1
    mean = model.encode_pose(pose)[0]
    assert torch.equal(model.transfer_pose(pose), mean)
    with torch.no_grad():
        expected = model.decode(mean, model.encode_appearance(appearance)).clamp(-1, 1)
    assert torch.allclose(first, expected)


def test_the_log_variance_is_clamped_and_the_mean_is_not():
    model = build_model(_config())
    head = model.pose_encoder.net[-1]
    for bias, bound in ((100.0, LOGVAR_RANGE[1]), (-100.0, LOGVAR_RANGE[0])):
        with torch.no_grad():
            head.weight.zero_()
            head.bias[:3] = bias  # the first half of the channels is the mean
            head.bias[3:] = bias
        mean, logvar = model.encode_pose(_images())
        assert torch.all(mean == bias) and torch.all(logvar == bound)


def test_a_residual_block_adds_a_convolution_of_the_activation():
    torch.manual_seed(0)
    block = ResBlock(4)
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        expected = x + block.conv(nn.functional.leaky_relu(x, 0.2))
        assert torch.allclose(block(x), expected)
        # not linear: the activation is there (the official code forgot it)
        assert not torch.allclose(block(-x), -block(x) + 2 * block.conv.bias[:, None, None])


@pytest.mark.parametrize("image_size, code_size", [(16, 3), (16, 6), (24, 4), (16, 32)])
def test_a_code_size_that_does_not_divide_the_image_into_a_power_of_two_is_refused(
        image_size, code_size):
    with pytest.raises(ValueError):
        AppearancePoseModel(ModelConfig(**{**TINY, "image_size": image_size,
                                           "code_size": code_size}))


def test_upsampling_doubles_the_side_and_only_resizing_avoids_the_checkerboard():
    torch.manual_seed(0)
    flat = torch.ones(1, 4, 4, 4)  # a constant image
    with torch.no_grad():
        transposed = _upsample(4, 2, "transpose")(flat)
        resized = _upsample(4, 2, "resize")(flat)
    assert transposed.shape == resized.shape == (1, 2, 8, 8)
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))  # away from the zero padding
    assert torch.allclose(resized[inner], resized[inner][..., :1, :1].expand(1, 2, 6, 6))
    # uneven kernel overlap: neighbouring pixels of a constant image differ, every other one repeats
    t = transposed[inner]
    assert not torch.allclose(t[..., 0, 0], t[..., 0, 1])
    assert torch.allclose(t[..., ::2, ::2], t[..., :1, :1].expand(1, 2, 3, 3))
    with pytest.raises(ValueError, match="'transpose' or 'resize'"):
        _upsample(4, 2, "bilinear")


def test_the_critic_starts_at_chance():
    critic = SeparableCritic(3, 5, width=8)
    pose, appearance = torch.randn(4, 3, 2, 2), torch.randn(4, 5, 2, 2)
    joint, marginal = critic(pose, appearance, derangement(4))
    assert torch.equal(joint, torch.zeros(4)) and torch.equal(marginal, torch.zeros(4))


def _trained_looking_critic(pose_channels: int = 3, appearance_channels: int = 5):
    torch.manual_seed(0)
    critic = SeparableCritic(pose_channels, appearance_channels, width=8, blocks=2)
    nn.init.normal_(critic.g[-1].weight)  # away from the zero start, so logits are not all 0
    nn.init.normal_(critic.g[-1].bias)
    return critic


def test_the_critic_logits_are_inner_products_of_its_features():
    critic = _trained_looking_critic()
    pose, appearance = torch.randn(6, 3, 2, 2), torch.randn(6, 5, 2, 2)
    permutation = derangement(6, torch.Generator().manual_seed(0))
    with torch.no_grad():
        fp, ga = critic.features(pose, appearance)
        joint, marginal = critic(pose, appearance, permutation)
    assert fp.shape == ga.shape == (6, 8 * 2 * 2)
    scores = fp @ ga.T  # l[i, j] = T(pi_i, alpha_j)
    assert joint.abs().max() > 0
    assert torch.allclose(joint, scores.diagonal(), atol=1e-5)
    assert torch.allclose(marginal, scores[torch.arange(6), permutation], atol=1e-5)
    # T(pi_i, alpha_j) of one pair alone is the same number: the critic is separable
    with torch.no_grad():
        alone, _ = critic(pose[1:2], appearance[4:5], torch.zeros(1, dtype=torch.long))
    assert torch.allclose(alone, scores[1, 4:5], atol=1e-5)


def test_the_critic_scores_vectors_as_1x1_codes():
    critic = _trained_looking_critic()
    pose, appearance = torch.randn(4, 3), torch.randn(4, 5)
    permutation = derangement(4)
    with torch.no_grad():
        vectors = critic(pose, appearance, permutation)
        maps = critic(pose[:, :, None, None], appearance[:, :, None, None], permutation)
    assert all(torch.equal(v, m) for v, m in zip(vectors, maps))


def _train_critic(rho: float, d: int, steps: int = 1500, batch: int = 256) -> float:
    torch.manual_seed(0)
    critic = SeparableCritic(d, d, width=64)
    opt = torch.optim.Adam(critic.parameters(), lr=2e-3)

    def sample(n):
        x = torch.randn(n, d)
        y = rho * x + math.sqrt(1 - rho**2) * torch.randn(n, d)
        return x, y

    for _ in range(steps):
        x, y = sample(batch)
        joint, marginal = critic(x, y, derangement(batch))
        loss = critic_loss(joint, marginal)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        x, y = sample(20000)
        joint, _ = critic(x, y, derangement(20000))
    return joint.mean().item()


def test_critic_estimates_the_mutual_information_of_correlated_gaussians():
    rho, d = 0.8, 2
    true_mi = -0.5 * d * math.log(1 - rho**2)  # 1.02 nats
    assert _train_critic(rho, d) == pytest.approx(true_mi, abs=0.15)


def test_critic_estimates_zero_for_independent_gaussians():
    assert abs(_train_critic(0.0, 2)) < 0.05


def test_a_global_appearance_code_is_the_same_at_every_position_and_ignores_layout():
    torch.manual_seed(0)
    model = AppearancePoseModel(ModelConfig(**TINY, appearance="global"))
    x = _images(2)
    alpha = model.encode_appearance(x)
    assert alpha.shape == (2, 3, 2, 2)
    assert torch.allclose(alpha, alpha[:, :, :1, :1].expand_as(alpha))
    # the mean over positions of the spatial map the same encoder makes
    assert torch.allclose(alpha[:, :, 0, 0], model.appearance_encoder(x).mean((2, 3)))
    spatial = AppearancePoseModel(ModelConfig(**TINY))
    assert not torch.allclose(*spatial.encode_appearance(torch.stack([x[0], x[0].flip(-1)])))


def test_global_appearance_modulates_every_resolution_and_starts_as_the_identity():
    torch.manual_seed(0)
    model = AppearancePoseModel(ModelConfig(**TINY, appearance="global"))
    # three x2 levels: modulated after the blocks at 2x2, 4x4 and 8x8
    assert [f.linear.out_features for f in model.decoder.film] == [16, 16, 8]
    spatial = AppearancePoseModel(ModelConfig(**TINY))
    assert len(spatial.decoder.film) == 0
    assert not any("film" in k for k in spatial.state_dict())
    # zero-initialised FiLM: the decoder renders as the same weights would without it
    spatial.load_state_dict({k: v for k, v in model.state_dict().items() if "film" not in k})
    pose = torch.randn(2, 3, 2, 2)
    appearance = torch.randn(2, 3, 1, 1).expand(2, 3, 2, 2)
    assert torch.allclose(model.decode(pose, appearance), spatial.decode(pose, appearance))
    # trained FiLM weights make the render depend on the appearance vector at every scale
    for film in model.decoder.film:
        nn.init.normal_(film.linear.weight)
    other = torch.randn(2, 3, 1, 1).expand(2, 3, 2, 2)
    assert not torch.allclose(model.decode(pose, appearance), model.decode(pose, other))


def test_an_unknown_appearance_code_is_refused_by_the_config():
    from rodi.config import ConfigError, validate

    cfg = Config()
    cfg.model.appearance = "local"
    with pytest.raises(ConfigError, match="model.appearance must be one of spatial, global"):
        validate(cfg)


def test_an_attention_pooled_appearance_code_starts_as_the_mean_and_learns_where_to_look():
    torch.manual_seed(0)
    model = AppearancePoseModel(ModelConfig(**TINY, appearance="attention"))
    x = _images(2)
    alpha = model.encode_appearance(x)
    assert alpha.shape == (2, 3, 2, 2) and len(model.decoder.film) == 3
    maps = model.appearance_encoder(x)
    assert maps.shape == (2, 4, 2, 2)  # three code channels and the logits of where to look
    assert torch.allclose(alpha[:, :, 0, 0], maps[:, :3].mean((2, 3)), atol=1e-6)
    # logits that single out one position make the code that position's features
    fixed = torch.randn(2, 4, 2, 2)
    fixed[:, 3] = -1e4
    fixed[:, 3, 1, 0] = 0
    model.appearance_encoder.forward = lambda _: fixed
    picked = model.encode_appearance(x)
    assert torch.allclose(picked, fixed[:, :3, 1:, :1].expand(2, 3, 2, 2))


def test_a_vector_appearance_code_holds_one_mean_per_number_and_drives_the_decoder_whole():
    torch.manual_seed(0)
    model = AppearancePoseModel(ModelConfig(**TINY, appearance="vector"))
    x = _images(2)
    alpha = model.encode_appearance(x)
    assert alpha.shape == (2, 3, 2, 2)  # shaped as the pose code: 12 numbers
    assert torch.allclose(alpha.flatten(1), model.appearance_encoder(x).mean((2, 3)))
    assert [f.linear.in_features for f in model.decoder.film] == [12, 12, 12]
    for film in model.decoder.film:
        nn.init.normal_(film.linear.weight)
    pose = torch.randn(2, 3, 2, 2)
    moved = alpha.clone()
    moved[:, :, 1, 1] += 1.0  # one number of the vector
    assert not torch.allclose(model.decode(pose, alpha), model.decode(pose, moved))


def test_a_cross_attention_decoder_starts_as_the_global_one_and_reads_the_map_where_asked():
    torch.manual_seed(0)
    model = AppearancePoseModel(ModelConfig(**TINY, appearance="cross"))
    x = _images(2)
    alpha = model.encode_appearance(x)
    assert torch.equal(alpha, model.appearance_encoder(x))  # the map itself
    assert len(model.decoder.attention) == len(model.decoder.film) == 3
    # zero output projections: the same render as a global decoder of the same weights, which
    # sees only the map's mean
    global_model = AppearancePoseModel(ModelConfig(**TINY, appearance="global"))
    global_model.load_state_dict({k: v for k, v in model.state_dict().items()
                                  if "attention" not in k})
    pose = torch.randn(2, 3, 2, 2)
    mean = alpha.mean((2, 3), keepdim=True).expand_as(alpha)
    assert torch.allclose(model.decode(pose, alpha), global_model.decode(pose, mean), atol=1e-6)
    # trained, the render depends on the layout of the map, not only on its mean
    for attention in model.decoder.attention:
        nn.init.normal_(attention.out.weight)
    swapped = alpha.flip(-1)
    assert torch.allclose(swapped.mean((2, 3)), alpha.mean((2, 3)), atol=1e-6)
    assert not torch.allclose(model.decode(pose, alpha), model.decode(pose, swapped))
    # the attention reads a value from the position whose key matches the query
    attention = model.decoder.attention[0]
    with torch.no_grad():
        for conv in (attention.query, attention.key, attention.value, attention.out):
            conv.bias.zero_()
        attention.key.weight.zero_()
        attention.key.weight[0, 0] = 500.0  # keys: channel 0 of the map, sharpened
        attention.query.weight.zero_()
        attention.query.weight[0, 0] = 1.0  # queries: channel 0 of the features
    code = torch.zeros(1, 3, 2, 2)
    code[0, 0, 1, 1] = 1.0  # one position stands out in channel 0 ...
    code[0, 1, 1, 1] = 2.0  # ... and holds a value in channel 1
    h = torch.zeros(1, attention.query.in_channels, 2, 2)
    h[0, 0] = 1.0
    read = attention(h, code) - h
    expected = attention.out(attention.value(code)[:, :, 1:, 1:]).expand_as(read)
    assert torch.allclose(read, expected, atol=1e-4)


@pytest.mark.parametrize("upsample", ["transpose", "resize"])
def test_output_blocks_add_a_stage_at_the_image_resolution(upsample):
    torch.manual_seed(0)
    plain = AppearancePoseModel(ModelConfig(**TINY, upsample=upsample))
    staged = AppearancePoseModel(ModelConfig(**TINY, upsample=upsample, output_blocks=2))
    x = _images(2)
    pose, appearance = staged.encode_pose(x)[0], staged.encode_appearance(x)
    assert staged.decode(pose, appearance).shape == (2, 3, 16, 16)
    blocks = [m for m in staged.decoder.net if isinstance(m, ResBlock)]
    assert len(blocks) == len([m for m in plain.decoder.net if isinstance(m, ResBlock)]) + 2
    # the added blocks run at 16x16 with the first level's width (2), and a 3x3 head writes RGB
    seen = {}

    def record(module, inputs, output):
        seen[id(module)] = output.shape

    hooks = [b.register_forward_hook(record) for b in blocks[-2:]]
    staged.decode(pose, appearance)
    for h in hooks:
        h.remove()
    assert set(seen.values()) == {torch.Size([2, 2, 16, 16])}
    head = staged.decoder.net[-1]
    assert isinstance(head, nn.Conv2d) and head.kernel_size == (3, 3) and head.out_channels == 3
    # without output blocks the last up-sampling writes the pixels, as in checkpoints made before
    # the option, whose keys stay those of the decoder without it
    last = _convs(plain.decoder.net[-1], nn.ConvTranspose2d if upsample == "transpose"
                  else nn.Conv2d)
    assert len(last) == 1 and last[0].out_channels == 3


def test_negative_output_blocks_are_refused_by_the_config():
    from rodi.config import ConfigError, validate

    cfg = Config()
    cfg.model.output_blocks = -1
    with pytest.raises(ConfigError, match="model.output_blocks must be >= 0"):
        validate(cfg)
