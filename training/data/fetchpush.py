"""Robot-pushing clips from gymnasium-robotics ``FetchPush-v4``: our stand-in for BAIR.

``lcvg-data make fetchpush --out DIR --clips N --size 64 --frames 30 --seed S`` records clips of
the Fetch arm moving over a table and pushing a block, seen by a fixed camera from the far side
of the table, looking down at 70 degrees (the robot reaches in from the top of the frame, as in
BAIR). Needs the ``[sim]`` extra (``gymnasium-robotics==1.4.2``, ``mujoco==3.3.0``) and a
headless OpenGL: ``MUJOCO_GL=egl`` (the default set here; Debian packages ``libegl1
libegl-mesa0 libgl1-mesa-dri libopengl0``) or ``MUJOCO_GL=osmesa`` (``libosmesa6``).

Scene changes from the stock environment, all for clean ground truth: the goal marker (a site)
and the mocap crosshair (thin, translucent decorative geoms) are hidden; the block is recoloured
red and the gripper (gripper link and fingers) yellow, so that a colour key finds them in
generated frames. The model's one light casts no shadow; shadows are also switched off in the
scene and the shadow map is size 0, so that a shadow pass (with MuJoCo's default 4096 map,
several times slower in software OpenGL) cannot come back.

Frames are rendered with :class:`mujoco.Renderer` directly on the environment's model and data
(not the environment's own viewer), anti-aliased by supersampling (``FetchPushConfig``). A clip
in which the block leaves the table is recorded again. Ground truth per frame
(``training.data.ground_truth``):

- ``object_masks`` (T, 2, H, W): the robot arm (every geom from ``robot0:shoulder_pan_link``
  down; the base, torso and head never move and are background) and the block, from MuJoCo's
  segmentation rendering: the visible pixels at least half covered.
- ``centroids`` (T, 2, 2): pixel (x, y) of the gripper (the ``robot0:grip`` site, between the
  fingertips) and of the block centre, projected through the camera (the average of MuJoCo's
  two stereo eyes, :func:`mujoco.mjv_averageCamera`); NaN when the point is outside the image.
  These are the positions a controller cares about, so unlike the sprites they are NOT the mask
  centroids: the robot's entry is its gripper.
- ``boxes``: inclusive pixel boxes of the visible masks; ``colors``: the median rendered colour
  of the gripper and of the block in the clip (keys for ``locate_objects``);
  ``names`` ``("robot", "block")``.

Beside the frames: ``actions.pkl`` (one float32 (4,) action per frame: the Cartesian gripper
delta in units of 5 cm and the finger command, applied between frame t and t + 1; the last one is
what the policy would do next) and ``metadata.pkl`` (per frame ``gripper_pos`` and
``block_pos``, world coordinates in metres, like BAIR's ``endeffector_pos``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import warnings
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np

from training.data.ground_truth import GroundTruth, mask_boxes_px
from training.data.sim_common import ClipData, record_dataset

__all__ = [
    "FetchPushConfig",
    "Frame",
    "FetchPushRecorder",
    "Recording",
    "import_mujoco",
    "main_make",
    "project_points",
]

OBJECT_NAMES = ("robot", "block")
"""Names of the K = 2 objects of the ground truth, in order."""

_ENV_ID = "FetchPush-v4"
_STEP_METRES = 0.05  # FetchEnv scales the Cartesian part of an action by 5 cm
_TABLE_XY = ((1.12, 1.48), (0.48, 1.02))  # where the gripper wanders (table: 1.05-1.55, 0.4-1.1)
_BLOCK_XY = ((1.17, 1.43), (0.55, 0.95))  # where pushes may leave the block
_TABLE_TOP = 0.4
_PUSH_Z = 0.43  # gripper height when pushing (block centre at 0.425)
_HOVER_Z = (0.46, 0.58)


@dataclass(frozen=True)
class FetchPushConfig:
    """How a clip is rendered and driven. Defaults give BAIR-like 64 x 64 clips of 30 frames."""

    size: int = 64
    """Frame height and width in pixels (rendered at this size, no resampling)."""
    frames: int = 30
    """Frames per clip (BAIR: 30)."""
    lookat: tuple[float, float, float] = (1.25, 0.75, 0.4)
    """World point the camera looks at (metres): on the table top, a little towards the robot,
    so that the table fills the frame from the robot's base to its near edge."""
    azimuth: float = 180.0
    """Camera azimuth in degrees (180: from the far side of the table, facing the robot)."""
    elevation: float = -70.0
    """Camera elevation in degrees (negative: looking down)."""
    distance: float = 0.9
    """Camera distance from ``lookat`` in metres."""
    supersample: int = 0
    """Render at ``size * supersample`` without MSAA and box-average down (anti-aliasing that
    is cheaper than MuJoCo's 4x MSAA in software OpenGL); masks are the pixels at least
    half covered at that resolution. 0 = auto: 2 up to 128 px, else 1 (no anti-aliasing)."""
    block_rgb: tuple[float, float, float] = (0.85, 0.12, 0.1)
    """Block colour (linear RGB in [0, 1]); red, far from every other colour in the scene."""
    gripper_rgb: tuple[float, float, float] = (0.95, 0.8, 0.1)
    """Gripper link and finger colour; yellow."""
    warmup_steps: int = 4
    """Policy steps run before the first recorded frame (so clips start in motion)."""
    push_probability: float = 0.7
    """Chance that the next plan pushes the block (else it wanders over the table)."""
    max_speed: float = 1.0
    """Largest gripper step as a fraction of the environment's 5 cm per step."""
    action_noise: float = 0.05
    """Standard deviation of Gaussian noise added to the Cartesian action."""

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 8:
            raise ValueError(f"size must be an int >= 8, got {self.size!r}")
        if isinstance(self.frames, bool) or not isinstance(self.frames, int) or self.frames < 1:
            raise ValueError(f"frames must be a positive int, got {self.frames!r}")
        if not 0.0 <= self.push_probability <= 1.0:
            raise ValueError(f"push_probability must be in [0, 1], got {self.push_probability}")
        if not 0.0 < self.max_speed <= 1.0:
            raise ValueError(f"max_speed must be in (0, 1], got {self.max_speed}")
        if isinstance(self.supersample, bool) or not isinstance(self.supersample, int) or not (
            0 <= self.supersample <= 4
        ):
            raise ValueError(f"supersample must be an int in [0, 4], got {self.supersample!r}")

    @property
    def supersample_factor(self) -> int:
        """The supersampling factor in use (``supersample``, with 0 resolved)."""
        if self.supersample:
            return self.supersample
        return 2 if self.size <= 128 else 1
        if self.warmup_steps < 0 or self.action_noise < 0:
            raise ValueError(
                f"warmup_steps and action_noise must be >= 0, got {self.warmup_steps}, "
                f"{self.action_noise}"
            )


class Recording(NamedTuple):
    """One recorded clip."""

    frames: np.ndarray
    """uint8 (T, H, W, 3) RGB."""
    ground_truth: GroundTruth
    """Masks, projected positions, boxes, colours, names (see the module docstring)."""
    actions: np.ndarray
    """float32 (T, 4): action applied after frame t."""
    positions: np.ndarray
    """float32 (T, 2, 3): world positions (metres) of the gripper and the block."""


def import_mujoco() -> tuple[Any, Any]:
    """Import ``mujoco`` and ``gymnasium`` with the robotics environments registered.

    Sets ``MUJOCO_GL=egl`` first unless the variable is already set (MuJoCo reads it once, at
    import).

    Returns:
        The modules ``(mujoco, gymnasium)``.

    Raises:
        ModuleNotFoundError: the ``[sim]`` extra is missing (the message says what to install).
        RuntimeError: mujoco was imported earlier without ``MUJOCO_GL`` and there is no display.
    """
    already = "mujoco" in sys.modules
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        import gymnasium
        import mujoco

        # its import prints a notice about the Adroit environments' rewards to stderr
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            import gymnasium_robotics
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "lcvg-data make fetchpush needs the [sim] extra: pip install "
            "'gymnasium-robotics==1.4.2' 'mujoco==3.3.0' (and, headless, the Debian packages "
            f"libegl1 libegl-mesa0 libgl1-mesa-dri libopengl0): {exc}",
            name=exc.name,
        ) from exc
    gymnasium.register_envs(gymnasium_robotics)
    backend = getattr(mujoco.gl_context, "_MUJOCO_GL", None)
    if already and backend in ("", "glfw") and not os.environ.get("DISPLAY"):
        raise RuntimeError(
            "mujoco was imported before MUJOCO_GL was set, so it chose GLFW, which needs a "
            "display; set MUJOCO_GL=egl (or osmesa) in the environment before importing mujoco"
        )
    return mujoco, gymnasium


def project_points(gl_camera: Any, points: np.ndarray, height: int, width: int) -> np.ndarray:
    """Project world points to pixels through an OpenGL camera of MuJoCo's scene.

    Convention: x is the column, y the row, pixel centres at integers (as in
    ``training.data.ground_truth``). The frustum's half-width follows the viewport's aspect
    ratio, as ``mjr_render`` sets it.

    Args:
        gl_camera: a ``mujoco.MjvGLCamera`` (use ``mujoco.mjv_averageCamera`` of
            ``scene.camera[0]`` and ``scene.camera[1]``: either eye alone is offset sideways).
        points: float (N, 3) world positions in metres.
        height: image height H in pixels.
        width: image width W in pixels.

    Returns:
        float32 (N, 2) pixel (x, y); NaN for points behind the camera.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must be (N, 3), got shape {pts.shape}")
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {(height, width)}")
    if gl_camera.orthographic:
        raise ValueError("orthographic cameras are not supported")
    pos = np.asarray(gl_camera.pos, dtype=np.float64)
    forward = np.asarray(gl_camera.forward, dtype=np.float64)
    up = np.asarray(gl_camera.up, dtype=np.float64)
    right = np.cross(forward, up)
    rel = pts - pos  # (N, 3)
    depth = rel @ forward
    near = float(gl_camera.frustum_near)
    bottom, top = float(gl_camera.frustum_bottom), float(gl_camera.frustum_top)
    half_width = 0.5 * width / height * (top - bottom)
    left = float(gl_camera.frustum_center) - half_width
    with np.errstate(divide="ignore", invalid="ignore"):
        xn = (rel @ right) * near / depth  # on the near plane
        yn = (rel @ up) * near / depth
    u = (xn - left) / (2.0 * half_width) * width - 0.5
    v = (top - yn) / (top - bottom) * height - 0.5
    out = np.stack([u, v], axis=-1).astype(np.float32)
    out[depth <= 0] = np.nan
    return out


class _PushPolicy:
    """Scripted Cartesian policy: wander over the table, or go behind the block and push it."""

    def __init__(self, rng: np.random.Generator, config: FetchPushConfig) -> None:
        self.rng = rng
        self.cfg = config
        self.plan: list[tuple[np.ndarray, float]] = []  # (target xyz, speed)
        self.steps_on_target = 0

    def _new_plan(self, block: np.ndarray) -> None:
        (x0, x1), (y0, y1) = _TABLE_XY
        (bx0, bx1), (by0, by1) = _BLOCK_XY
        rng, cfg = self.rng, self.cfg
        if rng.random() < cfg.push_probability:
            # push the block along a random direction; the block ends ~length + 5 cm further
            # (gripper half-width plus block half-width) and slides a little: keep that margin
            for _ in range(20):
                angle = rng.uniform(-np.pi, np.pi)
                d = np.array([np.cos(angle), np.sin(angle), 0.0])
                length = rng.uniform(0.06, 0.16)
                goal = block + d * (length + 0.08)
                if bx0 <= goal[0] <= bx1 and by0 <= goal[1] <= by1:
                    break
            else:  # nowhere to push: push towards the table centre
                d = np.array([1.3, 0.75, block[2]]) - block
                d[2] = 0.0
                d /= max(np.linalg.norm(d), 1e-6)
                length = 0.06
            start = block - d * 0.07
            hover = rng.uniform(*_HOVER_Z)
            speed = cfg.max_speed * rng.uniform(0.6, 1.0)
            self.plan = [
                (np.array([start[0], start[1], hover]), cfg.max_speed),
                (np.array([start[0], start[1], _PUSH_Z]), cfg.max_speed),
                (np.array([*(block + d * length)[:2], _PUSH_Z]), speed),
                (np.array([*(block + d * length)[:2], hover]), cfg.max_speed),
            ]
        else:
            target = np.array([rng.uniform(x0, x1), rng.uniform(y0, y1), rng.uniform(*_HOVER_Z)])
            self.plan = [(target, cfg.max_speed * rng.uniform(0.4, 1.0))]
        self.steps_on_target = 0

    def __call__(self, gripper: np.ndarray, block: np.ndarray) -> np.ndarray:
        """Return the action (4,) float32 in [-1, 1] for the gripper and block positions."""
        if self.plan:
            target, _ = self.plan[0]
            if np.linalg.norm(target - gripper) < 0.012 or self.steps_on_target > 25:
                self.plan.pop(0)
                self.steps_on_target = 0
        if not self.plan:
            self._new_plan(block)
        target, speed = self.plan[0]
        self.steps_on_target += 1
        delta = (target - gripper) / _STEP_METRES
        norm = float(np.linalg.norm(delta))
        if norm > speed:
            delta *= speed / norm
        delta = delta + self.rng.normal(0.0, self.cfg.action_noise, 3)
        action = np.concatenate([np.clip(delta, -1.0, 1.0), [-1.0]])  # fingers closed
        return action.astype(np.float32)


class Frame(NamedTuple):
    """One rendered frame of :class:`FetchPushRecorder` with its per-pixel ground truth."""

    image: np.ndarray
    """uint8 (H, W, 3) RGB."""
    coverage: np.ndarray
    """float32 (3, H, W) in [0, 1]: fraction of each pixel covered by the robot arm, the block
    and the gripper (a part of the arm), from the segmentation rendering."""
    points: np.ndarray
    """float32 (2, 2): projected pixel (x, y) of the gripper and the block; NaN outside."""


def _box_down(image: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor x factor`` blocks: (H*f, W*f, ...) -> float32 (H, W, ...)."""
    if factor == 1:
        return image.astype(np.float32)
    h, w = image.shape[0] // factor, image.shape[1] // factor
    blocks = image.reshape(h, factor, w, factor, *image.shape[2:]).astype(np.float32)
    return blocks.mean(axis=(1, 3))


class FetchPushRecorder:
    """Drives ``FetchPush-v4`` with the scripted policy and renders clips with ground truth.

    Holds one environment and one offscreen renderer; call :meth:`close` (or use ``with``) to
    free the OpenGL context deterministically (a context freed late by the garbage collector is
    a known cause of all-black frames in a later renderer).

    The robot object is the ARM: every geom in the subtree of ``robot0:shoulder_pan_link``. The
    base, torso and head never move in this task, so they are background (a video model cannot
    tell them from the table).

    Args:
        config: rendering and policy settings.
    """

    def __init__(self, config: FetchPushConfig | None = None) -> None:
        self.config = config = config or FetchPushConfig()
        mujoco, gym = import_mujoco()
        self._mj = mujoco
        self._env = gym.make(_ENV_ID)
        self.renderer = None
        env = self._env.unwrapped
        self._u = env
        m = self.model = env.model
        self.data = env.data

        def body(name: str) -> int:
            idx = int(mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, name))
            if idx < 0:
                raise RuntimeError(f"the {_ENV_ID} model has no body {name!r}")
            return idx

        arm_root = body("robot0:shoulder_pan_link")
        mocap = body("robot0:mocap")
        gripper_bodies = [
            body(n)
            for n in (
                "robot0:gripper_link",
                "robot0:r_gripper_finger_link",
                "robot0:l_gripper_finger_link",
            )
        ]
        self._block_body = block_body = body("object0")
        parent = np.asarray(m.body_parentid)
        in_arm = np.zeros(m.nbody, bool)
        for b in range(m.nbody):  # parents precede children in MuJoCo's body order
            in_arm[b] = b == arm_root or (b > 0 and in_arm[parent[b]])
        geom_body = np.asarray(m.geom_bodyid)
        self.robot_geoms = np.nonzero(in_arm[geom_body])[0]
        self.gripper_geoms = np.nonzero(np.isin(geom_body, gripper_bodies))[0]
        self.block_geoms = np.nonzero(geom_body == block_body)[0]
        # hide the mocap crosshair (thin translucent decorative geoms): group 5 is not drawn
        m.geom_group[geom_body == mocap] = 5
        for geoms, rgb in (
            (self.block_geoms, config.block_rgb),
            (self.gripper_geoms, config.gripper_rgb),
        ):
            m.geom_matid[geoms] = -1
            m.geom_rgba[geoms] = [*rgb, 1.0]
        m.light_castshadow[:] = 0
        m.vis.quality.shadowsize = 0
        m.vis.quality.offsamples = 0  # anti-aliasing by supersampling instead
        full = config.size * config.supersample_factor
        m.vis.global_.offwidth = max(int(m.vis.global_.offwidth), full)
        m.vis.global_.offheight = max(int(m.vis.global_.offheight), full)
        self._grip_site = int(mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, "robot0:grip"))
        if self._grip_site < 0:
            raise RuntimeError(f"the {_ENV_ID} model has no site 'robot0:grip'")

        self.camera = mujoco.MjvCamera()
        self.camera.type = mujoco.mjtCamera.mjCAMERA_FREE
        self.camera.lookat[:] = config.lookat
        self.camera.azimuth = config.azimuth
        self.camera.elevation = config.elevation
        self.camera.distance = config.distance
        self.option = mujoco.MjvOption()
        self.option.sitegroup[:] = 0  # no goal marker, no grip site
        self.renderer = mujoco.Renderer(m, full, full)
        self.renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False

    def __enter__(self) -> FetchPushRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Free the renderer's OpenGL context and the environment."""
        renderer = getattr(self, "renderer", None)
        if renderer is not None:
            renderer.close()
            self.renderer = None
        env = getattr(self, "_env", None)
        if env is not None:
            env.close()
            self._env = None

    def positions(self) -> np.ndarray:
        """float64 (2, 3): world positions (metres) of the gripper site and the block centre."""
        return np.stack([self.data.site_xpos[self._grip_site], self.data.xpos[self._block_body]])

    def render(self) -> Frame:
        """Render the current state: image, coverage masks and projected points."""
        if self.renderer is None:
            raise RuntimeError("render called after close()")
        mj, r = self._mj, self.renderer
        size, ss = self.config.size, self.config.supersample_factor
        r.update_scene(self.data, self.camera, self.option)
        image = r.render()  # (size*ss, size*ss, 3)
        r.enable_segmentation_rendering()
        try:
            seg = r.render()  # (size*ss, size*ss, 2): object id, object type
        finally:
            r.disable_segmentation_rendering()
        geom_id = np.where(seg[..., 1] == int(mj.mjtObj.mjOBJ_GEOM), seg[..., 0], -1)
        parts = np.stack(
            [np.isin(geom_id, g) for g in (self.robot_geoms, self.block_geoms, self.gripper_geoms)],
            axis=-1,
        )  # (size*ss, size*ss, 3)
        coverage = _box_down(parts, ss).transpose(2, 0, 1)  # (3, size, size)
        image = np.round(_box_down(image, ss)).astype(np.uint8)
        # the scene holds the two stereo eyes even in mono rendering; their average is the
        # camera mjr_render uses (either eye alone puts points ~3 cm off)
        eye = mj.mjv_averageCamera(r.scene.camera[0], r.scene.camera[1])
        points = project_points(eye, self.positions(), size, size)
        points[~((points >= -0.5) & (points <= size - 0.5)).all(-1)] = np.nan
        return Frame(image, coverage.astype(np.float32), points)

    def record(self, seed: int | tuple[int, ...]) -> Recording:
        """Record one clip of ``config.frames`` frames; everything random comes from ``seed``.

        A clip in which the block leaves the table is played again from a new reset (at most
        5 times; the last try is kept whatever happens).

        Raises:
            RuntimeError: the renderer produced an all-black frame (broken OpenGL context).
        """
        rng = np.random.default_rng(seed)
        for _ in range(5):
            clip = self._record_once(rng)
            if clip.positions[:, 1, 2].min() > _TABLE_TOP:
                break
        return clip

    def _record_once(self, rng: np.random.Generator) -> Recording:
        cfg = self.config
        self._u.reset(seed=int(rng.integers(2**31)))
        policy = _PushPolicy(rng, cfg)
        for _ in range(cfg.warmup_steps):
            pos = self.positions()
            self._u.step(policy(pos[0], pos[1]))
        t_len, size = cfg.frames, cfg.size
        frames = np.empty((t_len, size, size, 3), np.uint8)
        masks = np.zeros((t_len, 2, size, size), np.uint8)
        centroids = np.empty((t_len, 2, 2), np.float32)
        actions = np.empty((t_len, 4), np.float32)
        positions = np.empty((t_len, 2, 3), np.float32)
        solid = np.zeros((t_len, 2, size, size), bool)  # fully covered gripper / block pixels
        for t in range(t_len):
            frame = self.render()
            if t == 0 and int(frame.image.max()) < 16:
                raise RuntimeError(
                    "MuJoCo rendered an all-black frame: the OpenGL context is broken (an old "
                    "renderer freed by the garbage collector, or a wrong MUJOCO_GL="
                    f"{os.environ.get('MUJOCO_GL')!r}; try egl or osmesa)"
                )
            frames[t] = frame.image
            cover = frame.coverage[:2]  # (2, H, W) robot, block
            masks[t] = cover >= 0.5
            masks[t, 1] &= cover[1] > cover[0]  # a half-and-half pixel goes to the robot
            solid[t] = frame.coverage[[2, 1]] >= 1.0
            centroids[t] = frame.points
            pos = self.positions()
            positions[t] = pos
            actions[t] = policy(pos[0], pos[1])
            if t + 1 < t_len:
                self._u.step(actions[t])
        colors = self._key_colors(frames, solid[:, 0], solid[:, 1])
        gt = GroundTruth(
            object_masks=masks,
            foreground=masks.max(axis=1),
            centroids=centroids,
            boxes=mask_boxes_px(masks),
            colors=colors,
            names=OBJECT_NAMES,
        )
        return Recording(frames, gt, actions, positions)

    def _key_colors(
        self, frames: np.ndarray, gripper: np.ndarray, block: np.ndarray
    ) -> np.ndarray:
        """uint8 (2, 3): median rendered colour of the gripper and of the block.

        Args:
            frames: uint8 (T, H, W, 3).
            gripper: bool (T, H, W) visible gripper pixels.
            block: bool (T, H, W) visible block pixels.
        """
        keys = np.empty((2, 3), np.uint8)
        for k, (sel, rgb) in enumerate(
            ((gripper, self.config.gripper_rgb), (block, self.config.block_rgb))
        ):
            pixels = frames[sel.astype(bool)]  # (N, 3)
            if len(pixels):
                keys[k] = np.median(pixels, axis=0).round()
            else:  # never visible in this clip: the nominal colour
                keys[k] = np.round(np.asarray(rgb) * 255)
        return keys


def main_make(args: argparse.Namespace) -> int:
    """``lcvg-data make fetchpush``: write ``args.clips`` clips under ``args.out``.

    Prints a JSON summary line (clips per split, frames, seconds, frames/s).

    Args:
        args: Namespace with ``out`` (folder, created, must be empty), ``clips`` (int),
            ``size`` (int, square frames), ``frames`` (per clip), ``seed`` (int).

    Returns:
        0 on success (the CLI's exit status).
    """
    for name in ("out", "clips", "size", "frames", "seed"):
        if not hasattr(args, name):
            raise TypeError(f"args must have '{name}', got {sorted(vars(args))}")
    config = FetchPushConfig(size=int(args.size), frames=int(args.frames))
    with FetchPushRecorder(config) as rec:

        def record(seed: tuple[int, int]) -> ClipData:
            clip = rec.record(seed)
            metadata = [
                {"gripper_pos": p[0].tolist(), "block_pos": p[1].tolist()}
                for p in clip.positions
            ]
            return clip.frames, clip.ground_truth, {
                "actions": list(clip.actions),
                "metadata": metadata,
            }

        summary = record_dataset(
            args.out, args.clips, int(args.seed), record, "fetchpush",
            {"env": _ENV_ID, "config": asdict(config), "objects": list(OBJECT_NAMES)},
        )
    print(json.dumps(summary))
    return 0
