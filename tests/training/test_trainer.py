import contextlib
import json
import math
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from lcvg_env import compositing, shadows
from lcvg_env.configs import describe_fields
from lcvg_env.models import LayeredGenerator, ModelConfig
from training import cli
from training.config import TrainConfig, apply_ablation, preset
from training.loop import Trainer, train
from training.phase_losses import PHASE_LOSSES
from training.pseudo_control import PseudoBatch, PseudoControl
from training.stage2_inputs import composite_inputs, self_forced_inputs
from training.step import train_step
from training.step_context import PHASES

from .conftest import tiny_config


def test_every_field_is_documented_and_on_the_command_line(capsys):
    rows = describe_fields(TrainConfig())
    assert all(doc for name, _, doc in rows), [n for n, _, d in rows if not d]
    with pytest.raises(SystemExit):
        cli.train_main(["--help"])
    text = capsys.readouterr().out
    for name, _, _ in rows:
        if name != "preset":
            assert f"--{name.replace('_', '-')}" in text, name
    assert "lambda_bg of stage I" in text  # the field's doc is the help
    # the defaults shown are those of the default preset, not of a bare TrainConfig()
    small = preset("small")
    assert f"(small preset: {small.stage1_steps})" in " ".join(text.split())
    assert small.stage1_steps != TrainConfig().stage1_steps


def test_overrides_and_presets(capsys):
    assert cli.train_main(["--preset", "paper_bair", "--print-config", "--bg-weight", "7",
                           "--model.ch", "32", "--flip", "true"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["bg_weight"] == 7 and cfg["model"]["ch"] == 32 and cfg["flip"] is True
    assert cfg["ratio_start"] == 80 and cfg["ratio_halve_every"] == 1000
    assert cfg["stage1_steps"] == 10_000 and cfg["learning_rate"] == 4.5e-6
    off = preset("official_bair")
    assert off.perceptual_weight == 0 and off.bg_weight == 50 and off.stage2_bg_weight == 5
    assert off.fg_hinge and off.fg_tau == 0.04 and off.fg_diff == "luma"
    assert off.model.legacy_beta and off.control_source == "future_mask"
    assert (off.adam_beta1, off.adam_beta2, off.batch_size, off.scale_lr) == (0.5, 0.9, 8, True)
    tennis = preset("paper_tennis")
    assert (tennis.ratio_start, tennis.ratio_halve_every, tennis.stage2_bg_weight) == (
        10, 5000, 0.5)
    assert tennis.model.resolution == (96, 256)
    with pytest.raises(ValueError, match="control_source"):
        TrainConfig(control_source="magic")
    d = preset("small").to_dict()
    assert TrainConfig.from_dict(d) == preset("small")
    with pytest.raises(ValueError, match="bogus"):
        TrainConfig.from_dict({**d, "bogus": 1})


def test_ablations_change_the_right_weights(tiny_data, tmp_path):
    base = TrainConfig()
    no_bg = apply_ablation(replace(base, ablate="no_bg"))
    assert not no_bg.bg_loss and no_bg.bg_weight == base.bg_weight
    assert apply_ablation(replace(base, ablate="no_bin")).bin_weight == 0
    assert apply_ablation(replace(base, ablate="fixed_prior")).fg_prior == "fixed"
    no_fg = apply_ablation(replace(base, ablate="no_fg"))
    from training.schedules import fg_weight
    assert fg_weight(0, no_fg.bg_weight, no_fg.ratio_start, no_fg.ratio_end,
                     no_fg.ratio_halve_every) == 0
    # no_bg drops L_bg only: the size prior, whose weight is bg_weight / ratio, stays on
    train(tiny_config(tiny_data, stage1_steps=2, stage2_steps=0, ablate="no_bg"),
          tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text()
            .splitlines()]
    logged = [r for r in rows if "stage1/train/bg_weight" in r]
    assert logged and all(r["stage1/train/bg_weight"] == 0 for r in logged)
    assert all(r["stage1/train/fg_weight"] > 0 for r in logged)


def test_training_writes_run_folder_and_metrics(tiny_data, tmp_path):
    trainer = train(tiny_config(tiny_data), tmp_path / "run")
    assert trainer.finished and trainer.step == 5
    run = tmp_path / "run"
    for name in ("config.json", "metrics.jsonl", "model.safetensors",
                 "checkpoints/last.safetensors", "checkpoints/stage1.safetensors"):
        assert (run / name).is_file(), name
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    keys = set().union(*rows)
    for key in ("stage1/train/rec_loss", "stage1/train/bg_loss", "stage1/train/fg_loss",
                "stage1/train/bin_loss", "stage1/train/d_loss", "stage1/train/d_weight",
                "stage1/train/mask_iou", "stage2/train/bg2_loss", "stage2/train/rec_loss"):
        assert key in keys, key
    assert "stage2/train/fg_loss" not in keys  # L_fg and L_bin are dropped in stage II
    assert list((run / "samples").glob("stage2_*.png"))
    from lcvg_env.models import LayeredGenerator
    model = LayeredGenerator.from_checkpoint(run / "model.safetensors", device="cpu")
    assert model.config == tiny_config(tiny_data).model


def test_self_forcing_feeds_the_generators_own_output_to_stage2(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, stage1_steps=1, stage2_steps=2, self_forcing=1.0,
                      rec_motion_weight=5.0)
    trainer = train(cfg, tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert [r["stage2/train/self_forced"] for r in rows if "stage2/train/self_forced" in r] == [
        1.0, 1.0]
    assert not any("stage1/train/self_forced" in r for r in rows)

    generator = trainer.generator.eval()
    ctx = SimpleNamespace(generator=generator, autocast=contextlib.nullcontext)
    torch.manual_seed(0)
    frame = torch.rand(3, 3, *cfg.model.resolution) * 2 - 1
    masks = (torch.rand(3, 1, *cfg.model.resolution) > 0.7).float()
    with torch.no_grad():
        own = generator.generate(frame, masks).frames.clamp(-1, 1)
    forced, share = self_forced_inputs(ctx, frame, masks, 1.0)
    assert share == 1.0 and torch.allclose(forced, own, atol=1e-6)
    kept, share = self_forced_inputs(ctx, frame, masks, 0.0)
    assert share == 0.0 and kept is frame
    with torch.no_grad():  # two steps: the second with M's binarised mask of the first output
        two = generator.generate(own, (generator.mask(own) > 0.5).float()).frames.clamp(-1, 1)
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        forced, _ = self_forced_inputs(ctx, frame, masks, 1.0, max_steps=2)
        matches = [k for k, ref in ((1, own), (2, two)) if torch.allclose(forced, ref, atol=1e-5)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert seen == {1, 2}
    with pytest.raises(ValueError, match="self_forcing"):
        TrainConfig(self_forcing=1.5)
    with pytest.raises(ValueError, match="self_forcing_steps"):
        TrainConfig(self_forcing_steps=0)


def test_pair_union_trains_the_mask_of_both_frames(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, stage1_steps=2, stage2_steps=0, bg_mask="pair_union")
    trainer = Trainer(cfg, tmp_path / "run")
    forward, _ = trainer._wrap()
    torch.manual_seed(0)
    frame, target = (torch.rand(2, 3, *cfg.model.resolution) * 2 - 1 for _ in range(2))
    g = trainer.generator.eval()  # the same normalisation statistics in both calls
    with torch.no_grad():
        _, masks, *_, next_masks = forward(frame, None, False, target)
    assert next_masks is not None and next_masks.shape == masks.shape
    assert torch.allclose(masks, g.mask(frame), atol=1e-6)
    assert torch.allclose(next_masks, g.mask(target), atol=1e-6)
    train(cfg, tmp_path / "run2")
    rows = [json.loads(line) for line in (tmp_path / "run2/metrics.jsonl").read_text()
            .splitlines()]
    assert any("stage1/train/bg_loss" in r for r in rows)
    with pytest.raises(ValueError, match="bg_mask"):
        TrainConfig(bg_mask="both")


def test_stage2_really_freezes_the_mask_net(tiny_data, tmp_path):
    # BatchNorm in M: its running statistics must not move in stage II either.
    cfg = tiny_config(tiny_data, stage1_steps=1, stage2_steps=2)
    cfg = replace(cfg, model=cfg.model.replace(mask_norm="batch"))
    snapshots = {}

    def hook(trainer, step, logs):
        if step == 1:  # end of stage I
            snapshots["before"] = {k: v.clone() for k, v in
                                   trainer.generator.mask_net.state_dict().items()}
        if step == 2:
            net = trainer.generator.mask_net
            assert not net.training
            assert not any(p.requires_grad for p in net.parameters())
            in_opt = {id(p) for g in trainer.opt_g.param_groups for p in g["params"]}
            assert not any(id(p) in in_opt for p in net.parameters())

    trainer = train(cfg, tmp_path / "run", hooks=[hook])
    after = trainer.generator.mask_net.state_dict()
    for key, value in snapshots["before"].items():
        assert torch.equal(value, after[key]), key


def test_step_context_of_stage2_leaves_the_mask_net_out(tiny_data, tmp_path):
    trainer = Trainer(tiny_config(tiny_data), tmp_path / "run")
    mask_params = {id(p) for p in trainer.generator.mask_net.parameters()}
    ctx = trainer.step_context("stage1")
    assert any(id(p) in mask_params for g in ctx.opt_g.param_groups for p in g["params"])
    ctx = trainer.step_context("stage2", start=3)
    assert ctx.phase == "stage2" and ctx.phase_start == 3
    assert not any(id(p) in mask_params for g in ctx.opt_g.param_groups for p in g["params"])
    assert not trainer.generator.mask_net.training
    with pytest.raises(ValueError, match="'stage3'"):
        trainer.step_context("stage3")


def test_every_phase_has_a_loss_and_the_step_refuses_others(tiny_data, tmp_path):
    assert tuple(PHASE_LOSSES) == PHASES
    trainer = Trainer(tiny_config(tiny_data), tmp_path / "run")
    ctx = trainer.step_context("stage1")
    ctx.phase = "stage3"
    batch = {"frame": torch.zeros(2, 3, 32, 32), "next_frame": torch.zeros(2, 3, 32, 32)}
    with pytest.raises(ValueError, match="'stage3'"):
        train_step(ctx, batch, 0)


def test_compiled_training_runs_with_the_gan(tiny_data, tmp_path):
    # The adaptive GAN weight differentiates the loss twice through the compiled generator.
    # aot_eager traces what inductor would compile (and failed the same way) without
    # generating code, which would take minutes here.
    cfg = tiny_config(tiny_data, compile=True, compile_backend="aot_eager", stage="1",
                      stage1_steps=2)
    assert cfg.disc_weight > 0 and cfg.disc_start <= 1
    trainer = train(cfg, tmp_path / "run")
    assert trainer.finished
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    weights = [row["stage1/train/d_weight"] for row in rows if "stage1/train/d_weight" in row]
    assert weights and all(math.isfinite(w) for w in weights)


def test_pseudo_control_binarises_and_caches():
    torch.manual_seed(0)
    frame = torch.zeros(2, 3, 16, 16)
    nxt = torch.zeros(2, 3, 16, 16)
    frame[:, :, 4:8, 4:8] = 1
    nxt[:, :, 4:8, 6:10] = 1

    def mask_fn(x):
        return (x[:, :1] > 0.5).float() * 0.9

    pc = PseudoControl("fitted_translation", iterations=4)
    m_t, m_c, logs = pc(mask_fn, frame, nxt, torch.tensor([3, 7]))
    assert set(m_c.unique().tolist()) <= {0.0, 1.0}
    assert m_c[:, :, 4:8, 6:10].mean() > 0.9 and logs["fit_iou"] > 0.9
    assert sorted(pc.cache) == [3, 7]
    _, m_c2, logs2 = pc(mask_fn, frame, nxt, torch.tensor([3, 7]))
    assert logs2["fit_cache_hits"] == 2 and torch.equal(m_c, m_c2)
    fresh = PseudoControl("fitted_translation")
    fresh.load_state_dict(pc.state_dict())
    assert sorted(fresh.cache) == [3, 7]
    _, future, _ = PseudoControl("future_mask")(mask_fn, frame, nxt)
    assert torch.equal(future, (nxt[:, :1] > 0.5).float())


def test_pseudo_control_per_object():
    frame = torch.zeros(1, 3, 32, 32)
    nxt = torch.zeros(1, 3, 32, 32)
    frame[:, :, 4:10, 4:10] = 1
    frame[:, :, 20:26, 20:26] = 1
    nxt[:, :, 4:10, 8:14] = 1  # the first square moves right, the second down
    nxt[:, :, 23:29, 20:26] = 1

    def mask_fn(x):
        return (x[:, :1] > 0.5).float()

    whole = PseudoControl("fitted_translation", iterations=8)
    per = PseudoControl("fitted_translation", iterations=8, objects=2)
    _, m_whole, _ = whole(mask_fn, frame, nxt, torch.tensor([0]))
    _, m_per, logs = per(mask_fn, frame, nxt, torch.tensor([0]))
    target = mask_fn(nxt)
    assert (m_per - target).abs().sum() <= 4 < (m_whole - target).abs().sum()
    assert per.cache[0].shape == (2, 2, 3)
    _, again, _ = per(mask_fn, frame, nxt, torch.tensor([0]))
    assert torch.equal(again, m_per)


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="--data"):
        Trainer(TrainConfig(device="cpu"), tmp_path / "run")


def test_composite_stage2_starts_from_no_correction(tiny_data, tmp_path):
    # stage II of a composite model trains G's correction of the moved pixels: it starts from
    # none (the decoder's last layer zeroed), so after one Adam step of lr 6e-4 its weights
    # are tiny, where the paper's path keeps its stage I weights
    model = tiny_config(tiny_data).model
    cfg = tiny_config(tiny_data, stage1_steps=2, stage2_steps=1, self_forcing=1.0,
                      model=model.replace(prediction="composite"))
    trainer = Trainer(cfg, tmp_path / "run")
    assert trainer.fit()
    assert float(trainer.generator.decoder.conv_out.weight.detach().abs().max()) <= 2e-3
    paper = Trainer(tiny_config(tiny_data, stage1_steps=2, stage2_steps=1), tmp_path / "paper")
    assert paper.fit()
    assert float(paper.generator.decoder.conv_out.weight.detach().abs().max()) > 1e-2
    with pytest.raises(ValueError, match="future_mask"):
        tiny_config(tiny_data, control_source="future_mask",
                    model=model.replace(prediction="composite"))


def test_composite_stage2_moves_the_drop_shadow_with_its_object():
    # stage II trains the simulator's path: f_t's shadow leaves with the object and is cast
    # beside the place it moves to, over a canvas freed of it
    generator = LayeredGenerator(ModelConfig.tiny().replace(resolution=(48, 48),
                                                            prediction="composite"))
    ctx = SimpleNamespace(generator=generator, autocast=contextlib.nullcontext)
    y, x = torch.meshgrid(torch.linspace(-1, 1, 48), torch.linspace(-1, 1, 48), indexing="ij")
    background = torch.stack([0.2 + 0.2 * x, 0.1 - 0.1 * y, 0.3 + 0.1 * x * y])[None]
    square = torch.zeros(1, 1, 48, 48)
    square[..., 14:26, 10:22] = 1
    moved = torch.roll(square, 8, dims=-1)  # theta below: 8 px right
    shadow = shadows.DropShadow(torch.tensor([[2, 1]]), torch.tensor([3]), torch.tensor([0.4]))
    colour = torch.tensor([0.9, -0.6, -0.2]).view(1, 3, 1, 1)
    frame = shadows.cast(background, shadow, square).image * (1 - square) + colour * square
    truth = shadows.cast(background, shadow, moved).image * (1 - moved) + colour * moved
    theta = torch.tensor([[1.0, 0.0, -16 / 48], [0.0, 1.0, 0.0]]).view(1, 1, 2, 3)
    pseudo = PseudoBatch(square, moved, square, theta, torch.zeros_like(square), {})
    comp, control = composite_inputs(ctx, frame, pseudo)
    assert torch.equal(control, moved)
    # away from both places' rims and the hole the object leaves (filled from around)
    open_ = compositing.dilate(torch.maximum(square, moved), 2).expand_as(frame) == 0
    assert float((comp.image - truth)[open_].abs().max()) < 0.03
    assert float((frame - truth)[open_].abs().max()) > 0.1  # a ghost and a missing shadow
    assert float((comp.image - truth)[(moved == 1).expand_as(frame)].abs().max()) < 1e-4


def test_composite_stage2_trains_through_the_light_estimator_without_changing_it(tiny_data,
                                                                                  tmp_path):
    # a shaded model's stage II composites are relit by its estimator, which it does not train
    model_config = tiny_config(tiny_data).model.replace(prediction="composite", shading=True)
    torch.manual_seed(0)
    start = LayeredGenerator(model_config)
    assert start.light is not None
    with torch.no_grad():  # a strong, known light: left to right, exp(+-0.5)
        start.light.head[-1].weight.zero_()
        start.light.head[-1].bias.copy_(torch.tensor([0.5, 0.0]))
    init = start.save(tmp_path / "shaded.safetensors")
    cfg = tiny_config(tiny_data, stage1_steps=0, stage2_steps=2, init=str(init),
                      model=model_config, stage="2")
    trainer = Trainer(cfg, tmp_path / "run")
    assert trainer.fit()
    light = trainer.generator.light
    assert light is not None
    for name, value in start.light.state_dict().items():
        assert torch.equal(light.state_dict()[name], value), name
