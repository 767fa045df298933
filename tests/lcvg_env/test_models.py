import json

import pytest
import torch
from torch import nn

from lcvg_env.checkpoint import CheckpointError, save_checkpoint
from lcvg_env.control import trusted_values
from lcvg_env.models import (
    GeneratorOutput,
    LayeredGenerator,
    MaskNet,
    ModelConfig,
    VectorQuantizer,
    resolve_device,
)
from lcvg_env.models import quantizer as quantizer_module
from lcvg_env.models.mask_net import OneOutputConv2d

pytestmark = pytest.mark.usefixtures("one_thread")

# Released module sizes (authors' code, BAIR config), in parameters.
RELEASED = {"mask_net": 11.38e6, "encoder": 7.63e6, "decoder": 10.92e6}
PAPER_PRESETS = ["paper_bair", "paper_tennis", "official_bair"]


def frames_like(config: ModelConfig, batch: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, *config.resolution, generator=generator) * 2 - 1


def square_masks(config: ModelConfig, batch: int) -> torch.Tensor:
    masks = torch.zeros(batch, 1, *config.resolution)
    h, w = config.resolution
    masks[:, :, h // 4 : h // 2, w // 4 : w // 2] = 1.0
    return masks


@pytest.fixture(scope="module")
def medium() -> LayeredGenerator:
    torch.manual_seed(0)
    return LayeredGenerator(ModelConfig.medium()).eval()


# --- config -------------------------------------------------------------------------------------
def test_default_config_is_medium_preset():
    assert ModelConfig() == ModelConfig.medium()
    assert ModelConfig.medium().latent_size == (16, 16)
    assert ModelConfig.paper_bair().latent_size == (16, 16)
    assert ModelConfig.paper_tennis().latent_size == (6, 16)
    assert ModelConfig.paper_tennis().resolution == (96, 256)
    official = ModelConfig.official_bair()
    assert official.mask_norm == "batch" and official.legacy_beta
    assert official.replace(mask_norm="group", legacy_beta=False) == ModelConfig.paper_bair()


@pytest.mark.parametrize("preset", ["medium", "tiny", *PAPER_PRESETS])
def test_config_dict_round_trip(preset):
    config = getattr(ModelConfig, preset)()
    data = json.loads(json.dumps(config.to_dict()))  # JSON-safe
    assert isinstance(data["ch_mult"], list)
    again = ModelConfig.from_dict(data)
    assert again == config
    assert isinstance(again.resolution, tuple) and isinstance(again.ch_mult, tuple)


def test_config_from_dict_rejects_unknown_keys():
    data = ModelConfig.medium().to_dict()
    data["n_codes"] = 12
    data["zz_top"] = 1
    with pytest.raises(ValueError, match=r"n_codes.*zz_top"):
        ModelConfig.from_dict(data)
    with pytest.raises(TypeError, match="list"):
        ModelConfig.from_dict([("ch", 3)])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "error", "quoted"),
    [
        ({"resolution": (62, 64)}, ValueError, "(62, 64)"),
        ({"resolution": (64,)}, ValueError, "(64,)"),
        ({"mask_norm": "layer"}, ValueError, "'layer'"),
        ({"ch": 48}, ValueError, "norm_groups=32"),
        ({"ch": 32.0}, TypeError, "32.0"),
        ({"n_embed": 0}, ValueError, "0"),
        ({"dropout": 1.5}, ValueError, "1.5"),
        ({"legacy_beta": 1}, TypeError, "1"),
        ({"ch_mult": ()}, ValueError, "()"),
        ({"patch_size": 0}, ValueError, "0"),
        ({"patch_size": 3}, ValueError, "patch_size=3"),
        ({"mid_attention": "no"}, TypeError, "'no'"),
    ],
)
def test_config_rejects_bad_values(changes, error, quoted):
    with pytest.raises(error) as info:
        ModelConfig.medium().replace(**changes)
    assert quoted in str(info.value)


# --- shapes and sizes ---------------------------------------------------------------------------
@pytest.mark.parametrize("preset", PAPER_PRESETS)
def test_paper_parameter_counts_match_released(preset):
    with torch.device("meta"):
        model = LayeredGenerator(getattr(ModelConfig, preset)())
    counts = model.parameter_counts()
    for name, released in RELEASED.items():
        assert abs(counts[name] - released) / released < 0.02, (name, counts[name])
    assert counts["quantizer"] == 1024 * 256
    # mask net + E + D + codebook + 1x1 convs; the paper's 47.8 M adds discriminator and LPIPS.
    assert 29.5e6 < counts["total"] < 31e6


@pytest.mark.parametrize("norm", ["group", "instance", "batch", "none"])
def test_mask_net_size_barely_depends_on_norm(norm):
    with torch.device("meta"):
        net = MaskNet(ModelConfig.paper_bair().replace(mask_norm=norm))
    count = sum(p.numel() for p in net.parameters())
    assert abs(count - RELEASED["mask_net"]) / RELEASED["mask_net"] < 0.02


def test_medium_preset_size():
    counts = LayeredGenerator(ModelConfig.medium()).parameter_counts()
    assert 1e6 <= counts["total"] <= 3e6


def test_tiny_preset_is_a_32x32_model_of_tens_of_thousands_of_parameters():
    config = ModelConfig.tiny()
    assert config.resolution == (32, 32) and config.latent_size == (16, 16)
    assert 1e4 <= LayeredGenerator(config).parameter_counts()["total"] <= 1e5


@pytest.mark.parametrize("preset", PAPER_PRESETS)
def test_paper_shapes_on_meta(preset):
    config = getattr(ModelConfig, preset)()
    with torch.device("meta"):
        model = LayeredGenerator(config)
        frames = torch.empty(2, 3, *config.resolution)
    masks = model.mask(frames)
    assert masks.shape == (2, 1, *config.resolution)
    latents = model.encode_layers(frames, masks)
    assert latents.foreground.shape == (2, 256, *config.latent_size)
    assert latents.indices.shape == (2, 2, *config.latent_size)
    out = model.generate(frames, masks)
    assert out.frames.shape == (2, 3, *config.resolution)
    assert out.vq_loss.shape == () and out.perplexity.shape == ()


def test_patch_size_folds_pixels_into_channels():
    base = ModelConfig.medium()
    config = base.replace(patch_size=2, ch_mult=(1, 2), mid_attention=False)
    assert config.downsample_factor == 4 and config.latent_size == base.latent_size
    torch.manual_seed(0)
    model = LayeredGenerator(config).eval()
    assert model.encoder.conv_in.in_channels == 12 and model.decoder.conv_out.out_channels == 12
    assert isinstance(model.encoder.mid.attn_1, nn.Identity)
    assert not any(".attn_1." in key for key in model.state_dict())
    frames = frames_like(config, 2)
    with torch.no_grad():
        out = model.generate(frames, square_masks(config, 2))
    assert out.frames.shape == (2, 3, 64, 64) and torch.isfinite(out.frames).all()
    # the encoder's first layer sees a 2x2 block as one input: moving a pixel inside its block
    # changes the features of that block only (conv_in's 3x3 window then spreads it one step)
    with torch.no_grad():
        a = model.encoder.conv_in(torch.nn.functional.pixel_unshuffle(frames, 2))
        moved = frames.clone()
        moved[:, :, 10, 10] += 0.5
        b = model.encoder.conv_in(torch.nn.functional.pixel_unshuffle(moved, 2))
    changed = (a - b).abs().sum((0, 1)) > 0
    assert changed.nonzero().tolist() == [[y, x] for y in (4, 5, 6) for x in (4, 5, 6)]


def test_medium_forward_shapes_and_ranges(medium):
    config = medium.config
    frames = frames_like(config, 3)
    with torch.no_grad():
        masks = medium.mask(frames)
        out = medium.generate(frames, masks)
        full = medium(frames)
    assert masks.shape == (3, 1, 64, 64)
    assert float(masks.min()) >= 0.0 and float(masks.max()) <= 1.0
    assert isinstance(out, GeneratorOutput)
    assert out.frames.shape == (3, 3, 64, 64) and torch.isfinite(out.frames).all()
    assert out.vq_loss.shape == () and float(out.vq_loss) >= 0.0
    assert 1.0 <= float(out.perplexity) <= config.n_embed
    assert torch.equal(medium.predict_next(frames, masks), out.frames)
    assert torch.equal(full.masks, masks) and torch.allclose(full.frames, out.frames)
    with torch.no_grad():
        for threshold in (0.5, float(masks.median())):
            hard = medium.binary_mask(frames, threshold)
            assert hard.dtype == torch.float32 and hard.shape == masks.shape
            assert torch.equal(hard, (masks > threshold).float())


@pytest.mark.parametrize("bias", [True, False])
def test_one_output_conv_equals_the_plain_convolution(bias):
    torch.manual_seed(0)
    fast = OneOutputConv2d(5, 1, 7, padding=2, bias=bias)
    plain = nn.Conv2d(5, 1, 7, padding=2, bias=bias)
    plain.load_state_dict(fast.state_dict())  # same keys and shapes
    for layout in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(3, 5, 20, 17).contiguous(memory_format=layout).requires_grad_()
        y_fast, y_plain = fast(x), plain(x)
        assert y_fast.shape == y_plain.shape == (3, 1, 18, 15)
        assert torch.allclose(y_fast, y_plain, atol=1e-5)
        grads = [torch.autograd.grad(y.square().sum(), [x, m.weight]) for y, m in
                 ((y_fast, fast), (y_plain, plain))]
        for a, b in zip(*grads):
            assert torch.allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("norm", ["group", "instance", "batch", "none"])
def test_masks_in_unit_interval_for_every_norm(norm):
    torch.manual_seed(1)
    model = LayeredGenerator(ModelConfig.medium().replace(mask_norm=norm))
    frames = frames_like(model.config, 2)
    frames[0] = 1.0  # a constant frame is the degenerate case for instance/group statistics
    for mode in (model.train, model.eval):
        mode()
        with torch.no_grad():
            masks = model.mask(frames[:1] if norm != "batch" or mode == model.eval else frames)
        assert torch.isfinite(masks).all()
        assert float(masks.min()) >= 0.0 and float(masks.max()) <= 1.0


@pytest.mark.slow
def test_paper_tennis_real_forward_batch_one():
    torch.manual_seed(0)
    config = ModelConfig.paper_tennis()
    model = LayeredGenerator(config).eval()
    frames = frames_like(config, 1)
    with torch.no_grad():
        out = model(frames)
    assert out.frames.shape == (1, 3, 96, 256) and out.masks.shape == (1, 1, 96, 256)
    assert torch.isfinite(out.frames).all()


# --- quantiser ----------------------------------------------------------------------------------
def test_quantizer_picks_nearest_code_and_chunks(monkeypatch):
    torch.manual_seed(0)
    quantizer = VectorQuantizer(64, 8)
    quantizer.embedding.weight.data.normal_()
    z = torch.randn(3, 8, 5, 7)
    out = quantizer(z)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 8)
    expected = torch.cdist(flat, quantizer.embedding.weight).argmin(1).view(3, 5, 7)
    assert torch.equal(out.indices, expected)
    assert torch.allclose(out.z_q, quantizer.lookup(expected))
    monkeypatch.setattr(quantizer_module, "_MAX_DISTANCE_ELEMENTS", 64 * 10)  # 10-row chunks
    assert torch.equal(quantizer(z).indices, expected)


def test_quantizer_straight_through_gradient():
    torch.manual_seed(0)
    quantizer = VectorQuantizer(16, 4)
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    weights = torch.randn(2, 4, 3, 3)
    (quantizer(z).z_q * weights).sum().backward()
    assert z.grad is not None and torch.allclose(z.grad, weights)


@pytest.mark.parametrize("legacy", [False, True])
def test_quantizer_beta_placement(legacy):
    torch.manual_seed(0)
    beta = 0.25
    quantizer = VectorQuantizer(16, 4, beta=beta, legacy_beta=legacy)
    quantizer.embedding.weight.data.normal_()
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    out = quantizer(z)
    out.loss.backward()
    z_q = out.z_q.detach()
    mse = (z_q - z.detach()).pow(2).mean()
    encoder_weight, codebook_weight = (1.0, beta) if legacy else (beta, 1.0)
    assert torch.allclose(out.loss, (encoder_weight + codebook_weight) * mse)
    # d/dz of w ||sg[z_q] - z||^2 / N = 2 w (z - z_q) / N
    expected = 2 * encoder_weight * (z.detach() - z_q) / z.numel()
    assert z.grad is not None and torch.allclose(z.grad, expected, atol=1e-7)
    # the codebook gradient carries the other weight
    grad = quantizer.embedding.weight.grad
    assert grad is not None
    used = out.indices.flatten()[0]
    mask = (out.indices == used).unsqueeze(1).float()  # (B, 1, h, w)
    manual = (2 * codebook_weight * (z_q - z.detach()) * mask).sum((0, 2, 3)) / z.numel()
    assert torch.allclose(grad[used], manual, atol=1e-7)


def test_quantizer_perplexity_extremes():
    quantizer = VectorQuantizer(4, 2)
    quantizer.embedding.weight.data = torch.tensor([[1.0, 0], [-1, 0], [0, 1], [0, -1]])
    same = torch.tensor([1.0, 0]).view(1, 2, 1, 1).expand(1, 2, 2, 2)
    assert torch.allclose(quantizer(same).perplexity, torch.tensor(1.0), atol=1e-4)
    spread = quantizer.embedding.weight.data.t().reshape(1, 2, 2, 2)
    assert torch.allclose(quantizer(spread).perplexity, torch.tensor(4.0), atol=1e-4)


def test_quantizer_rejects_bad_input():
    quantizer = VectorQuantizer(8, 4)
    with pytest.raises(ValueError, match=r"\(2, 3, 5, 5\)"):
        quantizer(torch.zeros(2, 3, 5, 5))
    with pytest.raises(TypeError, match="int64"):
        quantizer(torch.zeros(2, 4, 5, 5, dtype=torch.int64))


# --- layering behaviour -------------------------------------------------------------------------
def test_layers_see_only_their_pixels(medium):
    config = medium.config
    frames = frames_like(config, 2, seed=1)
    masks = square_masks(config, 2)
    outside_changed = frames * masks + frames_like(config, 2, seed=2) * (1 - masks)
    inside_changed = frames * (1 - masks) + frames_like(config, 2, seed=3) * masks
    with torch.no_grad():
        base = medium.encode_layers(frames, masks)
        out = medium.encode_layers(outside_changed, masks)
        inn = medium.encode_layers(inside_changed, masks)
    assert torch.equal(out.indices[0], base.indices[0])  # fg unchanged by the background
    assert not torch.equal(out.indices[1], base.indices[1])
    assert torch.equal(inn.indices[1], base.indices[1])  # bg unchanged by the foreground
    assert not torch.equal(inn.indices[0], base.indices[0])
    # a full mask leaves an empty (all-zero) background layer whatever the frame
    ones = torch.ones_like(masks)
    with torch.no_grad():
        full_a = medium.encode_layers(frames, ones)
        full_b = medium.encode_layers(inside_changed, ones)
    assert torch.equal(full_a.background, full_b.background)
    assert not torch.equal(full_a.foreground, full_b.foreground)


def test_batch_entries_are_independent(medium):
    config = medium.config
    frames = frames_like(config, 3, seed=4)
    masks = torch.rand(3, 1, *config.resolution, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        codes = medium.encode_layers(frames, masks).indices  # (2, B, h', w')
        codes_alone = [medium.encode_layers(frames[i : i + 1], masks[i : i + 1]) for i in range(3)]
        together = medium.predict_next(frames, masks)
        alone = torch.cat(
            [medium.predict_next(frames[i : i + 1], masks[i : i + 1]) for i in (0, 1, 2)]
        )
        flipped = medium.predict_next(frames.flip(0), masks.flip(0))
    # each entry's fg is paired with its own bg: same codes alone, in a batch, or reordered
    assert torch.equal(codes, torch.cat([c.indices for c in codes_alone], dim=1))
    # (float kernels differ slightly between batch sizes)
    assert torch.allclose(together, alone, atol=1e-4)
    assert torch.allclose(together.flip(0), flipped, atol=1e-4)


def test_gradients_reach_mask_net_only_through_soft_masks():
    torch.manual_seed(0)
    model = LayeredGenerator(ModelConfig.medium())
    frames = frames_like(model.config, 2)
    out = model(frames)
    (out.frames.abs().mean() + out.vq_loss).backward()
    assert model.last_layer is model.decoder.conv_out.weight
    assert model.last_layer.grad is not None and model.last_layer.grad.abs().sum() > 0
    stem = model.mask_net.layers[1].weight
    assert stem.grad is not None and stem.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    binary = (model.mask(frames) > 0.5).float()  # stage II: binarised masks cut the gradient
    model(frames, binary).frames.mean().backward()
    assert stem.grad is None
    assert model.encoder.conv_in.weight.grad is not None


def test_channels_last_and_bf16_autocast(medium):
    frames = frames_like(medium.config, 2).contiguous(memory_format=torch.channels_last)
    masks = square_masks(medium.config, 2)
    with torch.no_grad():
        reference = medium.predict_next(frames.contiguous(), masks)
        model = LayeredGenerator(medium.config).eval()
        model.load_state_dict(medium.state_dict())
        model = model.to(memory_format=torch.channels_last)
        out = model.predict_next(frames, masks)
        assert torch.allclose(out, reference, atol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(frames)
    assert low.frames.dtype == torch.bfloat16 and low.vq_loss.dtype == torch.float32
    assert torch.isfinite(low.frames.float()).all()


def test_official_batchnorm_mask_net_runs_on_single_frames():
    model = LayeredGenerator(ModelConfig.medium().replace(mask_norm="batch", legacy_beta=True))
    frames = frames_like(model.config, 1)
    model.eval()
    with torch.no_grad():
        assert model.mask(frames).shape == (1, 1, 64, 64)
    assert "mask_net.layers.2.running_mean" in model.state_dict()


def test_state_dict_keys_follow_released_layout():
    with torch.device("meta"):
        model = LayeredGenerator(ModelConfig.official_bair())
    keys = set(model.state_dict())
    for key in [
        "mask_net.layers.1.weight",  # resnet_mask.model.1.weight (7x7 stem, no bias)
        "mask_net.layers.2.running_var",
        "mask_net.layers.10.conv_block.1.weight",  # first residual block
        "mask_net.layers.26.bias",  # 7x7 output conv
        "encoder.conv_in.weight",
        "encoder.down.0.block.0.norm1.weight",
        "encoder.down.2.block.0.nin_shortcut.weight",
        "encoder.down.3.downsample.conv.weight",
        "encoder.down.4.attn.1.proj_out.weight",
        "encoder.mid.attn_1.q.weight",
        "encoder.conv_out.weight",
        "quant_conv.weight",
        "quantizer.embedding.weight",
        "post_quant_conv.weight",
        "decoder.up.4.attn.2.k.weight",
        "decoder.up.1.upsample.conv.weight",
        "decoder.up.0.block.2.conv2.weight",
        "decoder.mid.block_2.norm2.bias",
        "decoder.conv_out.weight",
    ]:
        assert key in keys, key
    assert "mask_net.layers.1.bias" not in keys
    assert not any(k.startswith("encoder.down.4.downsample") for k in keys)
    assert not any(k.startswith("decoder.up.0.upsample") for k in keys)


# --- input validation ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("frames", "error", "quoted"),
    [
        (torch.zeros(2, 3, 64, 64, dtype=torch.uint8), TypeError, "torch.uint8"),
        (torch.zeros(2, 4, 64, 64), ValueError, "(2, 4, 64, 64)"),
        (torch.zeros(2, 3, 32, 64), ValueError, "(2, 3, 32, 64)"),
        (torch.zeros(3, 64, 64), ValueError, "(3, 64, 64)"),
        (torch.zeros(0, 3, 64, 64), ValueError, "(0, 3, 64, 64)"),
        (torch.full((1, 3, 64, 64), 255.0), ValueError, "255"),
        (torch.full((1, 3, 64, 64), float("nan")), ValueError, "NaN"),
        (torch.zeros(1, 3, 64, 64).numpy(), TypeError, "ndarray"),
    ],
)
def test_bad_frames_are_rejected(medium, frames, error, quoted):
    with pytest.raises(error) as info:
        medium.mask(frames)
    assert quoted in str(info.value)
    if isinstance(frames, torch.Tensor) and frames.dim() == 4 and frames.shape[0] > 0:
        with pytest.raises(error):
            medium.predict_next(frames, torch.zeros(frames.shape[0], 1, 64, 64))


@pytest.mark.parametrize(
    ("masks", "error", "quoted"),
    [
        (torch.zeros(2, 1, 64, 64, dtype=torch.bool), TypeError, "torch.bool"),
        (torch.zeros(2, 3, 64, 64), ValueError, "(2, 3, 64, 64)"),
        (torch.zeros(1, 1, 64, 64), ValueError, "(1, 1, 64, 64)"),
        (torch.full((2, 1, 64, 64), 2.0), ValueError, "2"),
        (torch.full((2, 1, 64, 64), -0.5), ValueError, "-0.5"),
    ],
)
def test_bad_masks_are_rejected(medium, masks, error, quoted):
    frames = frames_like(medium.config, 2)
    with pytest.raises(error) as info:
        medium.generate(frames, masks)
    assert quoted in str(info.value)


def test_value_checks_can_be_switched_off(medium):
    bright = torch.full((1, 3, 64, 64), 3.0)
    with torch.no_grad(), trusted_values():
        medium.mask(bright)  # accepted: only shapes/dtypes checked
        with pytest.raises(TypeError):
            medium.mask(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
        with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
            medium.generate(frames_like(medium.config, 1), torch.zeros(1, 2, 64, 64))
        medium.generate(frames_like(medium.config, 1), torch.full((1, 1, 64, 64), 2.0))
    # the switch is the one of lcvg_env.control, and the model keeps no copy of it
    with pytest.raises(ValueError, match=r"in \[-1, 1\]"):
        medium.mask(bright)


def test_constructor_and_decode_validation(medium):
    with pytest.raises(TypeError, match="dict"):
        LayeredGenerator({"ch": 8})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(2, 64, 8, 8\)"):
        medium.decode(torch.zeros(2, 64, 8, 8))


# --- checkpoints and devices --------------------------------------------------------------------
def test_checkpoint_round_trip(tmp_path, medium):
    path = medium.save(tmp_path / "medium.safetensors", metadata={"note": "test"})
    loaded = LayeredGenerator.from_checkpoint(path, device="cpu")
    assert loaded.config == medium.config and not loaded.training
    frames = frames_like(medium.config, 2)
    with torch.no_grad():
        assert torch.equal(loaded(frames).frames, medium(frames).frames)


def test_checkpoint_errors(tmp_path, medium):
    no_model = save_checkpoint(tmp_path / "a.safetensors", medium.state_dict(), {"training": {}})
    with pytest.raises(CheckpointError, match="'training'"):
        LayeredGenerator.from_checkpoint(no_model, device="cpu")
    other = ModelConfig.medium().replace(n_embed=128).to_dict()
    wrong = save_checkpoint(tmp_path / "b.safetensors", medium.state_dict(), {"model": other})
    with pytest.raises(CheckpointError, match="quantizer.embedding.weight"):
        LayeredGenerator.from_checkpoint(wrong, device="cpu")
    bad = dict(medium.config.to_dict(), colour="blue")
    unknown = save_checkpoint(tmp_path / "c.safetensors", medium.state_dict(), {"model": bad})
    with pytest.raises(CheckpointError, match="colour"):
        LayeredGenerator.from_checkpoint(unknown, device="cpu")
    with pytest.raises(FileNotFoundError):
        LayeredGenerator.from_checkpoint(tmp_path / "missing.safetensors", device="cpu")


def test_resolve_device():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("meta")) == torch.device("meta")
    with pytest.raises(ValueError, match="'potato'"):
        resolve_device("potato")
    with pytest.raises(TypeError, match="int"):
        resolve_device(0)  # type: ignore[arg-type]
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            resolve_device("cuda")
