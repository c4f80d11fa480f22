import pytest
import torch

from rodi.config import ModelConfig, ObjectiveConfig
from rodi.models.networks import AppearancePoseModel
from rodi.objectives.disentangling import DisentanglingObjective
from rodi.objectives.losses import (
    augmented_lagrangian,
    colour_jitter,
    colour_map,
    derangement,
    update_gamma,
    update_multiplier,
    zoom,
)
from rodi.variants import TABLE, VARIANTS


@pytest.mark.parametrize("n", [2, 3, 5, 7, 33, 128])
def test_derangement_has_no_fixed_point(n):
    g = torch.Generator().manual_seed(n)
    for _ in range(20):
        s = derangement(n, g)
        assert sorted(s.tolist()) == list(range(n))
        assert (s != torch.arange(n)).all()


def test_derangement_of_one_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 2"):
        derangement(1)


def test_multiplier_update_is_projected_gradient_ascent():
    assert update_multiplier(0.0, 0.5, mu=0.1) == pytest.approx(0.05)
    assert update_multiplier(0.05, -1.0, mu=0.1) == 0.0  # never negative
    assert update_multiplier(1.0, -0.2, mu=0.1) == pytest.approx(0.98)


def test_penalty_vanishes_when_the_constraint_is_inactive():
    c = torch.tensor(-2.0)
    assert augmented_lagrangian(c, torch.tensor(0.1), 0.1).item() == 0.0  # mu*c + lambda < 0
    c = torch.tensor(0.5)
    assert augmented_lagrangian(c, torch.tensor(0.2), 0.1).item() == pytest.approx(
        0.2 * 0.5 + 0.05 * 0.25)


def test_gamma_rises_when_the_independent_critic_sees_more_and_decays_otherwise():
    cfg = ObjectiveConfig(gamma_lr=0.01, gamma_bias=0.01, gamma_max=5.0)
    assert update_gamma(1.0, 0.1, 0.6, cfg) == pytest.approx(1.0 + 0.01 * (0.5 - 0.01))
    assert update_gamma(1.0, 0.6, 0.1, cfg) == pytest.approx(1.0 - 0.01 * 0.01)  # gap clipped at 0
    # gap clipped at 10
    assert update_gamma(1.0, 0.0, 50.0, cfg) == pytest.approx(1.0 + 0.01 * (10 - 0.01))
    assert update_gamma(0.00005, 0.6, 0.1, cfg) == 0.0
    assert update_gamma(4.999, 0.0, 10.0, cfg) == 5.0


def _objective_and_model(**overrides):
    cfg = ObjectiveConfig(critic_width=16, **overrides)
    torch.manual_seed(0)
    model_cfg = ModelConfig(image_size=16, code_channels=4, code_size=4, channels=8,
                            max_channels=16)
    model = AppearancePoseModel(model_cfg, stochastic_pose=VARIANTS[cfg.variant].stochastic_pose)
    return DisentanglingObjective(cfg, code_channels=4, code_size=4, model=model_cfg), model


def _batch(b=4, size=16):
    g = torch.Generator().manual_seed(1)
    return {"pose_image": torch.rand(b, 3, size, size, generator=g) * 2 - 1,
            "appearance_image": torch.rand(b, 3, size, size, generator=g) * 2 - 1}


def test_calibrated_reconstruction_is_the_gaussian_nll_gradient_at_the_batch_variance():
    """Its gradient is that of (D / 2) log(MSE): the SSE's gradient over 2 * MSE."""
    batch = _batch()
    grads = {}
    for mode in ("sse", "calibrated"):
        objective, model = _objective_and_model(reconstruction=mode, variant="ae")
        out = objective(model, batch, step=0)
        out["model_loss"].backward()
        last = model.decoder.net[-1]  # the last up-sampling: a layer, or resize then a convolution
        last = last[-1] if isinstance(last, torch.nn.Sequential) else last
        grads[mode] = last.weight.grad.clone()
        mse = out["reconstruction"].item() / batch["pose_image"][0].numel()
    assert torch.allclose(grads["calibrated"], grads["sse"] / (2 * mse), rtol=1e-4, atol=1e-7)


def test_laplace_reconstruction_is_the_l1_gradient_over_the_batch_mean_absolute_error():
    """Its gradient is that of D log(MAE): the summed absolute error's gradient over the MAE."""
    batch = _batch()
    objective, model = _objective_and_model(reconstruction="laplace", variant="ae")
    out = objective(model, batch, step=0)
    out["model_loss"].backward()
    laplace = [p.grad.clone() for p in model.decoder.parameters()]
    model.zero_grad()
    x = batch["pose_image"]
    x_hat = model.decode(model.encode_pose(x)[0],
                         model.encode_appearance(batch["appearance_image"]))
    error = (x_hat - x).abs()
    (error.flatten(1).sum(1).mean() / error.mean().detach()).backward()
    for got, want in zip(laplace, (p.grad for p in model.decoder.parameters()), strict=True):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-6)


def test_gamma_can_be_held_during_the_warm_up():
    objective, model = _objective_and_model(gamma_in_warmup=False, warmup_steps=5, gamma=0.5)
    out = {"mi": torch.tensor(0.0), "mi_independent": torch.tensor(3.0), "constraint": None}
    for step in range(5):
        objective.update(out, step)
    assert objective.gamma.item() == 0.5  # the gap is ignored while the constraint is off
    objective.update({**out, "constraint": torch.tensor(0.0)}, 5)
    assert objective.gamma.item() > 0.5


def test_critics_may_score_the_posterior_mean():
    objective, model = _objective_and_model(critic_code="mean")
    batch = _batch()
    torch.manual_seed(3)
    first = objective(model, batch, step=2000)["mi"]
    torch.manual_seed(4)  # another posterior sample: the critics' input, the mean, is the same
    assert objective(model, batch, step=2000)["mi"] == first


def test_colour_jitter_changes_colours_per_image_and_keeps_where_edges_are():
    torch.manual_seed(0)
    x = torch.rand(64, 3, 8, 8) * 2 - 1
    x[:, :, :, 4:] = x[:, :, :, :1]  # the right half repeats the first column: no edges there
    assert colour_jitter(x, 0.0) is x
    y = colour_jitter(x, 1.0)
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    # a per-image function of each pixel's colour: equal pixels stay equal
    assert torch.equal(y[:, :, :, 4:], y[:, :, :, :1].expand(-1, -1, -1, 4))
    # each image gets its own change, and channel order changes for some of them
    per_image = (y - x).flatten(1).abs().mean(1)
    assert per_image.std() > 0.01 and (per_image > 0.05).float().mean() > 0.8
    gray = torch.linspace(-0.5, 0.5, 8).expand(64, 3, 8, 8)
    assert (colour_jitter(gray, 1.0)[:, 0] != colour_jitter(gray, 1.0)[:, 1]).any()


def test_a_colour_map_keeps_regions_and_cannot_be_undone_from_known_colours():
    torch.manual_seed(0)
    x = torch.rand(256, 3, 8, 8) * 2 - 1
    x[:, :, :, 4:] = x[:, :, :, :1]
    assert colour_map(x, 0.0) is x
    y = colour_map(x, 1.0)
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    assert torch.equal(y[:, :, :, 4:], y[:, :, :, :1].expand(-1, -1, -1, 4))
    # one background colour known before and after: a gain and offset per channel fitted on it and
    # on a second known colour leaves most of the other colours' change unexplained, where it
    # undoes :func:`colour_jitter` (here with the channels in their order)
    anchors = torch.tensor([[-0.6, -0.5, -0.4], [0.5, 0.2, -0.1]])
    probes = torch.rand(64, 3) - 0.5  # inside what a gain and offset of strength 0.5 keep unclamped
    pixels = torch.cat([anchors, probes])[None, :, :, None].permute(0, 2, 1, 3)  # (1, 3, 66, 1)
    pixels = pixels.expand(256, -1, -1, -1).contiguous()

    def unexplained(change, strength):
        out = change(pixels, strength)[:, :, :, 0]  # (256, 3, 66)
        gain = (out[:, :, 1] - out[:, :, 0]) / (pixels[:, :, 1, 0] - pixels[:, :, 0, 0])
        fitted = out[:, :, :1] + gain[:, :, None] * (pixels[:, :, 2:, 0] - pixels[:, :, :1, 0])
        return (fitted - out[:, :, 2:]).abs().mean().item()

    def affine(p, strength):
        return colour_jitter(p, strength, draw=_no_permutation)

    torch.manual_seed(1)
    assert unexplained(affine, 0.5) < 1e-4
    assert unexplained(colour_map, 0.5) > 0.1 and unexplained(colour_map, 1.0) > 0.2


def test_a_zoom_scales_about_the_centre_and_keeps_the_border():
    x = torch.full((2, 3, 16, 16), -0.5)
    x[:, :, 6:10, 6:10] = 1.0  # a 4-pixel square at the centre on a uniform background
    assert zoom(x, 0.0) is x
    larger = zoom(x, 1.0, draw=lambda shape: torch.ones(shape))  # factor 2: the square doubles
    smaller = zoom(x, 1.0, draw=lambda shape: torch.zeros(shape))  # factor 1/2: it halves
    assert larger.shape == x.shape
    # bilinear: the 8-pixel square of the zoom in has a 6 x 6 core, the zoom out a 2 x 2 square
    assert (larger[0, 0] > 0.9).sum() == 36 and (larger[0, 0] > 0).sum() == 64
    assert (smaller[0, 0] > 0).sum() == 4
    assert torch.allclose(larger[:, :, 0], x[:, :, 0])
    assert torch.allclose(smaller[:, :, 0], x[:, :, 0])
    assert torch.allclose(larger.flip(-1), larger) and torch.allclose(smaller.flip(-2), smaller)


def test_a_negative_pose_zoom_is_refused_by_the_config():
    from rodi.config import Config, ConfigError, validate

    cfg = Config()
    cfg.objective.pose_zoom = -0.1
    with pytest.raises(ConfigError, match="objective.pose_zoom must be >= 0"):
        validate(cfg)


def _no_permutation(shape):
    u = torch.rand(shape)
    u[:, :3] = torch.tensor([0.1, 0.5, 0.9])  # channels in their own order
    return u


def _gradients(modules) -> list[torch.Tensor]:
    return [p.grad for m in modules for p in m.parameters() if p.grad is not None]


@pytest.mark.parametrize("critic_appearance", ["code", "image"])
@pytest.mark.parametrize("variant", [v.name for v in TABLE])
def test_the_critic_loss_alone_leaves_the_encoders_and_decoder_without_gradient(
        variant, critic_appearance):
    """The objective's central claim (docs/method.md section 3): the critics learn from detached
    codes, so their loss moves no network."""
    objective, model = _objective_and_model(variant=variant, warmup_steps=0, epsilon=-1.0,
                                            critic_appearance=critic_appearance)
    out = objective(model, _batch(), step=1)
    out["critic_loss"].backward()
    assert all(torch.count_nonzero(g) == 0 for g in _gradients([model]))
    assert any(torch.count_nonzero(g) > 0 for g in _gradients(objective.critics().values()))


@pytest.mark.parametrize("critic_appearance", ["code", "image"])
@pytest.mark.parametrize("variant", [v.name for v in TABLE])
def test_the_model_loss_and_its_penalty_leave_the_critics_without_gradient(
        variant, critic_appearance):
    """The encoder attacks T through T's detached parameters: the model's loss (reconstruction,
    KL, the MI penalty and any extra terms) gives T, T' and any extra classifier no gradient."""
    objective, model = _objective_and_model(variant=variant, warmup_steps=0, epsilon=-1.0,
                                            critic_appearance=critic_appearance)
    out = objective(model, _batch(), step=1)
    if VARIANTS[variant].constraint:
        assert out["penalty"] > 0  # the penalty is in the loss, with epsilon below any estimate
    out["model_loss"].backward()
    assert all(torch.count_nonzero(g) == 0 for g in _gradients(objective.critics().values()))
    assert any(torch.count_nonzero(g) > 0 for g in _gradients([model.pose_encoder]))



def test_image_critics_read_the_appearance_image_and_not_the_appearance_code():
    """``critic_appearance=image``: T and T' have their own image encoders, so what the appearance
    encoder keeps or drops does not change I_T, and the penalty still reaches the pose encoder
    only (docs/method.md section 9)."""
    objective, model = _objective_and_model(critic_appearance="image", warmup_steps=0,
                                            epsilon=-1e6)
    assert objective.critic.image_encoder is not objective.independent_critic.image_encoder
    for critic in (objective.critic, objective.independent_critic):  # a trained critic
        torch.nn.init.normal_(critic.g[-1].weight, std=0.1)
    batch = _batch()
    torch.manual_seed(3)
    first = objective(model, batch, step=1)
    with torch.no_grad():
        for p in model.appearance_encoder.parameters():
            p.mul_(-2.0)
    torch.manual_seed(3)
    second = objective(model, batch, step=1)
    assert first["mi"] != 0 and second["mi"] == first["mi"]
    assert second["mi_independent"] == first["mi_independent"]
    assert second["penalty"] > 0  # the constraint is on, and it is T on the images
    # the critics learn the images through their own encoders
    second["critic_loss"].backward()
    assert all(torch.count_nonzero(g) == 0 for g in _gradients([model]))
    assert any(torch.count_nonzero(g) > 0
               for g in _gradients([objective.critic.image_encoder]))


def test_image_critics_need_the_model_section():
    with pytest.raises(ValueError, match="critic_appearance=image needs the model section"):
        DisentanglingObjective(ObjectiveConfig(critic_appearance="image"), 4, 4)


@pytest.mark.parametrize("variant", VARIANTS)
def test_under_bf16_autocast_every_loss_term_is_float32_and_near_the_float32_one(variant):
    """The networks run in bf16 and return float32, so reconstruction, KL, critics and penalty are
    computed in float32 (train.precision bf16 or auto)."""
    batch = _batch()
    objective, model = _objective_and_model(variant=variant, warmup_steps=0)
    torch.manual_seed(2)
    full = objective(model, batch, step=1)
    torch.manual_seed(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = objective(model, batch, step=1)
    for name in ("model_loss", "critic_loss", "reconstruction", "kl", "penalty", "mi"):
        assert half[name].dtype == torch.float32, name
        assert torch.isfinite(half[name]), name
    # bf16 keeps about 3 significant digits of each product; the sums stay close
    assert half["reconstruction"].item() == pytest.approx(full["reconstruction"].item(), rel=0.05)
    (half["model_loss"] + half["critic_loss"]).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
