"""Mask control: warp, split, measure and fit the foreground masks that drive the generator.

Convention (the only one in this package; every function follows it)
--------------------------------------------------------------------
- **Normalised coordinates.** A point is ``(x, y)`` with ``x`` to the right and ``y`` down, both
  in ``[-1, 1]`` across the frame, with ``align_corners=False``: ``-1`` and ``1`` are the outer
  *edges* of the border pixels, so the centre of pixel column ``j`` of a ``W``-wide frame is at
  ``x = (2 j + 1) / W - 1`` (the same for rows with ``H``).
- **Pixel coordinates.** ``(x, y)`` in pixels with the centre of pixel ``(row i, column j)`` at
  ``(j, i)``; :func:`pixel_to_normalized` and :func:`normalized_to_pixel` convert.
- **Matrices.** A ``theta`` of shape ``(B, 2, 3)`` maps OUTPUT coordinates to INPUT coordinates
  (``input_from_output``, the :func:`torch.nn.functional.affine_grid` convention): the output
  pixel at ``p`` samples the input at ``theta @ [p; 1]``. Hence
  ``warp_masks(m_t, theta) ~= m_{t+1}`` when ``theta`` is the control from frame ``t`` to
  ``t + 1``. The inverse, ``output_from_input``, is the forward motion of the object; convert
  between the two with :func:`invert_affine`.
- **Parameters.** User-facing parameters (:data:`PARAM_NAMES`) describe the FORWARD motion of
  the object: ``dx > 0`` moves it right by ``dx`` normalised units (``dx * W / 2`` pixels),
  ``rotation`` in radians (positive turns x towards y, i.e. clockwise on screen because y points
  down), ``log_scale_x`` / ``log_scale_y`` are natural logs of the scale factors and ``shear``
  is the horizontal shear factor ``k`` of ``[[1, k], [0, 1]]``. The linear part is
  ``R(rotation) @ [[1, shear], [0, 1]] @ diag(exp(log_scale_x), exp(log_scale_y))`` (scale
  first, then shear, then rotate) and acts about a pivot ``center`` (normalised, default the
  frame centre ``(0, 0)``); translation comes last.
- **Pixel-isotropic frame.** Normalised x and y units have different pixel lengths on a
  non-square frame (``W / 2`` and ``H / 2`` pixels). Rotation, shear and the similarity fit are
  therefore done in pixel units, ``u = x * W / 2``, ``v = y * H / 2``, so that a rotation looks
  like a rotation on a 96x256 frame. Functions that need it take ``size=(H, W)``; with
  ``size=None`` the normalised frame itself is treated as isotropic (right for square frames).

Shapes: ``B`` batch, ``C`` channels, ``K`` objects, ``H``, ``W`` frame height and width.

Inputs are checked: shapes and dtypes always, values (NaN/inf, negative mask weights) unless
the call runs inside :func:`trusted_values`, for callers that pass tensors they made
themselves (the simulator's state): each value scan is a pass over the tensor and, on a GPU, a
device synchronisation. The same switch governs the generator's input checks
(``lcvg_env.models.LayeredGenerator``).

Every public name is importable from here (``lcvg_env.control.X``); the modules hold:

- ``checks``: input validation and the value-check switch (:func:`trusted_values`);
- ``geometry``: coordinate conversions, affine matrices, parameters <-> matrices;
- ``warp``: warping, binarising and editing masks;
- ``components``: connected components and per-object measurements;
- ``fit``: fitting the transform that moves one mask onto another (:func:`fit_control`);
- ``separation``: objects of a mask with touching objects cut apart by colour
  (:func:`separate_objects`);
- ``occlusion``: which touching objects hide which, and the hidden parts of convex objects
  behind others (:func:`infer_occlusion`) or beyond the frame's edge (:func:`beyond_frame`).
"""

from lcvg_env.control.checks import trusted_values, values_checked
from lcvg_env.control.components import (
    RING_SECTORS,
    RING_SHARE,
    connected_components,
    mask_areas,
    mask_boxes,
    mask_centroids,
    object_masks,
    rings,
)
from lcvg_env.control.fit import FIT_MODES, ControlFit, fit_control
from lcvg_env.control.geometry import (
    PARAM_NAMES,
    compose_affine,
    identity_matrix,
    invert_affine,
    matrix_to_params,
    normalized_to_pixel,
    params_to_matrix,
    pixel_to_normalized,
)
from lcvg_env.control.occlusion import Occlusion, beyond_frame, convex_hulls, infer_occlusion
from lcvg_env.control.separation import ColourSplit, separate_objects
from lcvg_env.control.warp import (
    binarize,
    carry_masks,
    nonparametric_edit,
    subpixel_spread,
    union_masks,
    warp_binary,
    warp_masks,
    warp_nearest,
    warp_objects,
)

__all__ = [
    "FIT_MODES",
    "PARAM_NAMES",
    "RING_SECTORS",
    "RING_SHARE",
    "ColourSplit",
    "ControlFit",
    "Occlusion",
    "binarize",
    "carry_masks",
    "compose_affine",
    "connected_components",
    "beyond_frame",
    "convex_hulls",
    "fit_control",
    "identity_matrix",
    "infer_occlusion",
    "invert_affine",
    "mask_areas",
    "mask_boxes",
    "mask_centroids",
    "matrix_to_params",
    "nonparametric_edit",
    "normalized_to_pixel",
    "object_masks",
    "params_to_matrix",
    "pixel_to_normalized",
    "rings",
    "separate_objects",
    "subpixel_spread",
    "trusted_values",
    "union_masks",
    "values_checked",
    "warp_binary",
    "warp_masks",
    "warp_nearest",
    "warp_objects",
]
