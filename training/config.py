"""Training configuration: one frozen dataclass, documented per field, and the named presets.

The command line of ``lcvg-train`` is generated from this file (``lcvg_env.configs``): every
field becomes a flag (``--batch-size 8``, ``--model.embed-dim 64`` for the nested model config)
whose help text is the string literal written under the field. Presets:

* ``paper_bair`` / ``paper_tennis``: the numbers of the paper (method.md).
* ``official_bair``: what the authors' released code actually runs.
* ``small``: 64x64 frames, trains on two CPU cores in well under an hour.

Loss weights follow the released code's parametrisation: ``bg_weight`` is lambda_bg and the
foreground (size prior) weight is ``lambda_fg = bg_weight / ratio(step)`` where ``ratio`` is the
lambda_bg : lambda_fg schedule of the paper (see :func:`training.schedules.bg_fg_ratio`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, get_args

from lcvg_env.configs import check_choices, config_json, config_to_dict
from lcvg_env.models import ModelConfig

Ablation = Literal["no_bg", "no_fg", "no_bin", "fixed_prior", "single_stage"]
"""The paper's ablations (:func:`apply_ablation`)."""
ABLATIONS: tuple[Ablation, ...] = get_args(Ablation)
ControlSource = Literal["fitted_affine", "fitted_translation", "future_mask"]
"""Stage II pseudo controls (``TrainConfig.control_source``)."""
CONTROL_SOURCES: tuple[ControlSource, ...] = get_args(ControlSource)
BgMask = Literal["frame", "pair_union"]
"""Masks of L_bg and L_fg in stage I (``TrainConfig.bg_mask``)."""
BG_MASKS: tuple[BgMask, ...] = get_args(BgMask)
Preset = Literal["small", "sprites", "paper_bair", "paper_tennis", "official_bair"]
"""Named training presets (``preset``)."""
PRESETS: tuple[Preset, ...] = get_args(Preset)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run of both stages (model config nested)."""

    preset: str = "small"
    """Name of the preset these values started from (informational)."""
    data: str = ""
    """Dataset root in the folder-per-clip layout (root/{train,val,test}/NNNNN/00000.png ...)."""
    seed: int = 0
    """Seed of every random number generator (torch, numpy, python, data order)."""
    device: str = "auto"
    """Training device: "auto" (CUDA when available, else CPU), "cpu", "cuda", "cuda:1"..."""
    stage: Literal["1", "2", "both"] = "both"
    """Which stages to run: "1", "2" (needs --init or a run that finished stage I) or "both"."""
    stage1_steps: int = 2000
    """Optimiser steps of stage I (layers and next-frame prediction)."""
    stage2_steps: int = 600
    """Optimiser steps of stage II (obeying edited masks)."""
    init: str = ""
    """Generator checkpoint to start from (e.g. RUN/checkpoints/stage1.safetensors with
    --stage 2)."""
    batch_size: int = 8
    """GLOBAL batch size (split evenly over the processes of a torchrun job)."""
    num_workers: int = 0
    """DataLoader worker processes per training process."""
    gap: int = 1
    """Frame gap between f_t and f_{t+1} in the training pairs."""
    flip: bool = False
    """Random horizontal flips of training pairs (disables the stage II fit cache)."""
    learning_rate: float = 6e-4
    """Base Adam learning rate of the generator and discriminator."""
    scale_lr: bool = False
    """Multiply the learning rate by the global batch size (the VQGAN code's convention)."""
    adam_beta1: float = 0.5
    """Adam beta1 (VQGAN: 0.5)."""
    adam_beta2: float = 0.9
    """Adam beta2 (VQGAN: 0.9)."""
    grad_clip: float = 0.0
    """Clip the generator's gradient norm to this value (0: no clipping)."""
    warmup_steps: int = 0
    """Linear learning-rate warm-up at the start of each stage (0: none)."""
    rec_weight: float = 1.0
    """Weight of the L1 reconstruction term |f_{t+1} - f^_{t+1}|_1."""
    rec_motion_weight: float = 0.0
    """Extra L1 weight on the pixels that change between f_t and f_{t+1} (mu_t of the size
    prior, same fg_tau and fg_diff): their error counts (1 + this) times. Not in the paper (0);
    small models otherwise learn the background and leave small moving objects grey."""
    vq_weight: float = 1.0
    """Weight (lambda_VQ) of the quantiser's codebook + commitment terms."""
    code_reset_every: int = 100
    """Every N steps, re-initialise codebook entries unused since the last reset to random
    encoder outputs of the current batch (dead-code restart; not in the paper; 0: never)."""
    perceptual_weight: float = 0.0
    """Weight of the VGG-16 perceptual loss (needs ImageNet weights, see perceptual_weights)."""
    perceptual_weights: str = ""
    """Path of a torchvision VGG-16 state dict ("" = $LCVG_VGG16_WEIGHTS, then the torch hub
    cache checkpoints/vgg16-397923af.pth)."""
    disc_weight: float = 0.0
    """Factor on the adaptive GAN weight (VQGAN disc_weight); 0 disables the GAN."""
    disc_start: int = 1000
    """Stage I step from which the discriminator trains and the GAN term is added."""
    disc_loss: Literal["hinge", "vanilla"] = "hinge"
    """Discriminator loss: "hinge" or "vanilla"."""
    disc_layers: int = 3
    """Strided conv layers of the PatchGAN discriminator."""
    disc_ndf: int = 64
    """Channels of the discriminator's first layer."""
    disc_norm: Literal["batch", "group", "instance", "none"] = "batch"
    """Discriminator normalisation: "batch" (pix2pix/VQGAN), "group", "instance" or "none"."""
    disc_lr_factor: float = 1.0
    """Discriminator learning rate = learning_rate x this."""
    bg_weight: float = 50.0
    """lambda_bg of stage I: weight of L_bg = |(1 - m_t) (f_t - f_{t+1})|_1."""
    bg_loss: bool = True
    """Apply L_bg in stage I. Off only for the no_bg ablation: lambda_fg = bg_weight / ratio,
    so zeroing bg_weight would switch the size prior off as well."""
    ratio_start: float = 10.0
    """lambda_bg : lambda_fg at step 0 (lambda_fg = bg_weight / ratio)."""
    ratio_end: float = 5.0
    """Floor of the ratio schedule."""
    ratio_halve_every: int = 250
    """Halve the ratio every this many stage I steps until it reaches ratio_end (0: never)."""
    bg_mask: BgMask = "frame"
    """Which mask L_bg and L_fg of stage I use: "frame" (the paper: m_t = M(f_t)) or
    "pair_union" (1 - (1 - m_t)(1 - m_{t+1}) with m_{t+1} = M(f_{t+1}), both trained). M sees one
    frame, so with "frame" every changed pixel, including where the object will move to,
    must lie in m_t: m_t grows a ring of about the per-frame motion around the object. With
    the union each mask only needs to cover its own frame's object. Not in the paper."""
    fg_prior: Literal["dynamic", "fixed"] = "dynamic"
    """Size prior of L_fg: "dynamic" (mean(mu_t), mu_t = changed pixels) or "fixed"."""
    fixed_prior: float = 0.15
    """Target mask fraction when fg_prior is "fixed" (the paper's ablation: 0.15)."""
    fg_tau: float = 0.08
    """Threshold tau on the per-pixel frame difference that defines mu_t."""
    fg_diff: Literal["rgb_l1", "luma"] = "rgb_l1"
    """Per-pixel difference: "rgb_l1" (mean over channels of |f_{t+1} - f_t|) or "luma"."""
    fg_hinge: bool = False
    """One-sided size prior max(mean(m) - mean(mu), 0) (released code) instead of |.|."""
    bin_weight: float = 1.0
    """lambda_bin: weight of L_bin = mean(min(m, 1 - m))."""
    bin_ramp_steps: int = 1000
    """Ramp lambda_bin linearly from 0 to bin_weight over this many stage I steps (0: none).
    L_bin is symmetric: at full weight from step 0 it freezes every pixel on its side of 0.5
    before the mask has found the moving objects."""
    stage2_bg_weight: float = 5.0
    """lambda_bg of stage II (L'_bg = |(1 - m_t) (f~_{t+1} - f_{t+1})|_1)."""
    control_source: ControlSource = "fitted_affine"
    """Stage II pseudo control: "fitted_affine", "fitted_translation" or "future_mask"."""
    self_forcing: float = 0.0
    """Stage II: probability per pair that the input f_t is replaced by G's own one-step output
    G(f_t, binarise(M(f_t))) (no gradient), so that G learns to step from generated frames as
    the simulator feeds them back. Not in the paper (0)."""
    self_forcing_steps: int = 1
    """Stage II, with self_forcing: the replaced input is G applied k times, k drawn uniformly
    from 1..this per step (each later application with binarise(M) of the previous output), so
    that G also learns from the more degraded frames of later rollout steps."""
    control_objects: int = 3
    """Fit one transform per connected component of M's mask (up to this many, each matched to
    the nearest component of the next mask; the paper's multi-object control) instead of one
    for the whole mask (0)."""
    fit_iterations: int = 16
    """Refinement iterations of the stage II pseudo-control fit (lcvg_env.control.fit_control:
    moment-based start + Levenberg-Marquardt, which replaces the paper's 1000 Adam steps)."""
    fit_cache: bool = True
    """Cache fitted controls per pair index (valid because M is frozen in stage II)."""
    ablate: Literal["", Ablation] = ""
    """Paper ablation: "", "no_bg", "no_fg", "no_bin", "fixed_prior" or "single_stage"."""
    log_every: int = 25
    """Write metrics every this many steps."""
    sample_every: int = 250
    """Write a PNG sample grid every this many steps (0: only at the end of a stage)."""
    checkpoint_every: int = 250
    """Write the resumable checkpoint every this many steps (and always on stop)."""
    keep_checkpoints: int = 2
    """Resumable checkpoints kept (the newest ``last.safetensors``, older ones ``last-1``,
    ``last-2``...); --resume falls back to an older one when the newest is unreadable."""
    eval_clips: int = 8
    """Held-out clips scored at the end of training (0: skip the final evaluation)."""
    eval_horizon: int = 16
    """Rollout length T of the final evaluation (clips need T + 1 frames)."""
    eval_split: str = "test"
    """Held-out split of the final evaluation ("val" is used when "test" does not exist)."""
    amp: Literal["auto", "bf16", "none"] = "auto"
    """Mixed precision: "auto" (bf16 autocast on CUDA, none on CPU), "bf16" or "none"."""
    channels_last: Literal["auto", "on", "off"] = "auto"
    """channels_last memory format: "auto" (the faster layout of the device), "on" or "off".
    Auto is channels-last on CPUs, where the small preset's steps are faster in it, and
    contiguous on CUDA, where every GroupNorm copies channels-last tensors to the contiguous
    layout and back, which makes the official_bair step slower (docs/performance.md, "Training
    steps")."""
    compile: bool = False
    """Wrap the generator and discriminator in torch.compile."""
    compile_backend: str = "inductor"
    """torch.compile backend with compile on: "inductor" (generates fused kernels) or any of
    torch._dynamo.list_backends(); "aot_eager" traces the same graphs without generating code
    (fast to start; for debugging a compiled run)."""
    deterministic: bool = True
    """torch.use_deterministic_algorithms (exact resume); off for speed on GPUs."""
    progress: bool = True
    """Show a tqdm progress bar (rank 0 only)."""
    model: ModelConfig = field(default_factory=lambda: small_model())
    """Network configuration (lcvg_env.models.ModelConfig)."""

    def __post_init__(self) -> None:
        """Validate choices (the ``Literal`` annotations) and ranges, naming the offending value."""
        check_choices(self)
        for name in ("stage1_steps", "stage2_steps", "ratio_halve_every", "disc_start",
                     "warmup_steps", "num_workers", "sample_every", "eval_clips",
                     "code_reset_every", "control_objects", "bin_ramp_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("batch_size", "gap", "log_every", "checkpoint_every", "disc_layers",
                     "disc_ndf", "fit_iterations", "eval_horizon", "self_forcing_steps",
                     "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.self_forcing <= 1.0:
            raise ValueError(
                f"TrainConfig.self_forcing must be in [0, 1], got {self.self_forcing}")
        if self.model.shading and not self.init:
            raise ValueError(
                "TrainConfig.model.shading needs --init: a checkpoint whose light estimator "
                "`python -m training.light` trained (the trainer keeps it as it is)")
        if self.rec_motion_weight < 0:
            raise ValueError(
                f"TrainConfig.rec_motion_weight must be >= 0, got {self.rec_motion_weight}")
        if self.ratio_start <= 0 or self.ratio_end <= 0:
            raise ValueError(
                f"ratios must be > 0, got ratio_start={self.ratio_start}, "
                f"ratio_end={self.ratio_end}")
        if not isinstance(self.model, ModelConfig):
            raise TypeError(f"TrainConfig.model must be a ModelConfig, got {type(self.model)}")
        if self.model.prediction == "composite" and self.control_source == "future_mask":
            raise ValueError("model.prediction 'composite' moves objects by fitted transforms: "
                             "control_source must be 'fitted_affine' or 'fitted_translation', "
                             "got 'future_mask'")
        if self.model.prediction == "composite" and self.ablate == "single_stage":
            raise ValueError("model.prediction 'composite' trains in stage II; the "
                             "'single_stage' ablation has none")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (the model config nested under "model")."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; rejects unknown keys, naming them."""
        if not isinstance(d, Mapping):
            raise TypeError(f"TrainConfig.from_dict expects a mapping, got {type(d)}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig keys: {unknown}")
        kwargs = dict(d)
        if "model" in kwargs and not isinstance(kwargs["model"], ModelConfig):
            kwargs["model"] = ModelConfig.from_dict(kwargs["model"])
        return cls(**kwargs)

    def to_json(self) -> str:
        """Indented JSON of :meth:`to_dict`."""
        return config_json(self)


# ----------------------------------------------------------------------------------- presets
def preset(name: str) -> TrainConfig:
    """Return the named preset (one of :data:`PRESETS`)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {PRESETS}")
    return _PRESET_FACTORIES[name]()


def small_model() -> ModelConfig:
    """Return the ``small`` preset's model: ModelConfig.medium() slimmed for 2 CPU cores.

    8 base channels at 64x64 (16 at 32x32, 32 at 16x16), a 16x16 latent of 32-dim codes (128 of
    them), attention only in the middle blocks, and a mask network of width 8 with 2 residual
    blocks: about 0.25 M parameters, several times cheaper per step than ModelConfig.medium()
    (docs/performance.md). The mask
    network's GroupNorm uses 2 groups: with one channel per group (the default at this width)
    it acts as an instance norm, and its ReLU features died on the objects (the mask stayed
    just under 0.5 there).
    The encoder/decoder GroupNorm uses 1 group (a layer norm over channels and space): with
    few channels per group the per-group normalisation erased the objects' key colours, and
    the generator drew every object as the same grey blob.
    """
    return ModelConfig.medium().replace(
        ch=8, ch_mult=(1, 2, 4), norm_groups=1, z_channels=32, embed_dim=32, n_embed=128,
        attn_resolutions=(), mask_ngf=8, mask_norm_groups=2, mask_n_blocks=2)


def _small() -> TrainConfig:
    # Tuned on procedural sprites at 64x64 on 2 CPU cores (docs/training.md, docs/results.md).
    return TrainConfig(preset="small", stage1_steps=4000, stage2_steps=3000,
                       rec_motion_weight=20.0, bg_mask="pair_union", self_forcing=0.5,
                       model=small_model())


def _sprites() -> TrainConfig:
    # The small preset with composite prediction (lcvg_env.compositing): stage II trains G to
    # correct moved pixels instead of redrawing them. The bundled sprites models use it.
    base = _small()
    return replace(base, preset="sprites", model=base.model.replace(prediction="composite"))


def _paper_bair() -> TrainConfig:
    # method.md: Adam 4.5e-6 (x batch x GPUs as in VQGAN), 10,000 stage I iterations, ratio
    # 80:1 halved every 1,000 until 5:1, stage II lambda_bg 5, affine pseudo control (the paper
    # fits it with 1,000 Adam steps; lcvg_env.control.fit_control gets there with a closed-form
    # start and a few Levenberg-Marquardt steps). lambda_bg of stage I is not given in the paper:
    # we take the released code's 50. The paper does not give tau either: 0.04 as in the released
    # code.
    return TrainConfig(
        preset="paper_bair", stage1_steps=10_000, stage2_steps=10_000, batch_size=8,
        learning_rate=4.5e-6, scale_lr=True, perceptual_weight=1.0, disc_weight=1.0,
        disc_start=1, disc_norm="batch", bg_weight=50.0, ratio_start=80.0, ratio_end=5.0,
        ratio_halve_every=1000, fg_tau=0.04, fg_diff="luma", bin_ramp_steps=0, code_reset_every=0,
        stage2_bg_weight=5.0,
        control_source="fitted_affine", control_objects=0, log_every=50,
        sample_every=1000, checkpoint_every=1000, deterministic=False,
        model=ModelConfig.paper_bair())


def _paper_tennis() -> TrainConfig:
    # Tennis: ratio 10:1 halved once after 5,000 iterations; stage II lambda_bg 0.5.
    return replace(
        _paper_bair(), preset="paper_tennis", ratio_start=10.0, ratio_end=5.0,
        ratio_halve_every=5000, stage2_bg_weight=0.5, model=ModelConfig.paper_tennis())


def _official_bair() -> TrainConfig:
    # The released code: perceptual weight 0; BG weight 50 until step 10,000 (= our stage I)
    # then 5 (= our stage II); sparsity weight = BG / ratio with ratio 5 halved every 2,000
    # steps, floor 5 (constant); one-sided size prior with tau 0.04 on luma; binarisation 1;
    # disc start 1, disc weight 1; Adam (0.5, 0.9), lr 4.5e-6 x batch x GPUs, batch 8; the
    # quantiser's legacy beta placement; stage II trains on the future mask.
    return TrainConfig(
        preset="official_bair", stage1_steps=10_000, stage2_steps=10_000, batch_size=8,
        learning_rate=4.5e-6, scale_lr=True, adam_beta1=0.5, adam_beta2=0.9,
        perceptual_weight=0.0, disc_weight=1.0, disc_start=1, disc_norm="batch",
        bg_weight=50.0, ratio_start=5.0, ratio_end=5.0, ratio_halve_every=2000,
        fg_tau=0.04, fg_diff="luma", fg_hinge=True, bin_weight=1.0, bin_ramp_steps=0,
        code_reset_every=0,
        stage2_bg_weight=5.0,
        control_source="future_mask", control_objects=0, log_every=50, sample_every=1000,
        checkpoint_every=1000,
        deterministic=False, model=_official_model())


def _official_model() -> ModelConfig:
    model = ModelConfig.official_bair()
    if any(f.name == "legacy_beta" for f in fields(model)):
        model = replace(model, legacy_beta=True)
    return model


_PRESET_FACTORIES = {
    "small": _small,
    "sprites": _sprites,
    "paper_bair": _paper_bair,
    "paper_tennis": _paper_tennis,
    "official_bair": _official_bair,
}


def apply_ablation(config: TrainConfig) -> TrainConfig:
    """Return the config with ``config.ablate`` applied to the loss weights.

    * no_bg: L_bg off in stage I, the size prior kept (expected: the mask collapses to empty);
    * no_fg: no size prior (expected: the mask fills the frame);
    * no_bin: lambda_bin = 0 (expected: soft masks that leak the next frame);
    * fixed_prior: size prior fixed at ``fixed_prior`` (expected: masks of fixed size);
    * single_stage: stage I and stage II losses at once, from step 0 (the loop reads ablate).
    """
    a = config.ablate
    if a == "no_bg":
        return replace(config, bg_loss=False)
    if a == "no_fg":
        # lambda_fg = bg_weight / ratio: an infinite ratio switches the prior off.
        return replace(config, ratio_start=float("inf"), ratio_end=float("inf"))
    if a == "no_bin":
        return replace(config, bin_weight=0.0)
    if a == "fixed_prior":
        return replace(config, fg_prior="fixed")
    return config
