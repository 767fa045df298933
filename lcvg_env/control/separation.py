"""Objects of a foreground mask, with touching objects cut apart by their colours.

M's foreground mask joins objects that touch or overlap into one connected component, and
``object_masks`` then hands the pair out as one object: a command meant for one moves both.
``separate_objects`` cuts such a component where its pixels fall into two clearly different
colours that each form one piece, and tries each piece again. Colours are read away from the
component's outer rim where it has an inside (the rim blends with the background) and the rim
then goes to the piece it touches; a lone pixel the cut still gives one object inside or on the
edge of another goes back to the object it touches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lcvg_env.control.checks import _require_masks, _require_tensor
from lcvg_env.control.components import _neighbour_max, connected_components, rings

WRAPPED = 0.6
"""Share of the pixels around a piece a piece near the edge must hold to count as its border."""

THIN = 0.15
"""Largest share of a piece's pixels with all eight neighbours in it for the piece to be thin
(a band about 2 px wide has none)."""

ALONG = 0.75
"""Share of a thin piece's pixels within 2 px of the other piece for it to lie along it."""

RING_COLOUR = 0.25
"""Largest distance (RGB in [0, 1]) of a pixel off M's mask from a thin piece's mean colour for
it to continue the piece as a border (0.25 is 64 grey levels)."""

RING_FILL = 0.25
"""Share of the pixels beside the other piece, in an angle around it, that a border must hold
there."""

BACKGROUND_LIKE = 0.1
"""Largest distance (RGB in [0, 1]) of a piece's mean colour from the median of the pixels 3-4
px around it off M's mask for the piece to be background-like (0.1 is 25 grey levels; the
twins' objects lie at least 70 from their background, 35 in the nearest look tried)."""


@dataclass(frozen=True)
class ColourSplit:
    """When a connected component is cut in two by colour.

    The colours of the component's interior (all its pixels if it has too little, or if the
    interior does not cut) are split by 2-means, started from the sign of their projection on
    the principal colour axis (robust to a few outlying pixels). The cut is
    kept only if both clusters are big and each is coherent enough for how far apart their
    mean colours are (:attr:`coherence`): a textured object (patches of a second colour
    scattered over it) or a thin rim of edge pixels fails these tests and stays whole, while
    an object cut into pieces by another one in front of it still comes apart when the two
    colours differ clearly. A thin border around a fill (an outlined sprite) is not cut off
    (:attr:`shell_px`).
    """

    min_pixels: int = 16
    """Smallest piece, in pixels."""
    min_fraction: float = 0.12
    """Smallest piece, as a fraction of the component being cut."""
    coherence: tuple[tuple[float, float], ...] = ((0.22, 0.95), (0.25, 0.6), (0.4, 0.4))
    """(distance, fraction) pairs: clusters whose mean colours (RGB in [0, 1]) are at least
    ``distance`` apart are cut when each cluster's largest connected piece holds at least
    ``fraction`` of it (the least fraction among the distances reached applies). Below the
    smallest distance nothing is cut. Close colours must each be one piece (two shades of one
    textured object rarely are); far colours may be in pieces (an object behind another)."""
    depth: int = 2
    """Levels of cutting (2: one component gives at most four objects)."""
    shell_px: int = 3
    """A piece lying wholly within this many pixels of the component's edge that wraps the
    other piece (holds at least :data:`WRAPPED` of the pixels around it), or a thin piece
    lying along the other whose colour goes on round it beyond M's mask (:data:`THIN`,
    :data:`ALONG`, :data:`RING_COLOUR`, :data:`RING_FILL`: a border M's mask kept only part
    of), is an outline of one object (a fill and its border), not a second object: no cut.
    0 turns both tests off."""

    def __post_init__(self) -> None:
        if not (isinstance(self.min_pixels, int) and not isinstance(self.min_pixels, bool)
                and self.min_pixels >= 1):
            raise ValueError(f"ColourSplit.min_pixels must be an int >= 1, got {self.min_pixels!r}")
        for name in ("depth", "shell_px"):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
                raise ValueError(f"ColourSplit.{name} must be an int >= 0, got {value!r}")
        if not 0.0 <= self.min_fraction <= 1.0:
            raise ValueError(
                f"ColourSplit.min_fraction must be in [0, 1], got {self.min_fraction!r}")
        pairs = self.coherence
        if not (isinstance(pairs, tuple) and pairs and all(
                isinstance(pair, tuple) and len(pair) == 2 and pair[0] >= 0.0
                and 0.0 <= pair[1] <= 1.0 for pair in pairs)):
            raise ValueError(
                "ColourSplit.coherence must be a non-empty tuple of (distance >= 0, fraction "
                f"in [0, 1]) pairs, got {pairs!r}")

    def needed_coherence(self, distance: float) -> float | None:
        """Return the coherence a cut between clusters ``distance`` apart needs (None: no cut)."""
        reached = [fraction for least, fraction in self.coherence if distance >= least]
        return min(reached) if reached else None


def _two_means(colours: Tensor, iterations: int = 10) -> tuple[Tensor, Tensor]:
    """(n, 3) colours -> cluster of each (n,) bool and the two mean colours (2, 3)."""
    centred = colours - colours.mean(0)
    axis = torch.linalg.svd(centred, full_matrices=False).Vh[0]
    side = centred @ axis > 0
    for _ in range(iterations):
        if bool(side.all()) or not bool(side.any()):
            break
        centres = torch.stack([colours[~side].mean(0), colours[side].mean(0)])
        new = torch.cdist(colours, centres).argmin(1).bool()
        if torch.equal(new, side):
            break
        side = new
    if bool(side.all()) or not bool(side.any()):
        return side, colours.mean(0).expand(2, -1)
    return side, torch.stack([colours[~side].mean(0), colours[side].mean(0)])


def _largest_piece(mask: Tensor) -> int:
    """Pixels of the largest 8-connected piece of a (H, W) bool mask."""
    labels = connected_components(mask[None, None].float())[0]
    return int(torch.bincount(labels.flatten())[1:].max())


def _interior(mask: Tensor) -> Tensor:
    """Pixels of a (H, W) bool mask whose eight neighbours are all in it."""
    return mask & (_neighbour_max((~mask).float(), 8) < 0.5)


def _cut(colours: Tensor, component: Tensor, rule: ColourSplit, depth: int) -> list[Tensor]:
    """Pieces (H, W) bool of one component of a frame whose (H, W, 3) colours are in [0, 1].

    The colours are clustered and judged first on the component's interior: its outer rim
    blends with the background, and those pixels pull the clusters towards light and dark and
    fall into either in specks; the rim then goes to the piece it touches. An object seen only
    in slivers behind another has almost no interior, so all pixels are tried next.
    """
    n = int(component.sum())
    if depth == 0 or n < 2 * rule.min_pixels:
        return [component]
    inner = _interior(component)
    tries = [inner, component] if int(inner.sum()) >= 2 * rule.min_pixels else [component]
    for core in tries:
        pieces = _split(colours, component, core, rule)
        if pieces is not None:
            return [part for piece in pieces for part in _cut(colours, piece, rule, depth - 1)]
    return [component]


def _split(colours: Tensor, component: Tensor, core: Tensor, rule: ColourSplit
           ) -> list[Tensor] | None:
    """Two pieces of ``component`` by the colours of its pixels in ``core`` (None: no cut)."""
    side, centres = _two_means(colours[core])
    coherence = rule.needed_coherence(float((centres[0] - centres[1]).norm()))
    if coherence is None:
        return None
    cores = []
    for chosen in (~side, side):
        piece = torch.zeros_like(component)
        piece[core] = chosen
        if not bool(chosen.any()) or _largest_piece(piece) < coherence * int(chosen.sum()):
            return None
        cores.append(piece)
    pieces = _grow(torch.stack(cores), component, colours, centres)
    least = max(rule.min_pixels, rule.min_fraction * int(component.sum()))
    if any(int(piece.sum()) < least for piece in pieces):
        return None
    if rule.shell_px and _outlined(colours, component, pieces, rule.shell_px):
        return None
    return pieces


def _outlined(colours: Tensor, component: Tensor, pieces: list[Tensor], shell_px: int
              ) -> bool:
    """Whether one of two (H, W) bool pieces of ``component`` is a thin border of the other.

    Either the border lies wholly within ``shell_px`` pixels (8-neighbour steps) of a pixel
    outside the component and wraps the other piece (at least :data:`WRAPPED` of the pixels
    4-adjacent to the other piece are the border's), or it is thin, lies along the other piece
    and goes on round it in its own colour beyond M's mask (at most :data:`THIN` of its
    pixels have all eight neighbours in it, at least :data:`ALONG` of them are within 2 px of
    the other piece, and :func:`_ringed_in_its_colour`). M's mask often leaves out part of a
    border, or takes in background beyond it, so a border may wrap only half of its fill; a
    sliver of an object behind another is as thin, but its colour stops where it does.
    """
    near_edge = _dilated(~component, shell_px)
    for border, inner in ((pieces[0], pieces[1]), (pieces[1], pieces[0])):
        around = _dilated(inner, 1, neighbours=4) & ~inner
        if (bool(near_edge[border].all()) and int(around.sum())
                and float(border[around].float().mean()) >= WRAPPED):
            return True
        if (int(_interior(border).sum()) <= THIN * int(border.sum())
                and float(_dilated(inner, 2)[border].float().mean()) >= ALONG
                and _ringed_in_its_colour(colours, component, border, inner)):
            return True
    return False


def _ringed_in_its_colour(colours: Tensor, component: Tensor, border: Tensor, inner: Tensor
                          ) -> bool:
    """Whether a thin piece and the pixels off M's mask of about its colour ring another.

    ``border`` and the pixels outside ``component`` within :data:`RING_COLOUR` of its mean
    colour, and nearer to it than to the background (:func:`_background_around`
    ``component``), hold more than :data:`RING_FILL` of the pixels within 2 px of ``inner`` in
    enough angles around it (``control.rings``): a border M kept only part of goes on round
    its fill, while a sliver of an object behind another stops, and a shadow (the background
    darkened) has no background-like pixels added to it.
    """
    background = _background_around(colours, component, component)
    if background is None:
        return False
    beside = _dilated(inner, 2) & ~inner
    colour = colours[border].mean(0)
    off = (colours - colour).norm(dim=-1)
    similar = (off <= RING_COLOUR) & (off < (colours - background).norm(dim=-1))
    marked = beside & (border | (~component & similar))
    return bool(rings(inner[None, None], marked[None, None], beside[None, None],
                      fill=RING_FILL)[0, 0])


def _dilated(mask: Tensor, steps: int, neighbours: int = 8) -> Tensor:
    """Grow a (H, W) bool mask by ``steps`` rings of 4- or 8-neighbours."""
    grown = mask.float()[None, None]
    for _ in range(steps):
        grown = _neighbour_max(grown, neighbours)
    return grown[0, 0] > 0.5


def _grow(cores: Tensor, component: Tensor, colours: Tensor, centres: Tensor) -> list[Tensor]:
    """Grow (2, H, W) bool cores over the rest of ``component`` one ring of pixels at a time.

    A pixel both reach in the same ring goes to the core whose mean colour (``centres`` (2, 3))
    is nearer; a pixel neither reaches (a loose part of the component) goes by colour alone.
    """
    owner = torch.full(component.shape, -1, dtype=torch.long, device=component.device)
    owner[cores[0]] = 0
    owner[cores[1]] = 1
    while True:
        free = component & (owner < 0)
        taken = torch.stack([owner == 0, owner == 1]).float()
        reach = (_neighbour_max(taken, 8) > 0.5) & free  # (2, H, W)
        if not bool(reach.any()):
            break
        both = reach[0] & reach[1]
        owner[reach[0] & ~both] = 0
        owner[reach[1] & ~both] = 1
        owner[both] = torch.cdist(colours[both], centres).argmin(1)
    free = component & (owner < 0)
    owner[free] = torch.cdist(colours[free], centres).argmin(1)
    return [owner == 0, owner == 1]


def separate_objects(frames: Tensor, masks: Tensor, k: int,
                     rule: ColourSplit | None = None) -> Tensor:
    """Return the ``k`` largest objects of binarised masks, touching ones cut apart by colour.

    As ``lcvg_env.control.object_masks`` (same order: area, then first pixel in raster
    order; zero masks pad), except that each connected component is first cut by ``rule``
    and that pieces the background around them matches come after all others
    (:data:`BACKGROUND_LIKE`: a patch of background M took for foreground does not crowd out
    an object smaller than it). A frame whose components all stay whole and none of which
    is background-like gives exactly ``object_masks``' result.

    Args:
        frames: (B, 3, H, W) frames in [-1, 1].
        masks: (B, 1, H, W) masks, binarised at 0.5.
        k: number of objects to return (>= 1).
        rule: when to cut (default ``ColourSplit()``).

    Returns:
        (B, k, H, W) {0, 1} masks in the float dtype of ``masks`` (float32 otherwise).
    """
    frames = _require_tensor("frames", frames)
    masks = _require_masks("masks", masks, channels=1)
    if frames.ndim != 4 or frames.shape[1] != 3 or frames.shape[0] != masks.shape[0] \
            or frames.shape[2:] != masks.shape[2:]:
        raise ValueError(f"frames must be (B, 3, H, W) matching masks {tuple(masks.shape)}, "
                         f"got {tuple(frames.shape)}")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    rule = ColourSplit() if rule is None else rule
    b, _, h, w = masks.shape
    dtype = masks.dtype if masks.dtype.is_floating_point else torch.float32
    out = torch.zeros(b, k, h, w, dtype=dtype, device=masks.device)
    labels = connected_components(masks)  # (B, H, W)
    colours = ((frames.float() + 1.0) / 2.0).permute(0, 2, 3, 1)  # (B, H, W, 3)
    raster = torch.arange(h * w, device=masks.device).view(h, w)
    for i in range(b):
        pieces = [part for label in labels[i].unique().tolist() if label != 0
                  for part in _cut(colours[i], labels[i] == label, rule, rule.depth)]
        # largest first; ties: the piece whose first pixel in raster order comes first
        taken = labels[i] > 0
        pieces.sort(key=lambda p: (_background_like(colours[i], p, taken), -int(p.sum()),
                                   int(raster[p].min())))
        for j, piece in enumerate(pieces[:k]):
            out[i, j] = piece.to(dtype)
    return _absorb_lone_pixels(out)


def _background_like(colours: Tensor, piece: Tensor, taken: Tensor) -> bool:
    """Whether a (H, W) piece's mean colour matches the background around it.

    Within :data:`BACKGROUND_LIKE` of the median of the pixels 3-4 px around it off ``taken``
    (M's mask); False with fewer than 8 of them.
    """
    around = _background_around(colours, piece, taken)
    return around is not None and float((colours[piece].mean(0) - around).norm()) < BACKGROUND_LIKE


def _background_around(colours: Tensor, region: Tensor, taken: Tensor) -> Tensor | None:
    """Return the median (3,) colour of the pixels 3-4 px around a (H, W) region, off ``taken``.

    None with fewer than 8 such pixels (a region filling the frame).
    """
    nearby = _dilated(region, 4) & ~_dilated(region, 2) & ~taken
    if int(nearby.sum()) < 8:
        return None
    return colours[nearby].median(0).values


def _absorb_lone_pixels(objects: Tensor) -> Tensor:
    """Give each pixel of an object with no 8-neighbour in it to the object it touches most.

    (B, K, H, W) {0, 1} disjoint masks in, the same out; a lone pixel touching no other object
    stays (ties: the lowest index).
    """
    b, k, h, w = objects.shape
    ones = torch.ones(1, 1, 3, 3, dtype=objects.dtype, device=objects.device)
    around = F.conv2d(objects.reshape(b * k, 1, h, w), ones, padding=1).view(b, k, h, w)
    around = around - objects  # neighbours in each object, the pixel itself left out
    lone = ((objects > 0.5) & (around < 0.5)).any(dim=1, keepdim=True)  # (B, 1, H, W)
    others = around.masked_fill(objects > 0.5, 0.0)
    most, target = others.max(dim=1, keepdim=True)
    move = lone & (most > 0.5)
    if not bool(move.any()):
        return objects
    new = torch.zeros_like(objects).scatter_(1, target, 1.0)
    return torch.where(move, new, objects)
