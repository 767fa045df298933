"""Torch-native simulator: N environments of one trained ``LayeredGenerator`` on one device.

No Gymnasium here: this module holds the frames and masks of N environments as batched tensors
and advances all of them with one call of the networks. The Gymnasium adapters
(``lcvg_env.env``, ``lcvg_env.vector``, ``lcvg_env.sb3``) sit on top of it.

One step (method.md, "Inference"), for every environment at once:

1. the current binarised mask m_t = binarize(M(f_t)) is split into its K largest connected
   components (``objects``, one per controlled object, tracked from step to step);
2. control: each object mask k is moved by its own transform (``params_to_matrix`` of that
   object's parameters, rotation and scale about the object's mask centroid) by whole pixels
   (``lcvg_env.control.warp_binary``: the sub-pixel part of the motion is owed to the object
   and added to its next step, so that slow motions add up), and the moved objects are united
   with the foreground that is not controlled (components beyond the K largest stay where they
   are); or, for non-parametric control, the given mask replaces m_t;
3. f_{t+1} = G(f_t, m_c) (``LayeredGenerator.predict_next``), clamped to [-1, 1];
4. m_{t+1} = binarize(M(f_{t+1})); its K largest components are re-associated with the tracked
   objects by minimum total distance between each object's expected centroid (old centroid +
   its commanded translation) and the new components' centroids (an exact assignment over all
   K! orders for K <= 6, greedy beyond).

That is the paper's loop (``tracking="segment"``): the state is what M sees in the generated
frame, so every error of G in placing an object becomes the starting point of the next control
and the errors add up over a rollout. With ``tracking="carry"`` the objects' masks are the
state instead: each object keeps the mask it had at reset and a pose that every control is
chained onto (``lcvg_env.control.carry_masks``), steps 1 and 4 are skipped, and the generator
renders the frame the carried masks describe. The masks then go exactly where the controls
send them, G's placement errors do not add up (on the bundled model's held-out sprites, the
position error of objects that have not met another drops from 0.044 to 0.017 image widths
over 16 steps) and M is not run at all after reset. For "mask" control the given mask becomes
the state. The carried state is only as true as G's obedience: a move larger than those G was
trained on can leave the object behind in the frame while its mask moves on.
``tracking="anchored"`` guards against that: M still segments every generated frame, and an
object keeps its carried mask only while M's mask covers at least
``lcvg_env.tracking.ANCHOR_COVER`` of it; otherwise it is found again as in "segment" (and
carried from there). Under "mask" control nothing is carried, and "anchored" follows M's mask
as "segment" does. The three modes are the functions of ``lcvg_env.tracking``, which
``training.evaluate.rollout`` drives too.

A model with ``ModelConfig.prediction == "composite"`` changes step 3 for parametric control
(``lcvg_env.compositing``): each object's own pixels move with its transform (carried objects
bring their template's pixels through their pose, so they are sampled once however long the
episode; segmented ones the current frame's), they are laid over a background canvas (the
real first frame, filled from around where the objects stood at the start), and G's output
is a correction added inside a band around what moved. "mask" control needs a "frame" model.
With ``occlusion=True`` the simulator reads at reset which touching objects hide which
(``lcvg_env.control.infer_occlusion``): a composite model draws the objects in that depth
order, and carried objects partly hidden behind others bring their hidden part (a convex
completion no wider than what is seen) when they move out; so do carried objects cut by the
frame's edge when they move into view (``lcvg_env.control.beyond_frame``: their templates
extend :data:`BEYOND_FRAME` of the frame past it on every side).

Coordinates are those of ``lcvg_env.control``: normalised (x, y) in [-1, 1], x right, y down.
Everything runs under ``torch.inference_mode``; there are no per-environment Python loops in
``step``. Controls and first frames are checked for NaN/inf once, on entry (controls not inside
``lcvg_env.control.trusted_values``, for callers that checked them already); the simulator's own
tensors are not scanned again (each scan would be a device synchronisation on a GPU).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any, Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F

from lcvg_env import compositing, shadows
from lcvg_env import control as ctl
from lcvg_env import tracking as track
from lcvg_env.models import LayeredGenerator
from lcvg_env.spaces import CONTROLS, PARAMS_PER_OBJECT

CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
"""``torch.compile`` modes the simulator's ``compile`` accepts besides True and False."""
COMPILE_MODES: tuple[CompileMode, ...] = get_args(CompileMode)
"""The choices of ``CompileMode``."""
BEYOND_FRAME = 0.25
"""With ``occlusion`` and carried tracking, how far past the frame's edge (a fraction of its
larger side, on every side) the templates hold the parts of objects the edge cuts off: an
object whose centre lies inside the frame reaches at most its own width past the edge."""


class Simulator:
    """N environments driven by one ``LayeredGenerator``, batched on the model's device.

    State (all tensors on ``device``, batch first; read them, do not write them):

    - ``frames`` (N, 3, H, W) float32 in [-1, 1]: the current frames f_t;
    - ``masks`` (N, 1, H, W) float32 in {0, 1}: binarize(M(f_t)), the whole foreground;
    - ``objects`` (N, K, H, W) float32 in {0, 1}: the tracked objects' masks (empty while an
      object is lost);
    - ``centroids`` (N, K, 2) float32: each object's mask centroid (x, y), or its last known
      (expected) position while it is lost;
    - ``present`` (N, K) bool: whether the object's mask is non-empty in f_t;
    - ``residual`` (N, K, 2) float32: the sub-pixel motion each object is still owed (see
      ``lcvg_env.control.warp_binary``; zero after reset; an object that is lost has an empty
      mask, which owes nothing at the next step);
    - ``control_masks`` (N, 1, H, W): the edited mask m_c that produced f_t (m_t after reset);
    - ``uncontrolled`` (N, 1, H, W): for parametric control, the foreground outside the
      tracked objects (components beyond the K largest), which stays where it is;
    - ``templates`` (N, K, H', W') and ``poses`` (N, K, 2, 3): for carried tracking, each
      object's mask when its tracking began (reset, or for "anchored" the last time it was
      found again) and the ``input_from_output`` matrix from the current frame to it; with
      ``occlusion`` on a canvas of :attr:`beyond` pixels more on every side of the frame
      (H' = H + 2 beyond), else the frame's;
    - ``template_layers`` (``lcvg_env.compositing.Layers``, (N, K, 3 | 1, H', W')): each
      template's pixels and soft coverage as the frame it was taken in shows them; a composite
      model (below) takes a carried object's pixels from them;
    - ``canvas`` (N, 3, H, W) and ``known`` (N, 1, H, W): for a model with
      ``prediction="composite"`` (``lcvg_env.compositing``), the background the moved objects
      are laid over: the first frame, unknown where the controlled objects stood and filled
      there (``lcvg_env.tracking.start_canvas``), and free of the first frame's drop shadows;
      it does not change during an episode;
    - ``shadow`` (``lcvg_env.shadows.DropShadow``, (N, ...)): the scene's drop shadow read at
      reset (strength 0 where none is seen); each composite step casts it from the moved
      objects and the foreground that stays onto the canvas;
    - ``light`` (N, 1, H, W): the scene's relative illumination read from the canvas at reset
      (``LayeredGenerator.illumination``; all ones unless ``ModelConfig.shading``);
    - ``depth`` (N, K) int64: the objects' indices from front to back (index order unless
      ``occlusion``), read at reset.

    Args:
        model: a trained ``LayeredGenerator``; it is put in eval mode. Its device is the
            simulator's device.
        num_envs: N >= 1.
        control: "position" (per-object (dx, dy)), "affine" (per-object
            ``lcvg_env.control.PARAM_NAMES``) or "mask" (a whole mask per environment).
        num_objects: K >= 1, how many connected components of the first mask are controlled.
        threshold: binarisation threshold of the soft masks (the paper uses 0.5).
        track_gate: largest distance (normalised units) between an object's expected centroid
            and the component it is re-associated with; farther matches mark the object lost.
            None disables the gate. Not used for "mask" control, where the agent may move
            objects anywhere.
        tracking: "segment" (the paper: the next masks are M's binarised mask of the generated
            frame, its components re-associated with the objects), "carry" (the controlled
            masks are carried to the next step as they are) or "anchored" (carried while M
            agrees); see the module docstring.
        autocast: run the networks under bf16 autocast when the device is CUDA.
        channels_last: convert the model (in place: it may be shared) and the inputs to the
            channels-last memory format, or (False) both to the contiguous one; outputs are the
            same up to float rounding. None (default): channels-last on CPUs only, where the
            convolutions of small models run faster in it. On CUDA every GroupNorm copies
            channels-last tensors to the contiguous layout and back, which makes the
            ``paper_bair`` generator slower there (both measured in docs/performance.md).
        compile: ``torch.compile`` the generator's and mask network's calls: False (default),
            True (the default mode) or a mode name ("reduce-overhead" adds CUDA graphs, for
            small N where kernel launches dominate). The first step of each N compiles.
        separate: at reset, cut connected components of M's mask where touching objects
            of clearly different colours merged (``lcvg_env.control.separate_objects``), so
            that each controlled object is one object, and grow each over the border pixels M
            left out (``lcvg_env.compositing.take_borders``); later steps follow the tracking.
    """

    def __init__(
        self,
        model: LayeredGenerator,
        num_envs: int,
        control: str = "position",
        num_objects: int = 1,
        threshold: float = 0.5,
        track_gate: float | None = 0.5,
        tracking: str = "segment",
        autocast: bool = False,
        channels_last: bool | None = None,
        compile: bool | str = False,
        separate: bool = False,
        occlusion: bool = False,
    ) -> None:
        if not isinstance(model, LayeredGenerator):
            raise TypeError(f"model must be a LayeredGenerator, got {type(model).__name__}")
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
        if control not in CONTROLS:
            raise ValueError(f"control must be one of {CONTROLS}, got {control!r}")
        if isinstance(num_objects, bool) or not isinstance(num_objects, int) or num_objects < 1:
            raise ValueError(f"num_objects must be an int >= 1, got {num_objects!r}")
        if not 0.0 < float(threshold) < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
        if track_gate is not None and not float(track_gate) > 0:
            raise ValueError(f"track_gate must be > 0 or None, got {track_gate!r}")
        track.check_tracking(tracking)
        if control == "mask" and model.config.prediction == "composite":
            raise ValueError("control='mask' needs a model with prediction='frame' (a composite "
                             "model moves objects by known transforms); this model has "
                             f"prediction={model.config.prediction!r}")
        if not (isinstance(compile, bool) or compile in COMPILE_MODES):
            raise ValueError(f"compile must be True, False or one of {COMPILE_MODES}, got "
                             f"{compile!r}")
        for name, flag in (("separate", separate), ("occlusion", occlusion)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {flag!r}")
        self.tracking = tracking
        self.separate = separate
        self.occlusion = occlusion
        device = next(model.parameters()).device
        if channels_last is None:
            channels_last = device.type == "cpu"
        self.channels_last = bool(channels_last)
        model = model.to(memory_format=torch.channels_last if self.channels_last
                         else torch.contiguous_format)
        self.model = model.eval()
        self._predict_next = model.predict_next
        self._mask = model.mask
        if compile is not False:
            mode = None if compile is True else compile
            self._predict_next = torch.compile(model.predict_next, mode=mode, dynamic=False)
            self._mask = torch.compile(model.mask, mode=mode, dynamic=False)
        self.config = model.config
        self.num_envs = num_envs
        self.control = control
        self.num_objects = num_objects
        self.threshold = float(threshold)
        self.track_gate = None if track_gate is None else float(track_gate)
        self.device = device
        self.autocast = bool(autocast) and self.device.type == "cuda"
        self.resolution: tuple[int, int] = (
            int(model.config.resolution[0]),
            int(model.config.resolution[1]),
        )
        self.generator = torch.Generator(device=self.device)
        """Source of any torch randomness in the simulator; seeded by ``seed``. The networks of
        the paper are deterministic at inference, so the default pipeline draws nothing."""
        self.beyond = (math.ceil(BEYOND_FRAME * max(self.resolution))
                       if self.occlusion and self.tracking != "segment" else 0)
        """Pixels the carried templates extend past the frame on every side."""
        self._allocate_state()
        self._orders = track.assignment_orders(num_objects, self.device)  # (K!, K) or None

    def _allocate_state(self) -> None:
        """Allocate the state tensors of the class docstring: zeros, identity poses."""
        h, w = self.resolution
        n, k = self.num_envs, self.num_objects
        with torch.inference_mode():
            device, f32 = self.device, torch.float32
            self.frames = torch.zeros(n, 3, h, w, device=device, dtype=f32)
            self.masks = torch.zeros(n, 1, h, w, device=device, dtype=f32)
            self.control_masks = torch.zeros(n, 1, h, w, device=device, dtype=f32)
            self.uncontrolled = torch.zeros(n, 1, h, w, device=device, dtype=f32)
            self.objects = torch.zeros(n, k, h, w, device=device, dtype=f32)
            th, tw = h + 2 * self.beyond, w + 2 * self.beyond
            self.templates = torch.zeros(n, k, th, tw, device=device, dtype=f32)
            self.template_layers = compositing.Layers(
                torch.zeros(n, k, 3, th, tw, device=device, dtype=f32),
                torch.zeros(n, k, 1, th, tw, device=device, dtype=f32))
            self.canvas = torch.zeros(n, 3, h, w, device=device, dtype=f32)
            self.known = torch.zeros(n, 1, h, w, device=device, dtype=f32)
            self.light = torch.ones(n, 1, h, w, device=device, dtype=f32)
            self.shadow = shadows.no_shadow(n, device)
            self.poses = track.start_carrying(self.objects, self.frames)[0]
            self.centroids = torch.zeros(n, k, 2, device=device, dtype=f32)
            self.residual = torch.zeros(n, k, 2, device=device, dtype=f32)
            self.present = torch.zeros(n, k, dtype=torch.bool, device=self.device)
            self.seen = torch.zeros(n, k, dtype=torch.bool, device=self.device)
            self.depth = torch.arange(k, device=self.device).repeat(n, 1)

    @property
    def params_per_object(self) -> int:
        """P: parameters per object of a step's controls (0 for "mask" control)."""
        return PARAMS_PER_OBJECT.get(self.control, 0)

    def seed(self, seed: int) -> None:
        """Seed ``generator`` (the environments derive ``seed`` from their ``np_random``)."""
        self.generator.manual_seed(int(seed) % (2**63))

    # --- reset ------------------------------------------------------------------------------
    def reset(self, indices: Sequence[int] | np.ndarray | torch.Tensor, frames: Any) -> None:
        """Start the environments ``indices`` from ``frames``.

        Args:
            indices: n distinct environment indices in [0, N).
            frames: n first frames, uint8 (n, H, W, 3) (numpy or torch) or float (n, 3, H, W)
                in [-1, 1] (torch), at the model's resolution.

        Raises:
            ValueError: bad indices or frames (wrong shape, dtype, range, NaN), quoting them.
        """
        idx = self._check_indices(indices)
        x = self.to_model_frames(frames)
        if x.shape[0] != idx.numel():
            raise ValueError(
                f"got {x.shape[0]} frames for {idx.numel()} environment indices {idx.tolist()}"
            )
        with torch.inference_mode(), self._amp(), ctl.trusted_values():
            masks, visible = self._segment(x, separate=self.separate)
            objects, hidden = visible, None
            if self.occlusion:
                occlusion = ctl.infer_occlusion(visible)
                self.depth[idx] = occlusion.depth
                if self.tracking != "segment" and self.control != "mask":
                    objects, hidden = occlusion.objects, occlusion.hidden
            if self.separate:  # after the occlusion, which reads M's own outlines
                border = compositing.take_borders(x, masks, visible) - visible
                visible, objects = visible + border, torch.maximum(objects, border)
            centroids, present = track.locate(objects)  # (n, K, 2), (n, K)
            self.frames[idx] = x
            self.masks[idx] = masks
            self.control_masks[idx] = masks
            self.uncontrolled[idx] = track.uncontrolled(masks, objects)
            self.objects[idx] = objects
            templates = objects
            if self.beyond:  # the parts past the frame's edge are hidden too
                beyond = ctl.beyond_frame(objects, self.beyond)
                templates = F.pad(objects, (self.beyond,) * 4) + beyond
                hidden = beyond + (0.0 if hidden is None else F.pad(hidden, (self.beyond,) * 4))
            self.templates[idx] = templates
            self.poses[idx], layers = track.start_carrying(templates, x, hidden)
            self.template_layers.premultiplied[idx] = layers.premultiplied
            self.template_layers.alpha[idx] = layers.alpha
            casters = torch.cat([masks, visible], dim=1)  # the whole foreground casts
            if self.config.prediction == "composite":
                shadow = shadows.fit_drop_shadow(x, casters)
            else:  # no canvas is composed
                shadow = shadows.no_shadow(len(x), x.device)
            for field, value in zip(self.shadow, shadow, strict=True):
                field[idx] = value
            self.canvas[idx], self.known[idx] = track.start_canvas(
                shadows.remove(x, shadow, casters), visible)
            self.light[idx] = self.model.illumination(self.canvas[idx], self.known[idx])
            self.centroids[idx] = centroids
            self.residual[idx] = 0.0
            self.present[idx] = present
            self.seen[idx] = present

    # --- step -------------------------------------------------------------------------------
    def step(self, controls: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Advance every environment by one frame.

        Args:
            controls: for "position" (N, K, 2) (dx, dy) and for "affine" (N, K, 6)
                (``lcvg_env.control.PARAM_NAMES``): forward motion of each tracked object in
                normalised units, rotation/scale about the object's centroid; for "mask"
                (N, 1, H, W) or (N, H, W) with values in {0, 1} (the edited mask m_c).

        Returns:
            The new frames (N, 3, H, W) in [-1, 1] (also ``self.frames``).

        Raises:
            ValueError: controls of the wrong shape, or NaN/inf (not scanned for inside
                ``lcvg_env.control.trusted_values``), quoting what was received.
        """
        controls = self._check_controls(controls)
        with torch.inference_mode(), self._amp(), ctl.trusted_values():
            if self.control == "mask":
                edited = ctl.binarize(controls, self.threshold)  # (N, 1, H, W)
                expected = self.centroids
                self.frames = self._next_frames(edited)
                self.control_masks = edited.float()
                self._follow_given_mask(expected)
                return self.frames
            params = controls  # (N, K, P)
            theta, moved = self._move_objects(params)
            edited = track.control_mask(moved, self.uncontrolled)
            expected = track.expected_centroids(self.centroids, params)
            self.frames = self._next_frames(edited, theta, moved)
            self.control_masks = edited.float()
            if self.tracking == "carry":
                self.masks = self.control_masks
                self._set_objects(moved, expected)
            else:
                self._follow_segmentation(expected, moved)
        return self.frames

    # --- views --------------------------------------------------------------------------------
    def frames_uint8(self) -> torch.Tensor:
        """Return the current frames as uint8 (N, H, W, 3), on the simulator's device."""
        with torch.inference_mode():
            return to_uint8(self.frames)

    def masks_uint8(self) -> torch.Tensor:
        """Return the current binarised masks as uint8 (N, H, W, 1), values 0 or 255."""
        with torch.inference_mode():
            return (self.masks.permute(0, 2, 3, 1) * 255).to(torch.uint8)

    # --- helpers ------------------------------------------------------------------------------
    def _follow_given_mask(self, expected: torch.Tensor) -> None:
        """Take the state after a "mask" control step.

        M's mask of the new frame becomes the state, or with carried tracking the given mask.
        (Nothing is moved under this control, so templates, poses and the uncontrolled
        foreground are not needed.)
        """
        if self.tracking == "carry":
            self.masks = self.control_masks
            objects = ctl.object_masks(self.masks, self.num_objects).float()
        else:
            self.masks, objects = self._segment(self.frames)
        self._set_objects(*track.associate(objects, expected, self.seen, None, self._orders))

    def _follow_segmentation(self, expected: torch.Tensor, moved: torch.Tensor) -> None:
        """Find the objects in M's mask of the new frame after a parametric step.

        For "segment" tracking; "anchored" keeps each moved (N, K, H, W) mask that M's covers.
        """
        self.masks, components = self._segment(self.frames)
        found, centroids, present = track.associate(components, expected, self.seen,
                                                    self.track_gate, self._orders)
        if self.tracking == "segment":
            self._set_objects(found, centroids, present)
        else:
            objects, self.templates, self.poses, self.template_layers = track.anchor(
                moved, self.masks, found, self.templates, self.poses, self.template_layers,
                self.frames)
            self._set_objects(objects, centroids)
        self.uncontrolled = track.uncontrolled(self.masks, torch.maximum(found, self.objects))

    def _move_objects(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Move every object by its controls (N, K, P).

        A segmented object's mask moves by whole pixels (owing the rest), a carried object's
        template is sampled through its new pose (``lcvg_env.tracking``). Returns the
        transforms (N, K, 2, 3) (``input_from_output``, rotation and scale about each object's
        centroid) and the moved masks (N, K, H, W) {0, 1}.
        """
        n, k = self.num_envs, self.num_objects
        theta = ctl.params_to_matrix(
            params.reshape(n * k, -1), center=self.centroids.reshape(n * k, 2),
            size=self.resolution,
        ).view(n, k, 2, 3)
        if self.tracking == "segment":
            moved, self.residual = track.move_segments(self.objects, theta, self.residual,
                                                       self.threshold)
        else:
            moved, self.poses = track.carry(self.templates, self.poses, theta, self.threshold,
                                            self.resolution)
        return theta, moved

    def _next_frames(self, edited: torch.Tensor, theta: torch.Tensor | None = None,
                     moved: torch.Tensor | None = None) -> torch.Tensor:
        """G's next frames (N, 3, H, W), float32 clamped to [-1, 1], for control masks m_c.

        A composite model (parametric control: ``theta`` and ``moved`` given) renders them from
        the moved objects' pixels (``lcvg_env.tracking.predict_composite``).
        """
        if moved is None or theta is None or self.config.prediction != "composite":
            return self._generate(self.frames, edited).float().clamp(-1.0, 1.0)
        carried = (None if self.tracking == "segment"
                   else (self.poses, self.template_layers))
        return track.predict_composite(
            self._generate, self.frames, self.objects, theta, moved, edited, self.canvas,
            self.known, self.config.band_px, carried,
            self.light if self.config.shading else None, self.depth if self.occlusion else None,
            self.shadow)

    def _set_objects(self, objects: torch.Tensor, centroids: torch.Tensor,
                     present: torch.Tensor | None = None) -> None:
        """Store the objects (N, K, H, W) of the new frame.

        ``centroids`` (N, K, 2) are used where an object is absent (its expected position);
        ``present`` (N, K) defaults to the masks being non-empty.
        """
        if present is None:
            centroids, present = track.locate(objects, centroids)
        self.objects = objects
        self.centroids = centroids
        self.present = present
        self.seen = self.seen | present

    def to_model_frames(self, frames: Any) -> torch.Tensor:
        """Validate frames and convert them to float (n, 3, H, W) in [-1, 1] on the device.

        Accepts uint8 (n, H, W, 3) or (H, W, 3) (numpy or torch) and float torch tensors
        (n, 3, H, W) in [-1, 1].
        """
        h, w = self.resolution
        if isinstance(frames, np.ndarray):
            if frames.dtype != np.uint8:
                raise ValueError(
                    f"numpy frames must be uint8 (n, {h}, {w}, 3), got dtype {frames.dtype} "
                    f"shape {frames.shape}"
                )
            frames = torch.from_numpy(np.ascontiguousarray(frames))
        if not isinstance(frames, torch.Tensor):
            raise ValueError(
                f"frames must be a uint8 array (n, {h}, {w}, 3) or a float tensor "
                f"(n, 3, {h}, {w}), got {type(frames).__name__}"
            )
        if frames.dtype == torch.uint8:
            if frames.ndim == 3:
                frames = frames[None]
            if frames.ndim != 4 or tuple(frames.shape[1:]) != (h, w, 3):
                raise ValueError(
                    f"uint8 frames must have shape (n, {h}, {w}, 3), got {tuple(frames.shape)}"
                )
            x = frames.to(self.device).permute(0, 3, 1, 2).float() / 127.5 - 1.0
            return x.contiguous()
        if not frames.is_floating_point():
            raise ValueError(f"frames must be uint8 or float, got dtype {frames.dtype}")
        if frames.ndim != 4 or tuple(frames.shape[1:]) != (3, h, w):
            raise ValueError(
                f"float frames must have shape (n, 3, {h}, {w}), got {tuple(frames.shape)}"
            )
        frames = frames.detach().to(self.device, torch.float32)
        if not bool(torch.isfinite(frames).all()):
            raise ValueError("float frames contain NaN or infinite values")
        low, high = float(frames.min()), float(frames.max())
        if low < -1.0 - 1e-4 or high > 1.0 + 1e-4:
            raise ValueError(f"float frames must lie in [-1, 1], got values in [{low}, {high}]")
        return frames.clamp(-1.0, 1.0).contiguous()

    def _amp(self) -> Any:
        if self.autocast:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return nullcontext()

    def _generate(self, frames: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """G's output for frames (N, 3, H, W) and control masks (N, 1, H, W)."""
        return self._predict_next(self._layout(frames), self._layout(masks))

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _segment(self, frames: torch.Tensor, separate: bool = False
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, 3, H, W) -> binarised masks (n, 1, H, W), K largest objects (n, K, H, W).

        ``separate``: cut touching objects apart by colour (``control.separate_objects``).
        """
        masks = ctl.binarize(self._mask(self._layout(frames)).float(), self.threshold)
        masks = masks.contiguous()
        if separate:
            return masks, ctl.separate_objects(frames, masks, self.num_objects)
        return masks, ctl.object_masks(masks, self.num_objects).float()

    def _check_indices(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        idx = torch.as_tensor(np.asarray(indices) if not isinstance(indices, torch.Tensor)
                              else indices)
        if idx.ndim == 0:
            idx = idx[None]
        if idx.ndim != 1 or idx.numel() == 0 or idx.dtype in (torch.float32, torch.float64):
            raise ValueError(f"indices must be a non-empty 1-D list of ints, got {indices!r}")
        idx = idx.long()
        if bool((idx < 0).any()) or bool((idx >= self.num_envs).any()):
            raise ValueError(f"indices must lie in [0, {self.num_envs}), got {idx.tolist()}")
        if idx.unique().numel() != idx.numel():
            raise ValueError(f"indices must be distinct, got {idx.tolist()}")
        return idx.to(self.device)

    def _check_controls(self, controls: torch.Tensor | np.ndarray) -> torch.Tensor:
        n, k = self.num_envs, self.num_objects
        h, w = self.resolution
        if isinstance(controls, np.ndarray):
            controls = torch.from_numpy(controls)
        if not isinstance(controls, torch.Tensor):
            raise ValueError(f"controls must be a tensor, got {type(controls).__name__}")
        if self.control == "mask":
            if controls.ndim == 3:
                controls = controls[:, None]
            expected: tuple[int, ...] = (n, 1, h, w)
        else:
            expected = (n, k, PARAMS_PER_OBJECT[self.control])
        if tuple(controls.shape) != expected:
            raise ValueError(
                f"controls for control={self.control!r} must have shape {expected}, got "
                f"{tuple(controls.shape)}"
            )
        controls = controls.to(self.device, torch.float32)
        # the scan is a device sync: skipped for callers that checked their actions already
        if ctl.values_checked() and not bool(torch.isfinite(controls).all()):
            raise ValueError(f"controls contain NaN or infinite values: {controls.flatten()[:8]}")
        return controls


def to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """Frames (N, 3, H, W) in [-1, 1] -> uint8 (N, H, W, 3) (rounded, clamped)."""
    x = ((frames.float().clamp(-1.0, 1.0) + 1.0) * 127.5).round()
    return x.to(torch.uint8).permute(0, 2, 3, 1).contiguous()
