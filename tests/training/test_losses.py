import math

import pytest
import torch

from training import losses, metrics, schedules
from training.discriminator import PatchDiscriminator
from training.perceptual import VGG16Perceptual, _vgg16_features, find_vgg16_weights


def test_reconstruction_is_weighted_l1():
    pred = torch.zeros(2, 3, 4, 4)
    target = torch.full((2, 3, 4, 4), 0.5)
    loss, logs = losses.reconstruction_loss(pred, target, weight=2.0)
    assert loss.item() == pytest.approx(1.0)
    assert logs["rec_loss"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="matching"):
        losses.reconstruction_loss(pred, target[:, :1])


def test_motion_weights_make_changed_pixels_count_more():
    target = torch.zeros(1, 3, 4, 4)
    pred = target.clone()
    pred[..., 0, 0] = 1.0  # error on one changed pixel
    pred[..., 3, 3] = 1.0  # and on one static pixel
    changed = torch.zeros(1, 1, 4, 4)
    changed[..., 0, 0] = 1.0
    weights = losses.motion_weights(changed, 9.0)
    loss, logs = losses.reconstruction_loss(pred, target, 2.0, weights)
    assert loss.item() == pytest.approx(2.0 * (10.0 + 1.0) * 3 / 48)
    assert logs["rec_loss"] == pytest.approx(2 * 3 / 48)  # the log stays the plain L1
    with pytest.raises(ValueError, match="-1"):
        losses.motion_weights(changed, -1.0)
    with pytest.raises(ValueError, match=r"\(1, 1, 2, 2\)"):
        losses.reconstruction_loss(pred, target, 1.0, torch.ones(1, 1, 2, 2))


def test_vq_term_requires_scalar():
    loss, logs = losses.vq_loss_term(torch.tensor(0.3), weight=2.0)
    assert loss.item() == pytest.approx(0.6) and logs["vq_loss"] == pytest.approx(0.3)
    with pytest.raises(ValueError):
        losses.vq_loss_term(torch.ones(3))


def test_gan_losses():
    real, fake = torch.full((2, 1, 3, 3), 2.0), torch.full((2, 1, 3, 3), -2.0)
    d, logs = losses.discriminator_loss(real, fake, "hinge")
    assert d.item() == 0.0 and logs["logits_real"] == 2.0
    d, _ = losses.discriminator_loss(fake, real, "hinge")
    assert d.item() == pytest.approx(3.0)
    d, _ = losses.discriminator_loss(real, fake, "vanilla")
    assert d.item() == pytest.approx(math.log1p(math.exp(-2.0)))
    g, _ = losses.generator_gan_loss(fake, "hinge")
    assert g.item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="unknown GAN loss"):
        losses.generator_gan_loss(fake, "wgan")


def test_adaptive_weight_matches_gradient_ratio_and_is_clamped():
    w = torch.randn(3, 4, requires_grad=True)
    x = torch.randn(5, 4)
    rec = (x @ w.t()).abs().mean()
    gan = 0.1 * (x @ w.t()).pow(2).mean()
    gr = torch.autograd.grad(rec, w, retain_graph=True)[0]
    gg = torch.autograd.grad(gan, w, retain_graph=True)[0]
    expected = 0.5 * gr.norm() / (gg.norm() + 1e-4)
    got = losses.adaptive_gan_weight(rec, gan, w, disc_weight=0.5)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    assert not got.requires_grad
    # a GAN loss with no gradient gives the clamp 1e4 (x disc_weight)
    zero_gan = 0.0 * (x @ w.t()).sum()
    assert losses.adaptive_gan_weight(100 * rec, zero_gan, w, 1.0).item() == pytest.approx(1e4)
    # reduce is applied to both gradients before the norms
    halved = losses.adaptive_gan_weight(rec, gan, w, 0.5, reduce=lambda t: t * 2)
    assert halved.item() == pytest.approx(expected.item(), rel=1e-3)


def test_background_loss_only_counts_unmasked_change():
    f = torch.zeros(1, 3, 4, 4)
    g = f.clone()
    g[..., :2, :2] = 1.0  # change in the top-left corner
    masks = torch.zeros(1, 1, 4, 4)
    loss_empty, _ = losses.background_loss(masks, f, g)
    masks[..., :2, :2] = 1
    loss_cover, logs = losses.background_loss(masks, f, g)
    assert loss_empty.item() == pytest.approx(4 * 3 / 48)
    assert loss_cover.item() == 0.0 and logs["bg_loss"] == 0.0
    l2, _ = losses.stage2_background_loss(masks, g, f, weight=5.0)
    assert l2.item() == 0.0


def test_pair_union_lets_each_mask_cover_only_its_own_frame():
    # a square moves 2 px right: with m_t alone, L_bg needs the pixels it moves into as well
    f, g = torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8)
    f[..., 2:5, 1:4] = 1.0
    g[..., 2:5, 3:6] = 1.0
    m_t, m_next = f[:, :1].clone(), g[:, :1].clone()  # the true object masks
    alone, _ = losses.background_loss(m_t, f, g)
    union = losses.pair_union(m_t, m_next)
    both, _ = losses.background_loss(union, f, g)
    assert alone.item() > 0 and both.item() == 0.0
    assert torch.equal(union, torch.maximum(m_t, m_next))
    soft = torch.full((1, 1, 8, 8), 0.5, requires_grad=True)
    nxt = torch.full((1, 1, 8, 8), 0.5, requires_grad=True)
    losses.pair_union(soft, nxt).sum().backward()
    assert soft.grad is not None and nxt.grad is not None and (soft.grad > 0).all()
    with pytest.raises(ValueError, match="pair_union"):
        losses.pair_union(m_t, torch.zeros(1, 1, 4, 4))


def test_changed_pixels_and_size_prior():
    f = torch.zeros(2, 3, 4, 4)
    g = f.clone()
    g[0, :, 0, 0] = 0.5
    mu = losses.changed_pixels(f, g, tau=0.1)
    assert mu.shape == (2, 1, 4, 4) and mu.sum() == 1
    assert losses.changed_pixels(f, g, tau=0.6).sum() == 0
    assert losses.changed_pixels(f, g, tau=0.1, diff="luma").sum() == 1
    m = torch.full((2, 1, 4, 4), 0.5)
    loss, logs = losses.size_prior_loss(m, mu)
    assert loss.item() == pytest.approx(((0.5 - 1 / 16) + 0.5) / 2)
    assert logs["mask_size"] == pytest.approx(0.5)
    small = torch.zeros(2, 1, 4, 4)
    hinge, _ = losses.size_prior_loss(small, mu, hinge=True)
    assert hinge.item() == 0.0  # smaller than the prior: no penalty one-sided
    fixed, _ = losses.size_prior_loss(small, 0.15, weight=2.0)
    assert fixed.item() == pytest.approx(0.3)


def test_binarization_loss():
    assert losses.binarization_loss(torch.ones(1, 1, 2, 2))[0].item() == 0.0
    assert losses.binarization_loss(torch.full((1, 1, 2, 2), 0.5))[0].item() == 0.5
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        losses.binarization_loss(torch.ones(1, 2, 2, 2))


def test_ratio_schedules_are_pure_functions_of_step():
    bair = [schedules.bg_fg_ratio(s, 80, 5, 1000) for s in (0, 999, 1000, 2000, 3000, 4000, 9000)]
    assert bair == [80, 80, 40, 20, 10, 5, 5]
    tennis = [schedules.bg_fg_ratio(s, 10, 5, 5000) for s in (0, 4999, 5000, 9999)]
    assert tennis == [10, 10, 5, 5]
    assert schedules.bg_fg_ratio(7000, 5, 5, 2000) == 5  # the released code: constant
    assert schedules.fg_weight(0, 50, 5, 5, 2000) == 10
    assert schedules.fg_weight(10, 50, math.inf, math.inf, 100) == 0.0
    assert schedules.gan_factor(9, 10) == 0.0 and schedules.gan_factor(10, 10) == 1.0
    assert schedules.lr_factor(0, 4) == 0.25 and schedules.lr_factor(10, 4) == 1.0
    with pytest.raises(ValueError):
        schedules.bg_fg_ratio(-1, 80, 5, 1000)


def test_discriminator_shape():
    d = PatchDiscriminator(ndf=8, n_layers=3, norm="group")
    out = d(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 1, 6, 6)
    with pytest.raises(ValueError):
        PatchDiscriminator(norm="spectral")


def test_perceptual_needs_weights_and_says_where(tmp_path, monkeypatch):
    monkeypatch.delenv("LCVG_VGG16_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with pytest.raises(FileNotFoundError, match="vgg16-397923af.pth"):
        find_vgg16_weights(tmp_path / "nothing.pth")


def test_perceptual_loads_our_own_vgg16_state_dict(tmp_path, monkeypatch):
    torch.manual_seed(0)
    features = _vgg16_features()
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    path = tmp_path / "vgg16.pth"
    torch.save(state, path)
    net = VGG16Perceptual.from_file(path)
    assert not any(p.requires_grad for p in net.parameters())
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.allclose(net(x, x), torch.zeros(2), atol=1e-6)
    y = x.flip(-1)
    d = net(x, y)
    assert (d > 0).all()
    loss, logs = losses.perceptual_loss(net, x, y, weight=1.0)
    assert logs["perceptual_loss"] > 0 and loss.requires_grad is False
    # also found through the environment variable
    monkeypatch.setenv("LCVG_VGG16_WEIGHTS", str(path))
    assert find_vgg16_weights() == path
    with pytest.raises(ValueError, match="not a VGG-16"):
        VGG16Perceptual({"features.0.weight": torch.zeros(1)})


def test_metrics():
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.isinf(metrics.psnr(x, x)).all()
    noisy = (x + 0.1).clamp(-1, 1)
    assert (metrics.psnr(noisy, x) > 20).all()
    assert torch.allclose(metrics.ssim(x, x), torch.ones(2), atol=1e-5)
    assert (metrics.ssim(-x, x) < 0.5).all()
    a = torch.zeros(2, 1, 4, 4)
    b = torch.zeros(2, 1, 4, 4)
    a[0, :, :2] = 1
    b[0, :, :1] = 1
    assert metrics.mask_iou(a, b).tolist() == [0.5, 1.0]
    p = torch.tensor([[0.0, 0.0], [3.0, 4.0], [math.nan, 0.0]])
    q = torch.zeros(3, 2)
    assert metrics.position_rmse(p, q, width=10) == pytest.approx(math.sqrt(0.25 / 2))
    errors = torch.tensor([0.01, 0.02, 0.03, 0.5, math.nan])
    assert metrics.median_and_gross_rate(errors, gross=0.1) == pytest.approx((0.025, 0.25))
    assert all(math.isnan(v) for v in metrics.median_and_gross_rate(errors[4:], gross=0.1))
