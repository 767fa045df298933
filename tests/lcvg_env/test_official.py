"""The converter of the authors' released checkpoint.

The released state dict is rebuilt here from the released code's architecture (read from the
public repository: taming-transformers' Encoder/Decoder with ``ddconfig``, ``VectorQuantizer2``,
the 1x1 ``quant_conv``/``post_quant_conv``, the CycleGAN ``ResnetGenerator(3, 1, 64,
n_blocks=9)`` with BatchNorm as ``resnet_mask``, and the loss module with its discriminator and
LPIPS), independently of our modules: names and shapes only.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lcvg_env.checkpoint import CheckpointError
from lcvg_env.models import LayeredGenerator, ModelConfig
from lcvg_env.official import convert_official, convert_state_dict, main, rename_key

Shapes = dict[str, tuple[int, ...]]


def released_shapes(
    resolution: int = 256,
    ch: int = 64,
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4),
    num_res_blocks: int = 2,
    attn_resolutions: tuple[int, ...] = (16,),
    z_channels: int = 256,
    n_embed: int = 1024,
    embed_dim: int = 256,
    ngf: int = 64,
    n_blocks: int = 9,
) -> Shapes:
    """Key -> shape of the released ``VQARAutoMaskModel.state_dict()`` (defaults: bair.yaml)."""
    s: Shapes = {}

    def conv(name: str, cout: int, cin: int, k: int, bias: bool = True) -> None:
        s[f"{name}.weight"] = (cout, cin, k, k)
        if bias:
            s[f"{name}.bias"] = (cout,)

    def norm(name: str, c: int) -> None:
        s[f"{name}.weight"] = (c,)
        s[f"{name}.bias"] = (c,)

    def resblock(name: str, cin: int, cout: int) -> None:
        norm(f"{name}.norm1", cin)
        conv(f"{name}.conv1", cout, cin, 3)
        norm(f"{name}.norm2", cout)
        conv(f"{name}.conv2", cout, cout, 3)
        if cin != cout:
            conv(f"{name}.nin_shortcut", cout, cin, 1)

    def attn(name: str, c: int) -> None:
        norm(f"{name}.norm", c)
        for part in ("q", "k", "v", "proj_out"):
            conv(f"{name}.{part}", c, c, 1)

    def mid(prefix: str, c: int) -> None:
        resblock(f"{prefix}.mid.block_1", c, c)
        attn(f"{prefix}.mid.attn_1", c)
        resblock(f"{prefix}.mid.block_2", c, c)

    # taming Encoder (double_z False)
    conv("encoder.conv_in", ch, 3, 3)
    in_mult = (1, *ch_mult)
    res = resolution
    block_in = ch
    for i in range(len(ch_mult)):
        block_in, block_out = ch * in_mult[i], ch * ch_mult[i]
        for j in range(num_res_blocks):
            resblock(f"encoder.down.{i}.block.{j}", block_in, block_out)
            block_in = block_out
            if res in attn_resolutions:
                attn(f"encoder.down.{i}.attn.{j}", block_in)
        if i != len(ch_mult) - 1:
            conv(f"encoder.down.{i}.downsample.conv", block_in, block_in, 3)
            res //= 2
    mid("encoder", block_in)
    norm("encoder.norm_out", block_in)
    conv("encoder.conv_out", z_channels, block_in, 3)
    # taming Decoder
    block_in = ch * ch_mult[-1]
    res = resolution // 2 ** (len(ch_mult) - 1)
    conv("decoder.conv_in", block_in, z_channels, 3)
    mid("decoder", block_in)
    for i in reversed(range(len(ch_mult))):
        block_out = ch * ch_mult[i]
        for j in range(num_res_blocks + 1):
            resblock(f"decoder.up.{i}.block.{j}", block_in, block_out)
            block_in = block_out
            if res in attn_resolutions:
                attn(f"decoder.up.{i}.attn.{j}", block_in)
        if i != 0:
            conv(f"decoder.up.{i}.upsample.conv", block_in, block_in, 3)
            res *= 2
    norm("decoder.norm_out", block_in)
    conv("decoder.conv_out", 3, block_in, 3)
    # quantiser and 1x1 convs
    s["quantize.embedding.weight"] = (n_embed, embed_dim)
    conv("quant_conv", embed_dim, z_channels, 1)
    conv("post_quant_conv", z_channels, embed_dim, 1)

    # CycleGAN ResnetGenerator(3, 1, ngf, norm_layer=BatchNorm2d, n_blocks) (bias-free convs)
    def bn(name: str, c: int) -> None:
        norm(name, c)
        s[f"{name}.running_mean"] = (c,)
        s[f"{name}.running_var"] = (c,)
        s[f"{name}.num_batches_tracked"] = ()

    m = "resnet_mask.model"
    conv(f"{m}.1", ngf, 3, 7, bias=False)
    bn(f"{m}.2", ngf)
    conv(f"{m}.4", 2 * ngf, ngf, 3, bias=False)
    bn(f"{m}.5", 2 * ngf)
    conv(f"{m}.7", 4 * ngf, 2 * ngf, 3, bias=False)
    bn(f"{m}.8", 4 * ngf)
    for b in range(n_blocks):
        conv(f"{m}.{10 + b}.conv_block.1", 4 * ngf, 4 * ngf, 3, bias=False)
        bn(f"{m}.{10 + b}.conv_block.2", 4 * ngf)
        conv(f"{m}.{10 + b}.conv_block.5", 4 * ngf, 4 * ngf, 3, bias=False)
        bn(f"{m}.{10 + b}.conv_block.6", 4 * ngf)
    up = 10 + n_blocks
    s[f"{m}.{up}.weight"] = (4 * ngf, 2 * ngf, 3, 3)  # ConvTranspose2d: (in, out, kH, kW)
    bn(f"{m}.{up + 1}", 2 * ngf)
    s[f"{m}.{up + 3}.weight"] = (2 * ngf, ngf, 3, 3)
    bn(f"{m}.{up + 4}", ngf)
    conv(f"{m}.{up + 7}", 1, ngf, 7)
    # training loss (dropped by the converter)
    conv("loss.discriminator.main.0", 64, 3, 4)
    norm("loss.discriminator.main.3", 128)
    conv("loss.perceptual_loss.net.slice1.0", 64, 3, 3)
    s["loss.perceptual_loss.lin0.model.1.weight"] = (1, 64, 1, 1)
    return s


def make_state_dict(shapes: Shapes, device: str = "cpu") -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    out = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(7, dtype=torch.long, device=device)
        elif device == "meta":
            out[key] = torch.empty(shape, device="meta")
        elif key.endswith("running_var"):
            out[key] = torch.rand(shape, generator=generator) + 0.5
        else:
            out[key] = torch.randn(shape, generator=generator)
    return out


SMALL = {
    "resolution": 32, "ch": 8, "ch_mult": (1, 2), "num_res_blocks": 1,
    "attn_resolutions": (16,), "z_channels": 8, "n_embed": 16, "embed_dim": 8, "ngf": 4,
    "n_blocks": 2,
}
SMALL_CONFIG = ModelConfig.official_bair().replace(
    resolution=(32, 32), ch=8, ch_mult=(1, 2), num_res_blocks=1, z_channels=8, norm_groups=4,
    n_embed=16, embed_dim=8, mask_ngf=4, mask_n_blocks=2, mask_norm_groups=4,
)


def test_released_bair_shapes_convert_onto_official_bair() -> None:
    released = make_state_dict(released_shapes(), device="meta")
    ours = convert_state_dict(released)
    assert not any(key.startswith(("loss.", "resnet_mask", "quantize.")) for key in ours)
    counts = {
        part: sum(v.numel() for k, v in ours.items() if k.startswith(part) and "running" not in k
                  and "num_batches" not in k)
        for part in ("mask_net", "encoder", "quant_conv", "decoder", "post_quant_conv")
    }
    # the released modules' sizes (issue 2): mask net 11.38 M, encoder 7.63 M, decoder 10.92 M
    assert counts["mask_net"] == pytest.approx(11.38e6, rel=0.01)
    assert counts["encoder"] + counts["quant_conv"] == pytest.approx(7.63e6, rel=0.01)
    assert counts["decoder"] + counts["post_quant_conv"] == pytest.approx(10.92e6, rel=0.01)


def test_released_tennis_shapes_convert_at_96x256() -> None:
    released = make_state_dict(released_shapes(), device="meta")  # same weights, other size
    convert_state_dict(released, ModelConfig.official_bair().replace(resolution=(96, 256)))


def test_rename_rules() -> None:
    assert rename_key("resnet_mask.model.19.weight") == "mask_net.layers.19.weight"
    assert rename_key("quantize.embedding.weight") == "quantizer.embedding.weight"
    assert rename_key("encoder.down.4.attn.1.q.weight") == "encoder.down.4.attn.1.q.weight"
    assert rename_key("loss.discriminator.main.0.weight") is None
    with pytest.raises(CheckpointError, match="optimizer"):
        rename_key("optimizer.state")


def test_weights_land_in_the_right_modules(tmp_path: Path) -> None:
    released = make_state_dict(released_shapes(**SMALL))
    ours = convert_state_dict(released, SMALL_CONFIG)
    model = LayeredGenerator(SMALL_CONFIG)
    model.load_state_dict(ours, strict=True)
    assert torch.equal(model.mask_net.layers[1].weight, released["resnet_mask.model.1.weight"])
    assert torch.equal(model.mask_net.layers[19].weight, released["resnet_mask.model.19.weight"])
    assert torch.equal(
        model.mask_net.layers[2].running_var, released["resnet_mask.model.2.running_var"]
    )
    assert torch.equal(model.quantizer.embedding.weight, released["quantize.embedding.weight"])
    assert torch.equal(
        model.decoder.up[1].upsample.conv.weight, released["decoder.up.1.upsample.conv.weight"]
    )
    assert torch.equal(model.encoder.mid.attn_1.q.weight, released["encoder.mid.attn_1.q.weight"])


def test_mismatches_are_listed() -> None:
    released = make_state_dict(released_shapes(**SMALL))
    released.pop("encoder.conv_in.bias")
    released["decoder.conv_out.weight"] = torch.zeros(3, 8, 5, 5)
    released["something.else"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as error:
        convert_state_dict(released, SMALL_CONFIG)
    message = str(error.value)
    assert "something.else" in message
    assert "encoder.conv_in.bias" in message
    assert "decoder.conv_out.weight: released (3, 8, 5, 5)" in message


def test_command_line_needs_trust_pickle(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    released = make_state_dict(released_shapes(**SMALL))
    ckpt = tmp_path / "bair.ckpt"
    torch.save(
        {"state_dict": released, "global_step": 123, "epoch": 4, "optimizer_states": [{}]}, ckpt
    )
    out = tmp_path / "out" / "bair.safetensors"
    assert main([str(ckpt), str(out)]) == 2
    assert "--trust-pickle" in capsys.readouterr().err
    assert not out.exists()
    # the CLI converts the paper's architecture; a small one goes through the Python API
    assert main([str(ckpt), str(out), "--trust-pickle"]) == 2
    assert "does not fit" in capsys.readouterr().err


def test_convert_file_and_load_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lcvg_env.official as official

    released = make_state_dict(released_shapes(**SMALL))
    ckpt = tmp_path / "bair.ckpt"
    torch.save({"state_dict": released, "global_step": 123}, ckpt)
    monkeypatch.setattr(
        official.ModelConfig, "official_bair", classmethod(lambda cls: SMALL_CONFIG)
    )
    out = convert_official(ckpt, tmp_path / "bair.safetensors", trust_pickle=True,
                           resolution=(32, 32))
    model = LayeredGenerator.from_checkpoint(out, device="cpu")
    assert model.config.mask_norm == "batch" and model.config.legacy_beta
    assert torch.equal(model.quantizer.embedding.weight, released["quantize.embedding.weight"])
    with torch.inference_mode():
        frames = torch.zeros(1, 3, 32, 32)
        assert model.predict_next(frames, model.mask(frames)).shape == (1, 3, 32, 32)


def test_bare_state_dict_and_missing_file(tmp_path: Path) -> None:
    from lcvg_env.official import load_released

    bare = tmp_path / "bare.pt"
    torch.save({"encoder.conv_in.weight": torch.zeros(1)}, bare)
    assert "state_dict" in load_released(bare, trust_pickle=True)
    with pytest.raises(FileNotFoundError):
        load_released(tmp_path / "nope.ckpt", trust_pickle=True)
