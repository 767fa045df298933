"""Tracking: how the controlled objects' masks are kept from one generated frame to the next.

A controlled step moves each object's mask by its transform, G renders the frame the moved
masks describe, and the objects' masks of that new frame are the start of the next step. Where
those masks come from is the tracking mode (``TRACKING_MODES``):

- ``"segment"`` (the paper): M's binarised mask of the generated frame, split into connected
  components that are re-associated with the objects. Masks move by whole pixels with the
  sub-pixel remainder owed to the next step (:func:`move_segments`). Every error of G in
  placing an object becomes the start of the next control.
- ``"carry"``: each object keeps the mask it had when tracking began (its template) and a pose
  that every control is chained onto (:func:`carry`); M is not run after the start.
- ``"anchored"``: carried while M's mask of the generated frame covers at least
  ``ANCHOR_COVER`` of the carried mask (:func:`agrees`), else found again as in "segment" and
  carried from there (:func:`anchor`).

Everything here is a pure function of batched tensors (B environments or clips first, K
objects): object masks (B, K, H, W) {0, 1}, centroids (B, K, 2) normalised (x, y) (the
coordinates of ``lcvg_env.control``), templates (B, K, H, W), poses (B, K, 2, 3)
``input_from_output`` from the current frame to the template, template frames (B, K, 3, H, W)
(the frame each template was taken in). ``lcvg_env.simulator.Simulator`` and
``training.evaluate.rollout`` both drive their objects with these functions. They find objects
in a segmentation differently: the simulator by where it expects each object
(:func:`associate`), the evaluation by the objects' true positions (:func:`split_by_positions`).

A model with ``prediction="composite"`` renders a step from the objects' moved pixels
(``lcvg_env.compositing``); :func:`predict_composite` picks those pixels by tracking mode, so
that both callers composite the same way.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

from lcvg_env import compositing, shadows
from lcvg_env import control as ctl

Tracking = Literal["segment", "carry", "anchored"]
"""How the objects' masks are found after a step (see the module docstring)."""
TRACKING_MODES: tuple[Tracking, ...] = get_args(Tracking)
"""The choices of ``Tracking``."""
ANCHOR_COVER = 0.5
"""``tracking="anchored"`` keeps an object's carried mask while M's mask of the generated frame
covers at least this fraction of it."""
MISSING_COST = 4.0
"""Cost of pairing a seen object with no component, or a component with an unseen object: more
than the largest distance between two points of [-1, 1]^2 (2 sqrt 2)."""
MAX_EXACT_OBJECTS = 6
"""Largest K assigned exactly, over all K! orders (720); greedy beyond."""
EXTRA_COMPONENTS = 4
""":func:`split_by_positions` considers the K + this many largest components of a mask."""


def check_tracking(tracking: str) -> str:
    """Return ``tracking`` if it is one of ``TRACKING_MODES``, else raise ValueError naming it."""
    if tracking not in TRACKING_MODES:
        raise ValueError(f"tracking must be one of {TRACKING_MODES}, got {tracking!r}")
    return tracking


# --- carried objects ---------------------------------------------------------------------------
def start_carrying(objects: Tensor, frames: Tensor, hidden: Tensor | None = None
                   ) -> tuple[Tensor, compositing.Layers]:
    """Identity poses (B, K, 2, 3) and template layers of objects (B, K, H', W').

    The objects' masks themselves are the templates; their layers (``compositing.matte``)
    hold their pixels as ``frames`` (B, 3, H, W), the frame they were taken in, shows them.
    ``hidden`` (B, K, H', W'): the parts of ``objects`` that ``frames`` does not show (hidden
    behind other objects: ``lcvg_env.control.infer_occlusion``, or beyond the frame's edge:
    ``lcvg_env.control.beyond_frame``), filled in the object's own colour
    (``compositing.fill_hidden``); None: every pixel of the objects is seen. Objects larger
    than the frames by the same margin on every side lie on a canvas around the frame: the
    layers inside the frame are those of objects of the frame's size, and only hidden parts
    lie beyond it.
    """
    b, k = objects.shape[:2]
    poses = ctl.identity_matrix(b * k, device=frames.device, dtype=frames.dtype).view(b, k, 2, 3)
    visible = _in_frame(objects if hidden is None else objects * (1.0 - hidden), frames)
    layers = compositing.matte(frames, visible)
    if hidden is not None:
        layers = compositing.fill_hidden(layers, frames, visible, _in_frame(hidden, frames))
    if hidden is None or objects.shape[-2:] == frames.shape[-2:]:
        return poses, _layers_on_canvas(layers, objects)
    beyond = hidden - _on_canvas(_in_frame(hidden, frames), hidden)
    return poses, compositing.fill_hidden(
        _layers_on_canvas(layers, objects), _on_canvas(frames, objects, "replicate"),
        _on_canvas(visible, objects), beyond)


def carry(templates: Tensor, poses: Tensor, theta: Tensor, threshold: float = 0.5,
          size: tuple[int, int] | None = None) -> tuple[Tensor, Tensor]:
    """Chain each object's transform onto its pose and sample its template there.

    Args:
        templates: (B, K, H', W') the carried objects' templates, binarised at ``threshold``.
        poses: (B, K, 2, 3) their poses before the step.
        theta: (B, K, 2, 3) or (B * K, 2, 3) this step's ``input_from_output`` transforms.
        threshold: binarisation threshold of the templates.
        size: the frame's (H, W), None: the templates'; templates larger than the frame by the
            same margin on every side hold what lies beyond it (:func:`start_carrying`).

    Returns:
        ``(moved, poses)``: (B, K, H, W) {0, 1} masks and (B, K, 2, 3) poses after the step
        (``lcvg_env.control.carry_masks``).
    """
    b, k, h, w = templates.shape
    moved, poses = ctl.carry_masks(templates.reshape(b * k, 1, h, w), poses.reshape(b * k, 2, 3),
                                   theta.reshape(b * k, 2, 3), threshold=threshold, size=size)
    return moved.view(b, k, *moved.shape[-2:]), poses.view(b, k, 2, 3)


def _on_canvas(x: Tensor, like: Tensor, mode: str = "constant") -> Tensor:
    """``x`` (..., H, W) padded on every side to ``like``'s (H', W') (``F.pad``'s ``mode``)."""
    dy, dx = (like.shape[-2] - x.shape[-2]) // 2, (like.shape[-1] - x.shape[-1]) // 2
    if dy == dx == 0:
        return x
    return F.pad(x, (dx, dx, dy, dy), mode=mode)


def _layers_on_canvas(layers: compositing.Layers, like: Tensor) -> compositing.Layers:
    """``layers`` padded with nothing (coverage 0) to ``like``'s (H', W') (:func:`_on_canvas`)."""
    return compositing.Layers(_on_canvas(layers.premultiplied, like),
                              _on_canvas(layers.alpha, like))


def _in_frame(x: Tensor, frames: Tensor) -> Tensor:
    """Cut the frame's part (..., H, W) out of ``x`` (..., H', W'), a canvas around ``frames``."""
    h, w = frames.shape[-2:]
    dy, dx = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
    return x[..., dy:dy + h, dx:dx + w]


def agrees(moved: Tensor, masks: Tensor, cover: float = ANCHOR_COVER) -> Tensor:
    """Which carried object masks (N, K, H, W) a segmentation (N, 1, H, W) confirms -> (N, K).

    True where the object's mask is non-empty and ``masks`` covers at least ``cover`` of it
    (the test of ``tracking="anchored"``).
    """
    area = moved.sum(dim=(2, 3))
    covered = (moved * masks).sum(dim=(2, 3))
    return (covered >= cover * area) & (area > 0)


def anchor(
    moved: Tensor, masks: Tensor, found: Tensor, templates: Tensor, poses: Tensor,
    layers: compositing.Layers, frames: Tensor,
) -> tuple[Tensor, Tensor, Tensor, compositing.Layers]:
    """One step of ``tracking="anchored"``: keep the carried objects the segmentation confirms.

    Args:
        moved: (N, K, H, W) the objects' carried masks after the step.
        masks: (N, 1, H, W) M's binarised mask of the generated frame.
        found: (N, K, H, W) the objects as found in ``masks`` (the "segment" tracking).
        templates: (N, K, H', W') the carried objects' templates (:func:`carry`).
        poses: (N, K, 2, 3) their poses after the step.
        layers: the templates' layers, as :func:`start_carrying` made them.
        frames: (N, 3, H, W) the generated frame ``masks`` was taken of.

    Returns:
        ``(objects, templates, poses, layers)``: per object, the carried mask and state where
        ``agrees(moved, masks)``, else the found mask, which becomes the new template (its
        layer taken from ``frames``; nothing of it beyond the frame) with the identity pose.
    """
    agreed = agrees(moved, masks)  # (N, K)
    keep = agreed[:, :, None, None]
    identity = ctl.identity_matrix(1, device=poses.device, dtype=poses.dtype)
    found_layers = _layers_on_canvas(compositing.matte(frames, found), templates)
    return (torch.where(keep, moved, found), torch.where(keep, templates,
                                                         _on_canvas(found, templates)),
            torch.where(keep, poses, identity), layers.where(agreed, found_layers))


# --- segmented objects -------------------------------------------------------------------------
def move_segments(objects: Tensor, theta: Tensor, residual: Tensor, threshold: float = 0.5
                  ) -> tuple[Tensor, Tensor]:
    """Move each object's mask by whole pixels, owing the sub-pixel rest to the next step.

    Args:
        objects: (B, K, H, W) masks, binarised at ``threshold``.
        theta: (B, K, 2, 3) or (B * K, 2, 3) ``input_from_output`` transforms.
        residual: (B, K, 2) normalised motion each object is still owed.
        threshold: binarisation threshold of the masks.

    Returns:
        ``(moved, residual)``: (B, K, H, W) {0, 1} masks and the (B, K, 2) residual of the next
        step (``lcvg_env.control.warp_binary``).
    """
    b, k, h, w = objects.shape
    moved, residual = ctl.warp_binary(objects.reshape(b * k, 1, h, w), theta.reshape(b * k, 2, 3),
                                      residual.reshape(b * k, 2), threshold=threshold)
    return moved.view(b, k, h, w), residual.view(b, k, 2)


def uncontrolled(masks: Tensor, objects: Tensor) -> Tensor:
    """Return the foreground (N, 1, H, W) outside every tracked object (N, K, H, W)."""
    return masks * (1.0 - objects.amax(dim=1, keepdim=True))


def control_mask(moved: Tensor, uncontrolled: Tensor) -> Tensor:
    """m_c: the moved objects (N, K, H, W) united with the foreground that stays -> (N, 1, H, W)."""
    return torch.maximum(moved.amax(dim=1, keepdim=True), uncontrolled)


def expected_centroids(centroids: Tensor, params: Tensor) -> Tensor:
    """Where each object (N, K, 2) should be after controls (N, K, P): moved by (dx, dy)."""
    return (centroids + params[..., :2]).clamp(-1.0, 1.0)


def locate(objects: Tensor, fallback: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Centroids (N, K, 2) and presence (N, K) of object masks (N, K, H, W).

    An empty mask is absent; its centroid is ``fallback``'s (N, K, 2) (its expected position),
    or (0, 0) without one.
    """
    present = ctl.mask_areas(objects) > 0
    centroids = ctl.mask_centroids(objects).float()
    if fallback is not None:
        centroids = torch.where(present[..., None], centroids, fallback)
    return centroids, present


def assignment_orders(k: int, device: torch.device | str | None = None) -> Tensor | None:
    """Every order of K objects (K!, K) for an exact :func:`assign`; None where K is 1 or > 6."""
    if not 1 < k <= MAX_EXACT_OBJECTS:
        return None
    return torch.tensor(list(itertools.permutations(range(k))), device=device)


def assign(cost: Tensor, orders: Tensor | None = None) -> Tensor:
    """Minimum-cost assignment per batch row of a (N, K, K) cost matrix -> (N, K) columns.

    ``orders``: :func:`assignment_orders` of K, made once by a caller that assigns often; None
    makes them here. K > ``MAX_EXACT_OBJECTS`` is assigned greedily.
    """
    n, k, _ = cost.shape
    if orders is None:
        orders = assignment_orders(k, cost.device)
    if orders is not None:
        rows = torch.arange(k, device=cost.device)
        totals = cost[:, rows[None, :], orders].sum(dim=-1)  # (N, K!)
        return orders[totals.argmin(dim=1)]
    # greedy: repeatedly take the cheapest remaining (old, new) pair, all rows at once
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


def associate(components: Tensor, expected: Tensor, seen: Tensor, gate: float | None,
              orders: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Order new components (N, K, H, W) so that component i follows tracked object i.

    Args:
        components: (N, K, H, W) the K largest components of the new mask (empty: none).
        expected: (N, K, 2) where each tracked object should be.
        seen: (N, K) whether each object has been present since its episode began.
        gate: largest distance from an object's expected centroid to the component it follows;
            a seen object matched farther is lost. None: no gate.
        orders: as for :func:`assign`.

    Returns:
        ``(objects, centroids, present)``: (N, K, H, W) masks (empty where lost), (N, K, 2)
        centroids (the expected position where lost) and (N, K) presence.
    """
    objects = components
    centroids, present = locate(objects)  # (N, K, 2), (N, K)
    if objects.shape[1] > 1:
        distance = torch.cdist(expected, centroids)  # (N, K old, K new)
        old, new = seen[:, :, None], present[:, None, :]
        cost = torch.where(old & new, distance, torch.where(old ^ new, MISSING_COST, 0.0))
        order = assign(cost, orders)  # (N, K): old slot i <- new component order[:, i]
        objects = objects.gather(1, order[:, :, None, None].expand(-1, -1, *objects.shape[2:]))
        centroids = centroids.gather(1, order[:, :, None].expand(-1, -1, 2))
        present = present.gather(1, order)
    if gate is not None:
        lost = ((centroids - expected).norm(dim=-1) > gate) & seen  # (N, K)
        present = present & ~lost
        objects = objects * (~lost)[:, :, None, None]
    centroids = torch.where(present[..., None], centroids, expected)
    return objects, centroids, present


def split_by_positions(masks: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
    """Split binary masks into the parts that belong to objects at known positions.

    Args:
        masks: (B, 1, H, W) {0, 1}.
        positions: (B, K, 2) pixel (x, y) of each object (NaN: absent).

    Returns:
        ``(objects, rest)``: each object's part (B, K, H, W), the union of the components
        nearest to it among the K + ``EXTRA_COMPONENTS`` largest, and the components assigned
        to no object (B, 1, H, W) (all of them when no object is present).
    """
    h, w = masks.shape[-2:]
    k = positions.shape[1]
    comps = ctl.object_masks(masks, k + EXTRA_COMPONENTS)  # (B, C, H, W)
    area = comps.sum((2, 3))  # (B, C)
    comp_xy = ctl.normalized_to_pixel(ctl.mask_centroids(comps), (h, w))  # (B, C, 2)
    dist = (comp_xy[:, :, None] - positions[:, None].to(masks.dtype)).norm(dim=-1)  # (B, C, K)
    dist = torch.nan_to_num(dist, nan=math.inf)
    nearest = dist.argmin(-1)  # (B, C)
    assigned = torch.isfinite(dist.amin(-1)) & (area > 0)  # (B, C)
    one_hot = F.one_hot(nearest, k).to(masks.dtype) * assigned[..., None]  # (B, C, K)
    objects = torch.einsum("bchw,bck->bkhw", comps, one_hot).clamp(0, 1)
    rest = (comps * (~assigned)[..., None, None].to(masks.dtype)).amax(1, keepdim=True)
    return objects, rest


# --- composite prediction ----------------------------------------------------------------------
START_MARGIN_PX = 2
"""Pixels around each controlled object of the first frame that the canvas treats as unknown:
they hold its antialiased rim and its shadow, which would stay behind as a ghost when it moves
(varied scenes, 64 episodes: background PSNR 31.7 / 31.4 dB at steps 16 / 100 with no margin,
33.5 / 33.2 with 2 px, 33.2 / 33.0 with 3 px; docs/fidelity.md)."""


def start_canvas(frames: Tensor, objects: Tensor) -> tuple[Tensor, Tensor]:
    """Start a composite model's canvas (``lcvg_env.compositing``) from the first frames.

    The canvas stays as it is for the whole episode: known pixels are the real first frame's,
    never replaced by G's output (which would pile G's corrections on each other step after
    step), and unknown ones are filled once, here, with G's correction added wherever the
    band around a moving object reaches them.

    Returns ``(canvas, known)``: (B, 1, H, W) ``known`` is 1 except on the controlled objects
    (B, K, H, W) grown by :data:`START_MARGIN_PX`, and the canvas (B, 3, H, W) is the frames
    there, filled elsewhere by ``compositing.fill_canvas`` (once: it searches the background
    for a period).
    """
    known = 1.0 - compositing.dilate(objects.amax(dim=1, keepdim=True), START_MARGIN_PX)
    return compositing.fill_canvas(frames, known), known


def predict_composite(
    g: compositing.Predict, frames: Tensor, objects: Tensor, theta: Tensor, moved: Tensor,
    edited: Tensor, canvas: Tensor, known: Tensor, band_px: int,
    carried: tuple[Tensor, compositing.Layers] | None = None,
    light: Tensor | None = None, depth: Tensor | None = None,
    shadow: shadows.DropShadow | None = None,
) -> Tensor:
    """One composite step (``lcvg_env.compositing.predict``) over the episode's canvas.

    Segmented objects bring the pixels of ``frames`` through this step's transforms; carried
    ones their template layers' pixels through their poses, so that an object's pixels are
    sampled once however long the episode (and matted once, at reset).

    Args:
        g: G's call.
        frames: (B, 3, H, W) the current frames f_t.
        objects: (B, K, H, W) the objects' masks in f_t.
        theta: (B, K, 2, 3) this step's ``input_from_output`` transforms.
        moved: (B, K, H, W) the objects' masks after the step.
        edited: (B, 1, H, W) the control mask m_c given to G.
        canvas: (B, 3, H, W) the background, as :func:`start_canvas` made it.
        known: (B, 1, H, W) where ``canvas`` holds real content.
        band_px: the model's ``band_px``.
        carried: ``(poses, layers)`` after the step for carried tracking (:func:`carry`,
            :func:`start_carrying`), None for segmented objects.
        light: (B, 1, H, W) the scene's relative illumination (``LayeredGenerator.
            illumination``), or None: each object is relit by ``compositing.shading_gain``
            from where its pixels were taken to where it lands.
        depth: (B, K) object indices from front to back (``lcvg_env.control.
            infer_occlusion``), or None: object 0 in front, then 1, and so on.
        shadow: the scene's drop shadow (``lcvg_env.shadows.fit_drop_shadow``, read at reset;
            ``canvas`` is free of it), cast on the canvas from ``edited`` (the moved objects
            and the foreground that stays); None: the canvas as it is.

    Returns:
        The next frames, float32 (B, 3, H, W) clamped to [-1, 1].
    """
    drawn = None
    if shadow is not None:
        canvas, drawn = shadows.cast(canvas, shadow, edited)
    if carried is None:
        pose, layers = theta, compositing.matte(frames, objects)
    else:
        pose, layers = carried
    gain = None if light is None else compositing.shading_gain(light, pose, moved)
    out, _ = compositing.predict(g, layers, pose, moved, edited, canvas, known, band_px,
                                 objects.amax(dim=1, keepdim=True), gain, depth, drawn)
    return out.float().clamp(-1.0, 1.0)
