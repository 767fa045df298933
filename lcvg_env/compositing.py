"""Composite prediction: G corrects a frame made of moved pixels instead of redrawing it.

The paper's generator must carry an object's appearance across a move by itself, through a
quantised latent, and every step pays the loss of that pass again (thin parts, texture and
unseen colours fade within a few steps). For parametric controls the transform of each object
is known, so a controlled step (``ModelConfig.prediction == "composite"``) builds the frame the
move implies and lets G correct it only where something changed:

    colour_k, alpha_k = matte(f_t, object_k)    # premultiplied, soft coverage of the rim
    layer_k = gain_k * warp((colour_k, alpha_k), theta_k)  # own pixels, moved, relit
    composite = layer_d0 over ... over layer_dK-1 over the canvas  # its holes filled
    band = dilate(moved | objects before | holes, band_px) minus what the moved objects cover
                                         (and the known pixels a cast shadow has drawn)
    f_{t+1} = clamp(composite + band * G(composite, m_c))

``d`` is the objects' depth order, front first (index order unless the caller knows better:
``lcvg_env.control.infer_occlusion``); an object partly hidden at the start may bring the
hidden part too (:func:`fill_hidden`).
``gain_k`` (1 unless the model estimates the scene's light: ``shading_gain``) is how much
brighter the object's new place is lit than the place its pixels were taken from.
``canvas`` is the background behind the objects (the simulator's: the real first frame, the
same at every step, unknown where the controlled objects and a margin around them stood at the
start; in training: f_t outside its objects), its unknown pixels filled once by
:func:`fill_canvas` (the background's own period where it repeats, push-pull elsewhere), its
drop shadows cast from where the objects are after the step (``lcvg_env.shadows``);
``known`` (B, 1, H, W) says where it holds real content. Outside the band the composite is the
next frame, so the background a user starts from is kept exactly; inside it G adds shading,
shadows and the background an object uncovers. The moved objects' own pixels are the layers'
(their light is ``gain_k``'s): G's correction there only changed their colours (paired
evaluation, seed 0, step 16: colour error 6.88 -> 6.78 varied, 8.23 -> 8.19 classic without it,
background unchanged). Frames are in [-1, 1], masks in {0, 1}, theta
``input_from_output`` (``lcvg_env.control``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from lcvg_env import control as ctl

__all__ = [
    "BORDER_OWN_COLOUR",
    "BORDER_PX",
    "BORDER_WINDOW",
    "EDGE_RESHARPEN",
    "MATTE_MIN_CONTRAST",
    "MATTE_OWN_COLOUR",
    "MATTE_PX",
    "MATTE_SHADES",
    "PATTERN_GAIN",
    "PATTERN_MIN_SHIFT",
    "PATTERN_PAIRS",
    "PATTERN_REACH",
    "PATTERN_RIM_PX",
    "PATTERN_TIE",
    "Composite",
    "Layers",
    "compose",
    "dilate",
    "fill_hidden",
    "fill_canvas",
    "fill_holes",
    "matte",
    "predict",
    "shading_gain",
    "take_borders",
]

MATTE_PX = 1
"""How far past an object's mask :func:`matte` looks for its rim: M's masks often stop a pixel
short of an antialiased edge, and the pixels left behind would stay as a ghost outline."""
MATTE_MIN_CONTRAST = 0.1
"""Smallest RGB distance (frames in [-1, 1]) between an object's colour and the background
behind it at which :func:`matte` estimates a rim pixel's coverage; below it the mask is taken
as it is (the blend says nothing)."""

MATTE_OWN_COLOUR = 0.2
"""RGB distance (frames in [-1, 1]; 0.2 is 25 grey levels) beyond which a pixel of an object's
mask that is no blend of the object's colour with the background behind it (shadowed or not,
:data:`MATTE_SHADES`) is taken as the object's own colour, coverage 1: a dark border, a second
colour. Within it the blend's coverage holds."""
MATTE_SHADES = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
"""Darkenings of the background behind a rim pixel :func:`matte` considers (shadows)."""
BORDER_PX = 2
"""How far past M's mask :func:`take_borders` grows an object over its own border."""
BORDER_OWN_COLOUR = 0.3
"""As :data:`MATTE_OWN_COLOUR`, for the pixels off M's mask :func:`take_borders` takes in
(0.3 is 38 grey levels)."""
BORDER_WINDOW = 8
"""How far (pixels, each axis) :func:`take_borders` looks for the background near a pixel (it
must reach past ``BORDER_PX + 1``)."""

EDGE_RESHARPEN = 0.3
"""How much :func:`compose` steepens a moved object's edges after interpolating between pixels:
the coverage's slope about 1/2 is multiplied by ``1 + EDGE_RESHARPEN * spread``
(``control.subpixel_spread``: 0 on pixel centres, 1 halfway). On the twins' exact coverage,
moved by random sub-pixel amounts, the mean error of the rim's coverage falls from 0.029 to
0.018 (0.2-0.35 all within 0.001 of that)."""

Predict = Callable[[Tensor, Tensor], Tensor]
"""G's call: (frames (B, 3, H, W), masks (B, 1, H, W)) -> (B, 3, H, W)."""


class Layers(NamedTuple):
    """Objects ready to move (:func:`matte`): premultiplied pixels and soft coverage."""

    premultiplied: Tensor
    """(B, K, 3, H, W) each object's colour times its coverage; 0 away from it."""
    alpha: Tensor
    """(B, K, 1, H, W) each object's coverage of each pixel, in [0, 1]."""

    def where(self, keep: Tensor, other: Layers) -> Layers:
        """Return these layers where the (B, K) bool ``keep`` holds, ``other``'s elsewhere."""
        k = keep[:, :, None, None, None]
        return Layers(torch.where(k, self.premultiplied, other.premultiplied),
                      torch.where(k, self.alpha, other.alpha))


class Composite(NamedTuple):
    """What :func:`compose` returns (all (B, C, H, W) on the frames' device)."""

    image: Tensor
    """(B, 3, H, W) moved objects over the (filled) canvas."""
    band: Tensor
    """(B, 1, H, W) {0, 1}: where G's correction applies (around what changed, off the pixels
    the moved objects cover and the known ones a cast shadow has drawn)."""
    moved: Tensor
    """(B, 1, H, W) {0, 1}: union of the moved objects' masks."""


def dilate(masks: Tensor, px: int) -> Tensor:
    """Grow (B, C, H, W) {0, 1} masks by ``px`` pixels (a square), channel by channel."""
    if px <= 0:
        return masks
    return F.max_pool2d(masks, 2 * px + 1, stride=1, padding=px)


def fill_holes(image: Tensor, valid: Tensor, levels: int = 6) -> Tensor:
    """Fill the pixels of (B, C, H, W) ``image`` where ``valid`` (B, 1, H, W) is 0.

    Push-pull: the valid pixels are averaged down a pyramid (each level weighted by how much
    of it is valid) and the holes take the finest average that reaches them, so a hole becomes
    the smooth continuation of what surrounds it. Valid pixels are returned unchanged.
    """
    pyramid = [(image * valid, valid)]
    for _ in range(levels):
        colour, weight = pyramid[-1]
        if min(colour.shape[-2:]) < 2:
            break
        pyramid.append((F.avg_pool2d(colour, 2, ceil_mode=True),
                        F.avg_pool2d(weight, 2, ceil_mode=True)))
    colour, weight = pyramid[-1]
    filled = colour / weight.clamp_min(1e-6)
    for colour, weight in reversed(pyramid[:-1]):
        coarse = F.interpolate(filled, size=colour.shape[-2:], mode="bilinear",
                               align_corners=False)
        mean = colour / weight.clamp_min(1e-6)
        filled = torch.where(weight > 0.999, mean, weight * mean + (1.0 - weight) * coarse)
    return torch.where(valid > 0.5, image, filled)


PATTERN_MIN_SHIFT = 6.0
"""Shortest shift (pixels) :func:`fill_canvas` tries as a background's period. Shorter ones
only smear the pixels next to a hole across it: a smooth background matches itself 2 px away
better than push-pull predicts the hole's rim. A period under it is found at a multiple."""
PATTERN_REACH = 24
"""Longest shift (pixels, each axis) :func:`fill_canvas` tries as a period."""
PATTERN_PAIRS = 0.25
"""Least share of a canvas's known pixels whose shifted partner is known too for
:func:`fill_canvas` to score a shift."""
PATTERN_TIE = 0.1
"""Shifts whose mean squared difference is within this share of the best one's tie; the
shortest of them is taken."""
PATTERN_RIM_PX = 3
"""Width of the rim of known pixels around the holes on which :func:`fill_canvas` tries a
period against push-pull (both filling it from the known pixels beyond it)."""
PATTERN_GAIN = 0.4
"""A period fills the holes only where its squared error on the rim is below this share of
push-pull's there. On smooth and graded backgrounds a 6 px copy often halves push-pull's error
on the rim and still loses inside a wide hole (copied from farther away); on 800 varied twin
first frames (true masks, seeds 90000-90199, four looks; before the noise was taken out of
both errors) 0.7 made 16 holes worse by up to 9.7 dB, 0.4 none, 0.3 gained 10-30 % less than
0.4 on stripes and tiles."""


def fill_canvas(image: Tensor, valid: Tensor) -> Tensor:
    """Fill the pixels of a background (B, 3, H, W) where ``valid`` (B, 1, H, W) is 0.

    A background that repeats (stripes, tiles, any period) is continued by its period: the
    shift d between :data:`PATTERN_MIN_SHIFT` and :data:`PATTERN_REACH` pixels over which the
    known pixels match themselves best, each hole pixel taking the mean of the known pixels at
    the first two multiples of +-d that reach it (:func:`_copy_along`). Push-pull
    (:func:`fill_holes`) blurs a pattern into its mean. The period is used where, filling a
    rim of known pixels around the holes from the known pixels beyond it, it errs less than
    :data:`PATTERN_GAIN` times push-pull (both errors less the rim's own sensor noise,
    :func:`_noise_variance`, which no fill predicts and which would otherwise hide the period
    of a noisy frame). Elsewhere
    (smooth, graded or grainy backgrounds), and for hole pixels no multiple of d reaches, the
    result is :func:`fill_holes`'. Valid pixels are returned unchanged. Meant for a canvas
    filled once (``lcvg_env.tracking.start_canvas``): 4-5 ms per 64 x 64 image on a CPU
    thread.
    """
    pushed = fill_holes(image, valid)
    holes = 1.0 - valid
    shift = _best_shift(image, valid)
    rim = dilate(holes, PATTERN_RIM_PX) * valid
    beyond = valid * (1.0 - rim)
    copied, reached = _copy_along(image, beyond, rim, shift)
    on_rim = rim * reached
    pushed_error = (((fill_holes(image, beyond) - image) ** 2).sum(1, keepdim=True) * on_rim
                    ).sum(dim=(1, 2, 3))
    copied_error = (((copied - image) ** 2).sum(1, keepdim=True) * on_rim).sum(dim=(1, 2, 3))
    # both errors hold the rim pixels' own sensor noise, which no fill can predict
    noise = 3.0 * _noise_variance(image, valid) * on_rim.sum(dim=(1, 2, 3))
    periodic = copied_error - noise < PATTERN_GAIN * (pushed_error - noise)
    if image.device.type == "cpu":  # copy for the periodic canvases only (a GPU would sync)
        pick = periodic.nonzero()[:, 0]
        if len(pick) == 0:
            return pushed
        copied, reached = _copy_along(image[pick], valid[pick], holes[pick], shift[pick])
        out = pushed.clone()
        out[pick] = torch.where(reached, copied, pushed[pick])
        return out
    copied, reached = _copy_along(image, valid, holes, shift)
    return torch.where(periodic[:, None, None, None] & reached, copied, pushed)


def _noise_variance(image: Tensor, valid: Tensor) -> Tensor:
    """(B,) variance of pixel noise in ``image``, per channel, from its valid 2x2 blocks.

    The median absolute diagonal difference ``(a - b - c + d) / 2`` of a block (the std of
    the noise for white noise; smooth shading cancels in it), divided by 0.6745 (a normal's
    median absolute value). Edges are too few to move the median.
    """
    a, b = image[..., :-1, :-1], image[..., :-1, 1:]
    c, d = image[..., 1:, :-1], image[..., 1:, 1:]
    whole = (valid[..., :-1, :-1] * valid[..., :-1, 1:] * valid[..., 1:, :-1]
             * valid[..., 1:, 1:]) > 0.5
    diagonal = ((a - b - c + d) / 2.0).abs()
    spread = torch.where(whole, diagonal, torch.nan).flatten(1).nanmedian(dim=1).values
    return (torch.nan_to_num(spread, nan=0.0) / 0.6745) ** 2


def _best_shift(image: Tensor, valid: Tensor) -> Tensor:
    """(B, 2) int64 shift (dy, dx) over which the valid pixels of ``image`` match best.

    The mean over pixel pairs both valid of the squared RGB difference, for every shift up to
    :data:`PATTERN_REACH` on each axis, by FFT correlations of the zero-padded images:
    ``sum m(p) m(p+d) |x(p) - x(p+d)|^2 = (m, q)(d) + (q, m)(d) - 2 (mx, mx)(d)`` with
    ``q = m |x|^2``. Shifts shorter than :data:`PATTERN_MIN_SHIFT` or with fewer pairs than
    :data:`PATTERN_PAIRS` of the valid pixels are not scored; of those within
    :data:`PATTERN_TIE` of the best, the shortest is taken.
    """
    b, _, h, w = image.shape
    r = PATTERN_REACH
    size = (h + r, w + r)  # no wrap-around for shifts up to r
    x = (image * valid).float()
    m_hat = torch.fft.rfft2(valid.float(), s=size)[:, 0]
    x_hat = torch.fft.rfft2(x, s=size)
    q_hat = torch.fft.rfft2((x * x).sum(1), s=size)
    # sum_p a(p) c(p + d) is the inverse transform of conj(A) C
    pairs = torch.fft.irfft2(m_hat.conj() * m_hat, s=size)
    squared = torch.fft.irfft2(m_hat.conj() * q_hat + q_hat.conj() * m_hat
                               - 2.0 * (x_hat.conj() * x_hat).sum(1), s=size)
    offsets = torch.arange(-r, r + 1, device=image.device)
    rows, cols = offsets % size[0], offsets % size[1]
    pairs, squared = pairs[:, rows][:, :, cols], squared[:, rows][:, :, cols]
    length = torch.hypot(offsets[:, None].float(), offsets[None, :].float())
    enough = pairs >= PATTERN_PAIRS * valid.sum(dim=(1, 2, 3))[:, None, None]
    scored = enough & (length >= PATTERN_MIN_SHIFT)
    error = torch.where(scored, squared / pairs.clamp_min(1.0), torch.inf).flatten(1)
    # the shortest of the shifts that match about as well as the best: a multiple of a period,
    # or a longer step along a stripe, reaches fewer hole pixels from inside the frame
    near_best = error <= error.min(1, keepdim=True).values * (1.0 + PATTERN_TIE) + 1e-6  # 0 ties
    best = torch.where(near_best, length.flatten(), torch.inf).argmin(1)
    return torch.stack([offsets[best // (2 * r + 1)], offsets[best % (2 * r + 1)]], 1)


def _copy_along(image: Tensor, valid: Tensor, targets: Tensor,
                shift: Tensor) -> tuple[Tensor, Tensor]:
    """Copy into ``targets`` (B, 1, H, W) the valid pixels nearest along +-``shift`` (B, 2).

    Each target takes the mean of the valid pixels at the first multiple of the shift that
    reaches it (on either side) and at the next one: two or more samples of the period halve
    the copied sensor noise and, taken from both sides, cancel a light gradient. Returns the
    (B, 3, H, W) copies (0 where none) and (B, 1, H, W) bool: where one was found.
    """
    b, c, h, w = image.shape
    ys = torch.arange(h, device=image.device).view(1, h, 1)
    xs = torch.arange(w, device=image.device).view(1, 1, w)
    dy, dx = shift[:, 0].view(b, 1, 1), shift[:, 1].view(b, 1, 1)
    flat, ok_flat = image.flatten(2), valid.flatten(1) > 0.5
    total = torch.zeros_like(image)
    samples = torch.zeros(b, 1, h, w, device=image.device)
    first = torch.zeros(b, 1, h, w, dtype=torch.long, device=image.device)  # 0: none yet
    wanted = targets > 0.5
    for hop in range(1, max(h, w) // int(PATTERN_MIN_SHIFT) + 2):
        found = torch.zeros_like(image)
        count = torch.zeros(b, 1, h, w, device=image.device)
        in_frame = torch.zeros(b, 1, h, w, dtype=torch.bool, device=image.device)
        for sign in (hop, -hop):
            y, x = ys + sign * dy, xs + sign * dx
            inside = ((y >= 0) & (y < h) & (x >= 0) & (x < w)).unsqueeze(1)
            at = (y.clamp(0, h - 1) * w + x.clamp(0, w - 1)).view(b, -1)
            ok = ok_flat.gather(1, at).view(b, 1, h, w) & inside
            found += flat.gather(2, at.unsqueeze(1).expand(b, c, -1)).view(b, c, h, w) * ok
            count += ok
            in_frame |= inside
        taking = wanted & (count > 0) & ((first == 0) | (first == hop - 1))
        total = torch.where(taking, total + found, total)
        samples = torch.where(taking, samples + count, samples)
        first = torch.where(taking & (first == 0), hop, first)
        # later hops change nothing once no target awaits a first sample still in the frame (a
        # ray leaves it for good) or a second one; asking costs a GPU a sync
        waiting = (wanted & (first == 0) & in_frame) | (first == hop)
        if image.device.type == "cpu" and not bool(waiting.any()):
            break
    return total / samples.clamp_min(1.0), samples > 0


def _inner_and_body(masks: Tensor) -> tuple[Tensor, Tensor]:
    """Inner pixels (one pixel or more inside) and own-colour pixels of (B, 1, H, W) masks.

    The own-colour pixels are the inner ones, or the whole mask of an object too thin to have
    any (a rim pixel is a blend with what lies around it).
    """
    inner = 1.0 - dilate(1.0 - masks, 1)
    has_inner = inner.amax(dim=(1, 2, 3), keepdim=True) > 0
    return inner, torch.where(has_inner, inner, masks)


def _own_colour(frames: Tensor, body: Tensor) -> Tensor:
    """Mean colour (B, 3, 1, 1) of (B, 3, H, W) frames over (B, 1, H, W) own-colour pixels."""
    return (frames * body).sum(dim=(2, 3), keepdim=True) / body.sum(
        dim=(2, 3), keepdim=True).clamp_min(1.0)


def _blend_residual(pixels: Tensor, colour: Tensor, behind: Tensor,
                    shades: tuple[float, ...] = MATTE_SHADES) -> Tensor:
    """Distance of pixels from the nearest blend ``a colour + (1 - a) s behind``.

    a in [0, 1], s in ``shades``; frames in [-1, 1]; RGB on the last axis of the broadcast
    shapes, which the result drops.
    """
    return _squared_residuals(pixels, colour, behind, shades).amin(dim=-1).sqrt()


def _squared_residuals(pixels: Tensor, colour: Tensor, behind: Tensor,
                       shades: tuple[float, ...]) -> Tensor:
    """:func:`_blend_residual` squared, for each shade on its own: the shades on the last axis."""
    # in intensity (x + 1) the shaded background is s * b; every term below is a dot product
    # of p, c and b, taken once for all shades
    p, c, b = pixels + 1.0, colour + 1.0, behind + 1.0
    pc, pb, cb = (p * c).sum(-1), (p * b).sum(-1), (c * b).sum(-1)
    pp, cc, bb = (p * p).sum(-1), (c * c).sum(-1), (b * b).sum(-1)
    squared = []
    for shade in shades:
        along = pc - shade * (pb + cb) + shade * shade * bb  # (p - s b) . (c - s b)
        length = cc - 2.0 * shade * cb + shade * shade * bb  # |c - s b|^2
        share = (along / length.clamp_min(1e-6)).clamp(0.0, 1.0)
        offset = pp - 2.0 * shade * pb + shade * shade * bb  # |p - s b|^2
        squared.append(offset - share * (2.0 * along - share * length))
    return torch.stack(squared, dim=-1).clamp_min(0.0)


def matte(frames: Tensor, objects: Tensor) -> Layers:
    """Each object's premultiplied colour and soft coverage in the frame it was drawn in.

    A pixel one pixel or more inside an object's mask is the object (coverage 1, its own
    colour). A rim pixel p (the mask's outer pixels and up to :data:`MATTE_PX` beyond) is taken
    as the blend ``a * c + (1 - a) * b`` of object colour c and the background b behind it (the
    frame outside all K objects grown by ``MATTE_PX + 1``, carried inwards by
    :func:`fill_holes`): its coverage ``a`` is the projection of ``p - b`` on ``o - b`` (o the
    mean colour of the object's inner pixels), relative to the lowest projection of an inner
    pixel and clamped to [0, 1], and its premultiplied colour is ``p - (1 - a) * b``. A rim that
    holds no colour further towards the background than the object's inside keeps coverage 1
    (textured hard edges stay exact); an antialiased rim, moved over another background, blends
    with that one instead of bringing the old one along; background a mask took in gets
    coverage about 0. Objects too thin to have inner pixels use their whole mask for o; where
    ``|o - b| < MATTE_MIN_CONTRAST`` the mask is taken as it is.

    Args:
        frames: (B, 3, H, W) the frame the objects were drawn in, in [-1, 1], or
            (B, K, 3, H, W) one per object.
        objects: (B, K, H, W) {0, 1} the objects' masks in them.

    Returns:
        :class:`Layers` (B, K, 3, H, W) and (B, K, 1, H, W), both 0 away from the objects.
    """
    b, k, h, w = objects.shape
    if frames.dim() == 4:
        frames = frames.unsqueeze(1).expand(b, k, 3, h, w)
    source = frames.reshape(b * k, 3, h, w)
    union = objects.amax(dim=1, keepdim=True)
    mask = objects.reshape(b * k, 1, h, w)
    inner, body = _inner_and_body(mask)
    mean = _own_colour(source, body)
    behind = fill_holes(source, (1.0 - dilate(union, MATTE_PX + 1)).repeat_interleave(k, 0))
    contrast = mean - behind
    power = (contrast * contrast).sum(dim=1, keepdim=True)
    along = ((source - behind) * contrast).sum(dim=1, keepdim=True) / power.clamp_min(1e-6)
    # the object's own darkest-towards-the-background pixel counts as full coverage
    lowest = torch.where(body > 0.5, along, torch.inf).amin(dim=(2, 3), keepdim=True)
    alpha = (along / lowest.clamp(0.5, 1.0)).clamp(0.0, 1.0)
    alpha = torch.where(power < MATTE_MIN_CONTRAST**2, mask, alpha)
    # a pixel of the mask that no blend of o with the (maybe shadowed) background explains
    # is a colour of the object's own (a border, a second colour): all object
    rim = ((mask > 0.5) & (inner < 0.5)).nonzero()  # (n, 4): object, 0, y, x
    own = torch.zeros_like(mask, dtype=torch.bool)
    own[rim.unbind(1)] = _blend_residual(
        source[rim[:, 0], :, rim[:, 2], rim[:, 3]], mean[rim[:, 0], :, 0, 0],
        behind[rim[:, 0], :, rim[:, 2], rim[:, 3]]) > MATTE_OWN_COLOUR
    alpha = torch.where((inner > 0.5) | own, 1.0, alpha) * dilate(mask, MATTE_PX)
    premultiplied = torch.where(alpha > 0, source - (1.0 - alpha) * behind, 0.0)
    return Layers(premultiplied.view(b, k, 3, h, w), alpha.view(b, k, 1, h, w))


def fill_hidden(layers: Layers, frames: Tensor, visible: Tensor, hidden: Tensor) -> Layers:
    """Add the hidden parts of objects to their layers, in their own colour.

    Args:
        layers: the objects as :func:`matte` took them from ``frames`` with masks ``visible``.
        frames: (B, 3, H, W) that frame, in [-1, 1].
        visible: (B, K, H, W) {0, 1} the objects' visible masks in it.
        hidden: (B, K, H, W) {0, 1} the parts of each object hidden behind others
            (``lcvg_env.control.infer_occlusion``), disjoint from ``visible``.

    Returns:
        The layers with coverage 1 on the hidden parts, whose colour is the object's inner
        pixels carried into them (:func:`fill_holes`: the nearest colours weigh most).
    """
    b, k, h, w = visible.shape
    source = frames.unsqueeze(1).expand(b, k, 3, h, w).reshape(b * k, 3, h, w)
    mask = visible.reshape(b * k, 1, h, w)
    colour = fill_holes(source, _inner_and_body(mask)[1]).view(b, k, 3, h, w)
    covered = hidden.unsqueeze(2) > 0.5
    return Layers(torch.where(covered, colour, layers.premultiplied),
                  torch.where(covered, 1.0, layers.alpha))


def shading_gain(light: Tensor, theta: Tensor, moved: Tensor) -> Tensor:
    """How much brighter each moved object should be where it lands than where it was taken.

    Args:
        light: (B, 1, H, W) relative illumination of the scene (``LayeredGenerator.
            illumination``).
        theta: (B, K, 2, 3) ``input_from_output`` transforms from the object's place now to
            the place its pixels were taken.
        moved: (B, K, H, W) {0, 1} the objects' masks now.

    Returns:
        (B, K) the mean over each moved mask of ``light(x) / light(theta x)`` (1 for an empty
        mask).
    """
    b, k, h, w = moved.shape
    taken = ctl.warp_masks(light.repeat_interleave(k, dim=0), theta.reshape(b * k, 2, 3),
                           padding_mode="border").view(b, k, h, w)
    ratio = light / taken.clamp_min(1e-6)
    area = moved.sum(dim=(2, 3))
    mean = (ratio * moved).sum(dim=(2, 3)) / area.clamp_min(1.0)
    return torch.where(area > 0, mean, torch.ones_like(mean))


def compose(layers: Layers, theta: Tensor, moved: Tensor, canvas: Tensor, known: Tensor,
            band_px: int, before: Tensor, gain: Tensor | None = None,
            depth: Tensor | None = None, drawn: Tensor | None = None) -> Composite:
    """Move each object's pixels with its transform and lay them over the canvas.

    Args:
        layers: the K objects as :func:`matte` took them from the frame their pixels come from
            (f_t, or with carried tracking the frame each object's template was taken in: its
            pixels are then never resampled twice); larger than the frame by the same margin
            on every side, they hold parts of objects beyond it
            (``lcvg_env.tracking.start_carrying``).
        theta: (B, K, 2, 3) each object's ``input_from_output`` transform from the next frame
            to the frame of its layer.
        moved: (B, K, H, W) {0, 1} the objects' masks after the step (where the controls put
            them); an object's pixels land only inside its moved mask (and its rim, up to
            :data:`MATTE_PX` beyond).
        canvas: (B, 3, H, W) background to show where no object lands, its unknown pixels
            already filled (:func:`fill_canvas`, :func:`fill_holes`).
        known: (B, 1, H, W) {0, 1}: where ``canvas`` holds real content (elsewhere it is a
            fill, and G's correction reaches it where it is uncovered).
        band_px: width of the band around what changed where G's correction applies.
        before: (B, 1, H, W) {0, 1} where the objects stood in f_t.
        gain: optional (B, K) brightness factor of each object's pixels (:func:`shading_gain`).
        depth: optional (B, K) int64 object indices from front to back; None: index order.
        drawn: optional (B, 1, H, W) {0, 1}: canvas pixels already drawn as the step shows
            them (a shadow cast from the moved objects, ``lcvg_env.shadows.Cast``); the band
            leaves those that are known.

    Returns:
        A :class:`Composite`. Each object's rim blends with what it lands on; objects earlier
        in ``depth`` (without it: in K) are drawn over later ones. Holes (pixels of a moved
        mask no object pixel reached, and canvas pixels never known) show the canvas's fill
        for G to refine.
    """
    b, k, h, w = moved.shape
    # bicubic on premultiplied pixels: sub-pixel placement that keeps texture (bilinear
    # blurs it), no background bleeding into the object's colour; a whole-pixel move returns
    # the pixels themselves. Its overshoot is clamped to a valid premultiplied pair.
    flat = torch.cat([layers.premultiplied, layers.alpha], 2).flatten(0, 1)
    warped = ctl.warp_masks(flat, theta.reshape(b * k, 2, 3), mode="bicubic",
                            size=(h, w)).view(b, k, 4, h, w)
    sampled = warped[:, :, 3:].clamp(0.0, 1.0)
    # interpolating between pixels widens an edge's ramp; steepen it back, and scale the
    # premultiplied colour with it
    spread = ctl.subpixel_spread(theta.reshape(b * k, 2, 3), h, w).view(b, k, 1, h, w)
    alpha = (0.5 + (sampled - 0.5) * (1.0 + EDGE_RESHARPEN * spread)).clamp(0.0, 1.0)
    colour = warped[:, :, :3] * (alpha / sampled.clamp_min(1e-6))
    alpha = alpha * dilate(moved, MATTE_PX).unsqueeze(2)
    colour = torch.maximum(torch.minimum(colour, alpha), -alpha)
    if gain is not None:  # intensity (c + 1) / 2 scaled, on premultiplied colour
        colour = gain.to(colour.dtype)[:, :, None, None, None] * (colour + alpha) - alpha
    cover = (alpha > 0.5).any(dim=1).to(canvas.dtype)  # (B, 1, H, W)
    moved_union = moved.amax(dim=1, keepdim=True)
    if depth is not None:  # front first
        colour = colour.gather(1, depth[:, :, None, None, None].expand_as(colour))
        alpha = alpha.gather(1, depth[:, :, None, None, None].expand_as(alpha))
    image = canvas  # the background behind everything
    for j in reversed(range(k)):  # the front object ends on top
        image = colour[:, j] + (1.0 - alpha[:, j]) * image
    hole = torch.maximum((1.0 - cover) * (1.0 - known), moved_union * (1.0 - cover))
    changed = torch.maximum(torch.maximum(moved_union, before), hole)
    band = dilate(changed, band_px) * (1.0 - cover)
    if drawn is not None:
        band = band * (1.0 - drawn * known)
    return Composite(image, band, moved_union)


def predict(g: Predict, layers: Layers, theta: Tensor, moved: Tensor, edited: Tensor,
            canvas: Tensor, known: Tensor, band_px: int, before: Tensor,
            gain: Tensor | None = None, depth: Tensor | None = None,
            drawn: Tensor | None = None) -> tuple[Tensor, Composite]:
    """One composite step: ``composite + band * g(composite, edited)``, not clamped.

    Arguments as for :func:`compose`; ``g`` is G's call (``LayeredGenerator.predict_next``)
    and ``edited`` (B, 1, H, W) the control mask m_c it is given (the moved objects and the
    foreground that is not controlled). Returns the next frames (B, 3, H, W) and the composite.
    """
    comp = compose(layers, theta, moved, canvas, known, band_px, before, gain, depth, drawn)
    correction = g(comp.image, edited)
    return comp.image + comp.band * correction.to(comp.image.dtype), comp


def take_borders(frames: Tensor, masks: Tensor, objects: Tensor) -> Tensor:
    """Objects grown over the border pixels M's mask left out (an outlined sprite's rim).

    M, trained on sprites without borders, leaves out much of a thin border of another colour
    around an object. Each object takes in, one ring at a time up to :data:`BORDER_PX` pixels,
    the pixels next to it that lie off M's mask and that no blend of the object's colour with
    any background pixel near them (within :data:`BORDER_WINDOW` pixels, off M's mask and the
    objects grown by ``BORDER_PX + 1``) explains to within :data:`BORDER_OWN_COLOUR`. The
    background is read pixel by pixel, not smoothed, so a sharp edge of a patterned background
    next to an object is not taken for a border. A pixel with no background near it, or that
    two objects would take, stays as it is.

    A shadow beside an object is no blend of it with the background as it is either, but it is
    one with the background darkened (:data:`MATTE_SHADES`), and so is a dark border's rim. A
    shadow lies on one side of the object, a border rings it: an object with pixels the
    unshaded background does not explain in ``control.RING_SHARE`` of the directions around
    it (``control.rings``) takes every such pixel; any other object only those the shadowed
    background does not explain either.

    Args:
        frames: (B, 3, H, W) the frame, in [-1, 1].
        masks: (B, 1, H, W) {0, 1} M's binarised foreground.
        objects: (B, K, H, W) {0, 1} the objects read from it.

    Returns:
        (B, K, H, W) {0, 1}, each object a superset of its input.
    """
    b, k, h, w = objects.shape
    taken = torch.maximum(masks, objects.amax(dim=1, keepdim=True))  # (B, 1, H, W)
    known = (dilate(taken, BORDER_PX + 1) < 0.5)[:, 0]  # beyond any border: background
    reach = (dilate(objects, BORDER_PX) > 0.5) & (taken < 0.5)
    at = reach.nonzero()  # (n, 4): b, k, y, x of the pixels an object might take
    own = torch.zeros_like(objects, dtype=torch.bool)  # unexplained, shadowed or not
    unlit = torch.zeros_like(own)  # unexplained by the background as it is
    if at.shape[0]:
        _, body = _inner_and_body(objects.reshape(b * k, 1, h, w))
        colour = _own_colour(frames.repeat_interleave(k, 0), body).view(b, k, 3)
        pixels = frames.permute(0, 2, 3, 1)  # (B, H, W, 3)
        span = torch.arange(-BORDER_WINDOW, BORDER_WINDOW + 1, device=frames.device)
        as_is = MATTE_SHADES.index(1.0)
        for part in at.split(4096):  # bounded memory: (pixels, window^2, shades) at a time
            ys = part[:, 2:3] + span.repeat_interleave(span.numel())  # (n, window^2)
            xs = part[:, 3:4] + span.repeat(span.numel())
            inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
            ys, xs = ys.clamp(0, h - 1), xs.clamp(0, w - 1)
            frame_of = part[:, :1].expand_as(ys)
            usable = inside & known[frame_of, ys, xs]
            squared = _squared_residuals(pixels[part[:, 0], part[:, 2], part[:, 3]][:, None],
                                         colour[part[:, 0], part[:, 1]][:, None],
                                         pixels[frame_of, ys, xs], MATTE_SHADES)
            nearest = torch.where(usable[..., None], squared, torch.inf).amin(dim=1)
            where, seen = part.unbind(1), usable.any(dim=1)
            own[where] = (nearest.amin(dim=1) > BORDER_OWN_COLOUR ** 2) & seen
            unlit[where] = (nearest[:, as_is] > BORDER_OWN_COLOUR ** 2) & seen
    others = objects.sum(dim=1, keepdim=True) - objects
    beside = reach & (dilate(others, 1) < 0.5)
    ringed = ctl.rings(objects, unlit & beside, beside)
    own = torch.where(ringed[:, :, None, None], unlit, own)
    grown = objects
    for _ in range(BORDER_PX):
        grown = torch.maximum(grown, dilate(grown, 1) * own)
    contested = (grown.sum(dim=1, keepdim=True) > 1.5) & (objects < 0.5)
    return torch.where(contested, 0.0, grown).to(objects.dtype)
