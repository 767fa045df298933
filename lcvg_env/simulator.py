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
object keeps its carried mask only while M's mask covers at least ``ANCHOR_COVER`` of it;
otherwise it is found again as in "segment" (and carried from there). Under "mask" control
nothing is carried, and "anchored" follows M's mask as "segment" does.

A model with ``ModelConfig.prediction == "composite"`` changes step 3 for parametric control
(``lcvg_env.compositing``): each object's own pixels move with its transform (carried objects
bring their template's pixels through their pose, so they are sampled once however long the
episode; segmented ones the current frame's), they are laid over a background canvas (the
first frame, replaced by G's output only where a moving object has passed), and G's output is
a correction added inside a band around what moved. "mask" control needs a "frame" model.

Coordinates are those of ``lcvg_env.control``: normalised (x, y) in [-1, 1], x right, y down.
Everything runs under ``torch.inference_mode``; there are no per-environment Python loops in
``step``. Controls and first frames are checked for NaN/inf once, on entry; the simulator's own
tensors are not scanned again (``lcvg_env.control.trusted_values``: each scan would be a device
synchronisation on a GPU).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np
import torch

from lcvg_env import compositing
from lcvg_env import control as ctl
from lcvg_env.models import LayeredGenerator

SIM_CONTROLS = ("position", "affine", "mask")
"""Control modes of the simulator (see ``Simulator.step``)."""
SIM_TRACKING = ("segment", "carry", "anchored")
"""How the simulator finds the objects' masks after a step (see the module docstring)."""
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
"""``torch.compile`` modes the simulator's ``compile`` accepts besides True and False."""
_PARAMS = {"position": 2, "affine": 6}
ANCHOR_COVER = 0.5
"""``tracking="anchored"`` keeps an object's carried mask while M's mask of the generated frame
covers at least this fraction of it."""
_MISSING_COST = 4.0  # > the largest distance between two points of [-1, 1]^2 (2 * sqrt(2))
_MAX_EXACT_OBJECTS = 6  # 720 orders; greedy assignment beyond


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
    - ``templates`` (N, K, H, W) and ``poses`` (N, K, 2, 3): for carried tracking, each
      object's mask when its tracking began (reset, or for "anchored" the last time it was
      found again) and the ``input_from_output`` matrix from the current frame to it;
    - ``template_frames`` (N, K, 3, H, W): the frame each template was taken in; a composite
      model (below) takes a carried object's pixels from it;
    - ``canvas`` (N, 3, H, W) and ``known`` (N, 1, H, W): for a model with
      ``prediction="composite"`` (``lcvg_env.compositing``), the background the moved objects
      are laid over: the first frame, where the controlled objects were unknown, then G's
      output wherever the band around a moving object has passed.

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
            convolutions of small models run about a quarter faster in it. On CUDA every
            GroupNorm copies channels-last tensors to the contiguous layout and back: a
            ``paper_bair`` generator ran 1.3x slower in it on an H200 (N = 64: 179 vs 139 ms,
            ``benchmarks/profile_gpu.py``).
        compile: ``torch.compile`` the generator's and mask network's calls: False (default),
            True (the default mode) or a mode name ("reduce-overhead" adds CUDA graphs, for
            small N where kernel launches dominate). The first step of each N compiles.
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
    ) -> None:
        if not isinstance(model, LayeredGenerator):
            raise TypeError(f"model must be a LayeredGenerator, got {type(model).__name__}")
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
        if control not in SIM_CONTROLS:
            raise ValueError(f"control must be one of {SIM_CONTROLS}, got {control!r}")
        if isinstance(num_objects, bool) or not isinstance(num_objects, int) or num_objects < 1:
            raise ValueError(f"num_objects must be an int >= 1, got {num_objects!r}")
        if not 0.0 < float(threshold) < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
        if track_gate is not None and not float(track_gate) > 0:
            raise ValueError(f"track_gate must be > 0 or None, got {track_gate!r}")
        if tracking not in SIM_TRACKING:
            raise ValueError(f"tracking must be one of {SIM_TRACKING}, got {tracking!r}")
        if control == "mask" and model.config.prediction == "composite":
            raise ValueError("control='mask' needs a model with prediction='frame' (a composite "
                             "model moves objects by known transforms); this model has "
                             f"prediction={model.config.prediction!r}")
        if not (isinstance(compile, bool) or compile in COMPILE_MODES):
            raise ValueError(f"compile must be True, False or one of {COMPILE_MODES}, got "
                             f"{compile!r}")
        self.tracking = tracking
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
        h, w = self.resolution
        n, k = num_envs, num_objects
        with torch.inference_mode():
            device, f32 = self.device, torch.float32
            self.frames = torch.zeros(n, 3, h, w, device=device, dtype=f32)
            self.masks = torch.zeros(n, 1, h, w, device=device, dtype=f32)
            self.control_masks = torch.zeros(n, 1, h, w, device=device, dtype=f32)
            self.uncontrolled = torch.zeros(n, 1, h, w, device=device, dtype=f32)
            self.objects = torch.zeros(n, k, h, w, device=device, dtype=f32)
            self.templates = torch.zeros(n, k, h, w, device=device, dtype=f32)
            self.template_frames = torch.zeros(n, k, 3, h, w, device=device, dtype=f32)
            self.canvas = torch.zeros(n, 3, h, w, device=device, dtype=f32)
            self.known = torch.zeros(n, 1, h, w, device=device, dtype=f32)
            self.poses = self._identity_poses(n)
            self.centroids = torch.zeros(n, k, 2, device=device, dtype=f32)
            self.residual = torch.zeros(n, k, 2, device=device, dtype=f32)
            self.present = torch.zeros(n, k, dtype=torch.bool, device=self.device)
            self.seen = torch.zeros(n, k, dtype=torch.bool, device=self.device)
        self._orders = (
            torch.tensor(list(itertools.permutations(range(k))), device=self.device)
            if 1 < k <= _MAX_EXACT_OBJECTS
            else None
        )  # (K!, K)

    @property
    def params_per_object(self) -> int:
        """P: parameters per object of a step's controls (0 for "mask" control)."""
        return _PARAMS.get(self.control, 0)

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
            masks, objects = self._segment(x)
            centroids = ctl.mask_centroids(objects).float()  # (n, K, 2)
            present = ctl.mask_areas(objects) > 0  # (n, K)
            self.frames[idx] = x
            self.masks[idx] = masks
            self.control_masks[idx] = masks
            self.uncontrolled[idx] = masks * (1.0 - objects.amax(dim=1, keepdim=True))
            self.objects[idx] = objects
            self.templates[idx] = objects
            self.template_frames[idx] = x.unsqueeze(1).expand(-1, self.num_objects, -1, -1, -1)
            self.canvas[idx] = x
            self.known[idx] = 1.0 - objects.amax(dim=1, keepdim=True)
            self.poses[idx] = self._identity_poses(idx.numel())
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
            ValueError: controls of the wrong shape, or NaN/inf, quoting what was received.
        """
        controls = self._check_controls(controls)
        n, k = self.num_envs, self.num_objects
        h, w = self.resolution
        with torch.inference_mode(), self._amp(), ctl.trusted_values():
            if self.control == "mask":
                edited = ctl.binarize(controls, self.threshold)  # (N, 1, H, W)
                expected = self.centroids
                gate = None
            else:
                params = controls  # (N, K, P)
                theta = ctl.params_to_matrix(
                    params.reshape(n * k, -1),
                    center=self.centroids.reshape(n * k, 2),
                    size=self.resolution,
                )  # (N*K, 2, 3) input_from_output, about each object's centroid
                moved = self._move_objects(theta).view(n, k, h, w)
                edited = torch.maximum(moved.amax(dim=1, keepdim=True), self.uncontrolled)
                expected = (self.centroids + params[..., :2]).clamp(-1.0, 1.0)
                gate = self.track_gate
            with self._trusted():
                if self.control != "mask" and self.config.prediction == "composite":
                    frames, comp = self._composite_step(theta.view(n, k, 2, 3),
                                                        moved.view(n, k, h, w), edited)
                    frames = frames.float().clamp(-1.0, 1.0)  # the canvas takes it clamped
                    self.canvas, self.known = compositing.update_canvas(
                        self.canvas, self.known, frames, comp)
                else:
                    frames = self._generate(self.frames, edited)
            self.frames = frames.float().clamp(-1.0, 1.0)
            self.control_masks = edited.float()
            if self.control == "mask":
                self._follow_given_mask(expected)
            elif self.tracking == "carry":
                self.masks = self.control_masks
                self._set_objects(moved, expected)
            else:
                self._follow_segmentation(expected, gate, moved)
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
        self._set_objects(*self._associate(objects, expected, None))

    def _follow_segmentation(self, expected: torch.Tensor, gate: float | None,
                             moved: torch.Tensor) -> None:
        """Find the objects in M's mask of the new frame after a parametric step.

        For "segment" tracking; "anchored" keeps each moved (N, K, H, W) mask that M's covers.
        """
        self.masks, components = self._segment(self.frames)
        found, centroids, present = self._associate(components, expected, gate)
        if self.tracking == "segment":
            self._set_objects(found, centroids, present)
        else:
            objects, self.templates, self.poses, self.template_frames = anchor(
                moved, self.masks, found, self.templates, self.poses, self.template_frames,
                self.frames)
            self._set_objects(objects, centroids)
        tracked = torch.maximum(found, self.objects).amax(dim=1, keepdim=True)
        self.uncontrolled = self.masks * (1.0 - tracked)

    def _move_objects(self, theta: torch.Tensor) -> torch.Tensor:
        """Move every object by its (N*K, 2, 3) transform -> (N*K, 1, H, W) {0, 1} masks."""
        n, k = self.num_envs, self.num_objects
        h, w = self.resolution
        if self.tracking != "segment":
            moved, poses = ctl.carry_masks(
                self.templates.reshape(n * k, 1, h, w), self.poses.reshape(n * k, 2, 3), theta,
                threshold=self.threshold)
            self.poses = poses.view(n, k, 2, 3)
            return moved
        moved, residual = ctl.warp_binary(
            self.objects.reshape(n * k, 1, h, w), theta, self.residual.reshape(n * k, 2),
            threshold=self.threshold)
        self.residual = residual.view(n, k, 2)
        return moved

    def _set_objects(self, objects: torch.Tensor, centroids: torch.Tensor,
                     present: torch.Tensor | None = None) -> None:
        """Store the objects (N, K, H, W) of the new frame.

        ``centroids`` (N, K, 2) are used where an object is absent (its expected position);
        ``present`` (N, K) defaults to the masks being non-empty.
        """
        if present is None:
            present = ctl.mask_areas(objects) > 0
            centroids = torch.where(present[..., None], ctl.mask_centroids(objects).float(),
                                    centroids)
        self.objects = objects
        self.centroids = centroids
        self.present = present
        self.seen = self.seen | present

    def _identity_poses(self, n: int) -> torch.Tensor:
        """(n, K, 2, 3) identity poses: carried tracking begins."""
        k = self.num_objects
        return ctl.identity_matrix(n * k, device=self.device).view(n, k, 2, 3)

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

    @contextmanager
    def _trusted(self) -> Iterator[None]:
        """Skip the model's value checks (one device sync each) on inputs we made ourselves."""
        previous = self.model.check_values
        self.model.check_values = False
        try:
            yield
        finally:
            self.model.check_values = previous

    def _composite_step(self, theta: torch.Tensor, moved: torch.Tensor, edited: torch.Tensor
                        ) -> tuple[torch.Tensor, compositing.Composite]:
        """Return a composite model's next frames (``lcvg_env.compositing``), not clamped.

        Carried objects bring their template's pixels through their pose (the pixels are
        sampled once, however long the episode); segmented ones the current frame's pixels
        through this step's transform ``theta`` (N, K, 2, 3).
        """
        before = self.objects.amax(dim=1, keepdim=True)
        if self.tracking == "segment":
            source, objects, pose = self.frames, self.objects, theta
        else:
            source, objects, pose = self.template_frames, self.templates, self.poses
        return compositing.predict(self._generate, source, objects, pose, moved, edited,
                                   self.canvas, self.known, self.config.band_px, before)

    def _generate(self, frames: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """G's output for frames (N, 3, H, W) and control masks (N, 1, H, W)."""
        return self._predict_next(self._layout(frames), self._layout(masks))

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _segment(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, 3, H, W) -> binarised masks (n, 1, H, W), K largest objects (n, K, H, W)."""
        with self._trusted():
            masks = ctl.binarize(self._mask(self._layout(frames)).float(), self.threshold)
            masks = masks.contiguous()
        return masks, ctl.object_masks(masks, self.num_objects).float()

    def _associate(
        self, objects: torch.Tensor, expected: torch.Tensor, gate: float | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Order the new components (N, K, H, W) so that component i follows tracked object i.

        Returns objects (N, K, H, W), centroids (N, K, 2) (expected position where lost) and
        present (N, K).
        """
        centroids = ctl.mask_centroids(objects).float()  # (N, K, 2)
        present = ctl.mask_areas(objects) > 0  # (N, K)
        k = self.num_objects
        if k > 1:
            distance = torch.cdist(expected, centroids)  # (N, K old, K new)
            seen = self.seen[:, :, None]
            new = present[:, None, :]
            cost = torch.where(
                seen & new, distance, torch.where(seen ^ new, _MISSING_COST, 0.0)
            )
            order = self._assign(cost)  # (N, K): old slot i <- new component order[:, i]
            objects = objects.gather(
                1, order[:, :, None, None].expand(-1, -1, *objects.shape[2:])
            )
            centroids = centroids.gather(1, order[:, :, None].expand(-1, -1, 2))
            present = present.gather(1, order)
        if gate is not None:
            far = (centroids - expected).norm(dim=-1) > gate  # (N, K)
            lost = far & self.seen
            present = present & ~lost
            objects = objects * (~lost)[:, :, None, None]
        centroids = torch.where(present[..., None], centroids, expected)
        return objects, centroids, present

    def _assign(self, cost: torch.Tensor) -> torch.Tensor:
        """Minimum-cost assignment per batch row of a (N, K, K) cost matrix -> (N, K) columns."""
        if self._orders is not None:
            k = cost.shape[1]
            rows = torch.arange(k, device=cost.device)
            totals = cost[:, rows[None, :], self._orders].sum(dim=-1)  # (N, K!)
            return self._orders[totals.argmin(dim=1)]
        # greedy: repeatedly take the cheapest remaining (old, new) pair, all rows at once
        n, k, _ = cost.shape
        cost = cost.clone()
        order = torch.zeros(n, k, dtype=torch.long, device=cost.device)
        batch = torch.arange(n, device=cost.device)
        for _ in range(k):
            flat = cost.reshape(n, -1).argmin(dim=1)
            old, new = flat // k, flat % k
            order[batch, old] = new
            cost[batch, old, :] = float("inf")
            cost[batch, :, new] = float("inf")
        return order

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
            expected = (n, k, _PARAMS[self.control])
        if tuple(controls.shape) != expected:
            raise ValueError(
                f"controls for control={self.control!r} must have shape {expected}, got "
                f"{tuple(controls.shape)}"
            )
        controls = controls.to(self.device, torch.float32)
        if not bool(torch.isfinite(controls).all()):
            raise ValueError(f"controls contain NaN or infinite values: {controls.flatten()[:8]}")
        return controls


def agrees(moved: torch.Tensor, masks: torch.Tensor, cover: float = ANCHOR_COVER
           ) -> torch.Tensor:
    """Which carried object masks (N, K, H, W) a segmentation (N, 1, H, W) confirms -> (N, K).

    True where the object's mask is non-empty and ``masks`` covers at least ``cover`` of it
    (the test of ``tracking="anchored"``).
    """
    area = moved.sum(dim=(2, 3))
    covered = (moved * masks).sum(dim=(2, 3))
    return (covered >= cover * area) & (area > 0)


def anchor(
    moved: torch.Tensor, masks: torch.Tensor, found: torch.Tensor, templates: torch.Tensor,
    poses: torch.Tensor, template_frames: torch.Tensor, frames: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step of ``tracking="anchored"``: keep the carried objects the segmentation confirms.

    Args:
        moved: (N, K, H, W) the objects' carried masks after the step.
        masks: (N, 1, H, W) M's binarised mask of the generated frame.
        found: (N, K, H, W) the objects as found in ``masks`` (the "segment" tracking).
        templates: (N, K, H, W) the carried objects' templates (see ``Simulator``).
        poses: (N, K, 2, 3) their poses after the step.
        template_frames: (N, K, 3, H, W) the frame each template was taken in.
        frames: (N, 3, H, W) the generated frame ``masks`` was taken of.

    Returns:
        ``(objects, templates, poses, template_frames)``: per object, the carried mask and
        state where ``agrees(moved, masks)``, else the found mask, which becomes the new
        template (taken in ``frames``) with the identity pose.
    """
    keep = agrees(moved, masks)[:, :, None, None]  # (N, K, 1, 1)
    identity = ctl.identity_matrix(1, device=poses.device, dtype=poses.dtype)
    return (torch.where(keep, moved, found), torch.where(keep, templates, found),
            torch.where(keep, poses, identity),
            torch.where(keep[..., None], template_frames, frames.unsqueeze(1)))


def to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """Frames (N, 3, H, W) in [-1, 1] -> uint8 (N, H, W, 3) (rounded, clamped)."""
    x = ((frames.float().clamp(-1.0, 1.0) + 1.0) * 127.5).round()
    return x.to(torch.uint8).permute(0, 2, 3, 1).contiguous()
