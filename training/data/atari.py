"""Atari clips (Breakout, Tennis, Pong) recorded with ale-py, with colour-key ground truth.

``lcvg-data make atari --game breakout|tennis|pong --out DIR --clips N --size 64 --frames 30
--seed S`` plays the game with a scripted policy (it fires / serves and moves the player towards
the ball, with random moves mixed in, so things move), crops the score bar away (the score is a
change the layered model would otherwise have to put in its foreground) and resizes the play area
to ``size x size`` by area averaging. Needs the ``[sim]`` extra (``ale-py``; the ROMs ship inside
it); no OpenGL.

Ground truth (``training.data.ground_truth``) comes from the emulator's palette: every object
that moves has a colour that, inside a known region of the play area, nothing else has. Object 0
is always the agent's, object 1 the ball.

=========  ============================  ==============================================
game       objects                       key colours and caveats
=========  ============================  ==============================================
breakout   paddle, ball                  both (200, 72, 72); the top brick row shares
                                         it, so the ball is keyed only above and below
                                         the bricks (NaN while inside the brick band)
pong       player, ball, opponent        green paddle (92, 186, 92) on the right, ball
                                         (236, 236, 236), orange paddle (213, 130, 74)
tennis     player, ball, opponent        the agent is the orange player
                                         (240, 128, 128), the opponent blue
                                         (117, 128, 240); the court's side lines share
                                         the colour of the half they bound and are cut
                                         out with a line template taken at reset; ball
                                         (236, 236, 236), its shadow is not keyed
=========  ============================  ==============================================

Masks are found at the native 210 x 160 resolution, then area-resized like the frames: a pixel
belongs to an object when at least half of it is covered; an object that is visible natively but
would cover no output pixel (the ball at 64 x 64) keeps its most covered pixel. Centroids are
the native mask centroids mapped to the output (more precise than the centroids of the small
resized masks); boxes are those of the resized masks; ``colors`` are the palette colours.

Because a key colour is unique only inside its region (Breakout's paddle shares its colour with
the top brick row), :func:`locate_atari_objects` is the colour-key locator to use on generated
Atari frames: ``training.data.ground_truth.locate_objects`` searches the whole frame. At 64 x 64
the ball is blended into a single pixel and is usually not found by colour in either.

Beside the frames: ``actions.pkl`` (int, the ALE action after frame t), ``rewards.pkl`` and
``dones.pkl`` (one per frame).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
from PIL import Image

from lcvg_env.configs import check_choices
from training.data.ground_truth import GroundTruth, mask_boxes_px, mask_centroids_px
from training.data.sim_common import ClipData, record_dataset, resize_point

__all__ = [
    "GAMES",
    "AtariConfig",
    "AtariRecorder",
    "AtariRecording",
    "GameSpec",
    "locate_atari_objects",
    "main_make",
]

_NATIVE = (210, 160)  # ALE screen (H, W)


class GameSpec(NamedTuple):
    """Where things are in one game's native 210 x 160 screen."""

    env_id: str
    """Gymnasium id."""
    crop: tuple[int, int]
    """Rows [r0, r1) kept (the score bar is cut away); all 160 columns are kept."""
    names: tuple[str, ...]
    """Object names, K of them."""
    colors: tuple[tuple[int, int, int], ...]
    """Palette key colour of each object."""
    regions: tuple[tuple[tuple[int, int, int, int], ...], ...]
    """Per object, native (r0, r1, c0, c1) boxes (half-open) where its key colour means it."""
    locatable: tuple[bool, ...]
    """Per object, whether :func:`locate_atari_objects` can find it by colour (in real frames a
    key is exact; generated frames need a tolerance, and within it some keys meet other
    colours)."""


Game = Literal["breakout", "pong", "tennis"]
"""The supported games: the keys of ``GAMES``."""
GAMES: dict[str, GameSpec] = {
    "breakout": GameSpec(
        env_id="ALE/Breakout-v5",
        crop=(16, 196),
        names=("paddle", "ball"),
        colors=((200, 72, 72), (200, 72, 72)),
        regions=(
            ((189, 193, 8, 152),),  # the paddle's rows, between the walls
            # above and below the bricks (orange bricks are within 39 of the key colour)
            ((32, 57, 8, 152), (93, 189, 8, 152)),
        ),
        locatable=(True, True),
    ),
    "pong": GameSpec(
        env_id="ALE/Pong-v5",
        crop=(34, 194),
        names=("player", "ball", "opponent"),
        colors=((92, 186, 92), (236, 236, 236), (213, 130, 74)),
        regions=(((34, 194, 0, 160),),) * 3,
        locatable=(True, True, True),
    ),
    "tennis": GameSpec(
        env_id="ALE/Tennis-v5",
        crop=(14, 190),
        names=("player", "ball", "opponent"),
        colors=((240, 128, 128), (236, 236, 236), (117, 128, 240)),
        regions=(((14, 190, 0, 160),),) * 3,
        locatable=(True, False, True),  # the ball's white is within 38 of the court lines'
    ),
}
"""The supported games (``--game``)."""


@dataclass(frozen=True)
class AtariConfig:
    """How an Atari clip is played and stored."""

    game: Game = "breakout"
    """One of ``GAMES``: breakout, pong or tennis."""
    size: int = 64
    """Output frame height and width in pixels."""
    frames: int = 30
    """Frames per clip."""
    frameskip: int = 2
    """Emulator frames per recorded frame (ALE's default is 4; 2 gives smoother motion)."""
    warmup: tuple[int, int] = (20, 300)
    """Range [lo, hi) of policy steps played before the first recorded frame."""
    track_probability: float = 0.75
    """Chance per decision that the policy moves towards the ball (else a random action)."""
    hold: tuple[int, int] = (1, 5)
    """Range [lo, hi) of steps an action is held."""

    def __post_init__(self) -> None:
        check_choices(self)
        for name in ("size", "frames", "frameskip"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.size < 8:
            raise ValueError(f"size must be >= 8, got {self.size}")
        if not 0 <= self.warmup[0] < self.warmup[1] or not 1 <= self.hold[0] < self.hold[1]:
            raise ValueError(
                f"warmup and hold must be ranges [lo, hi), got {self.warmup}, {self.hold}"
            )
        if not 0.0 <= self.track_probability <= 1.0:
            raise ValueError(f"track_probability must be in [0, 1], got {self.track_probability}")


class AtariRecording(NamedTuple):
    """One recorded clip."""

    frames: np.ndarray
    """uint8 (T, size, size, 3) RGB."""
    ground_truth: GroundTruth
    """Masks, centroids, boxes, palette colours and names."""
    actions: np.ndarray
    """int64 (T,): ALE action taken after frame t."""
    rewards: np.ndarray
    """float32 (T,): reward received for that action."""


def import_ale() -> Any:
    """Import ``gymnasium`` with the ALE environments registered.

    Raises:
        ModuleNotFoundError: ``ale-py`` (the ``[sim]`` extra) is missing.
    """
    try:
        import ale_py
        import gymnasium
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"lcvg-data make atari needs the [sim] extra: pip install ale-py ({exc})",
            name=exc.name,
        ) from exc
    gymnasium.register_envs(ale_py)
    return gymnasium


def _pack(rgb: np.ndarray) -> np.ndarray:
    """uint8 (..., 3) RGB -> int32 (...) as 0xRRGGBB (one comparison per pixel per key)."""
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _region_mask(spec_regions: tuple[tuple[int, int, int, int], ...]) -> np.ndarray:
    mask = np.zeros(_NATIVE, bool)
    for r0, r1, c0, c1 in spec_regions:
        mask[r0:r1, c0:c1] = True
    return mask


def _tennis_line_template(screen: np.ndarray) -> np.ndarray:
    """Return the court's side lines, bool (210, 160), from a screen at reset.

    The side lines have the colour of the player whose half they bound (the colours swap when the
    players change ends, the lines do not move). At reset both players stand near the centre
    columns, so every player-coloured pixel of the court rows away from the centre is a line.
    """
    spec = GAMES["tennis"]
    colours = np.zeros(_NATIVE, bool)
    for c in ((240, 128, 128), (117, 128, 240)):
        colours |= (screen == np.array(c, np.uint8)).all(-1)
    template = np.zeros(_NATIVE, bool)
    template[47:190, :55] = colours[47:190, :55]
    template[47:190, 105:] = colours[47:190, 105:]
    if template.sum() < 200:  # two lines of ~130 rows each
        raise RuntimeError(
            f"{spec.env_id}: the court-line template has {int(template.sum())} pixels, expected "
            "~270; the screen layout differs from the one this recorder was written for"
        )
    return template


class AtariRecorder:
    """Plays one game with the scripted policy and records clips with ground truth.

    Args:
        config: game, sizes and policy settings.
    """

    def __init__(self, config: AtariConfig | None = None) -> None:
        self.config = config = config or AtariConfig()
        gym = import_ale()
        self.spec = spec = GAMES[config.game]
        self.env = gym.make(
            spec.env_id,
            frameskip=config.frameskip,
            repeat_action_probability=0.0,
            full_action_space=False,
        )
        self.action_meanings: list[str] = list(self.env.unwrapped.get_action_meanings())
        self._regions = [_region_mask(r) for r in spec.regions]
        self._keys = np.array(spec.colors, np.uint8)  # (K, 3)
        self._packed_keys = _pack(self._keys[None])[0]  # (K,)
        # every clip starts from this state (re-seeding the ALE reloads the ROM, which is
        # slow); the clips differ by the policy's random warm-up, and with sticky actions off
        # the emulator is deterministic, so a clip depends on its seed only
        screen, _ = self.env.reset(seed=0)
        self._start = self.env.unwrapped.clone_state(include_rng=True)
        self._start_screen = screen
        self._exclude: np.ndarray | None = None
        if config.game == "tennis":
            self._exclude = _tennis_line_template(screen)
            for k in (0, 2):  # the players, not the ball
                self._regions[k] = self._regions[k] & ~self._exclude

    def __enter__(self) -> AtariRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the emulator."""
        self.env.close()

    def native_masks(self, screen: np.ndarray) -> np.ndarray:
        """Colour-key masks of a native screen.

        Args:
            screen: uint8 (210, 160, 3) ALE RGB screen.

        Returns:
            bool (K, 210, 160): the pixels of each object.
        """
        if screen.shape != (*_NATIVE, 3):
            raise ValueError(f"screen must be (210, 160, 3), got shape {screen.shape}")
        packed = _pack(screen)  # (210, 160)
        out = np.empty((len(self._keys), *_NATIVE), bool)
        for k, key in enumerate(self._packed_keys):
            np.logical_and(packed == key, self._regions[k], out=out[k])
        return out

    def _coverage(self, mask: np.ndarray) -> np.ndarray:
        """Crop rows and area-resize a native mask: bool (210, 160) -> float32 (S, S) in [0, 1]."""
        r0, r1 = self.spec.crop
        s = self.config.size
        pil = Image.fromarray(np.ascontiguousarray(mask[r0:r1], dtype=np.float32))
        return np.asarray(pil.resize((s, s), Image.Resampling.BOX), np.float32)

    def _frame_and_truth(
        self, screen: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Crop and resize one screen and key its objects.

        Returns:
            frame uint8 (S, S, 3), masks uint8 (K, S, S), centroids float32 (K, 2) in output
            pixels, native centroids float32 (K, 2).
        """
        native = self.native_masks(screen)
        r0, r1 = self.spec.crop
        s = self.config.size
        frame = Image.fromarray(screen[r0:r1]).resize((s, s), Image.Resampling.BOX)
        masks = np.zeros((len(native), s, s), np.uint8)
        for k, m in enumerate(native):
            if not m[r0:r1].any():
                continue
            cover = self._coverage(m)
            masks[k] = cover >= 0.5
            if not masks[k].any():  # tiny object: keep its most covered pixel
                masks[k].flat[int(np.argmax(cover))] = 1
        native_c = mask_centroids_px(native)  # (K, 2) native pixels, NaN if absent
        cropped = native_c - np.array([0.0, r0], np.float32)
        centroids = resize_point(cropped, (r1 - r0, _NATIVE[1]), (s, s))
        outside = ~np.isnan(native_c[:, 1]) & (
            (native_c[:, 1] < r0 - 0.5) | (native_c[:, 1] > r1 - 0.5)
        )
        centroids[outside] = np.nan
        return np.asarray(frame, np.uint8), masks, centroids, native_c

    def _policy(self, rng: np.random.Generator) -> Callable[[np.ndarray], int]:
        """Make the scripted policy: native centroids (K, 2), player then ball -> action."""
        cfg, names = self.config, self.action_meanings
        index = {n: i for i, n in enumerate(names)}
        state = {"action": 0, "left": 0}
        game = cfg.game
        aim = {"offset": 0.0}

        def move_towards(player: np.ndarray, ball: np.ndarray) -> int:
            if game == "breakout":
                dx = ball[0] + aim["offset"] - player[0]
                return index["RIGHT"] if dx > 2 else index["LEFT"] if dx < -2 else index["NOOP"]
            if game == "pong":  # RIGHT moves the paddle up, LEFT down
                dy = ball[1] + aim["offset"] - player[1]
                return index["LEFT"] if dy > 2 else index["RIGHT"] if dy < -2 else index["NOOP"]
            dx, dy = ball + aim["offset"] - player
            name = ("UP" if dy < -3 else "DOWN" if dy > 3 else "") + (
                "RIGHT" if dx > 3 else "LEFT" if dx < -3 else ""
            )
            if abs(dx) < 12 and abs(dy) < 12 or not name:
                name = name + "FIRE" if name else "FIRE"
            return index[name]

        def act(centroids: np.ndarray) -> int:
            player, ball = centroids[0], centroids[1]
            if state["left"] > 0:
                state["left"] -= 1
                return state["action"]
            state["left"] = int(rng.integers(*cfg.hold)) - 1
            if rng.random() < 0.05:
                aim["offset"] = float(rng.normal(0.0, 6.0))
            if np.isnan(ball).any() and rng.random() < 0.5 and "FIRE" in index:
                a = index["FIRE"]  # launch / serve
            elif not np.isnan(ball).any() and not np.isnan(player).any() and (
                rng.random() < cfg.track_probability
            ):
                a = move_towards(player, ball)
            else:
                a = int(rng.integers(len(names)))
            state["action"] = a
            return a

        return act

    def record(self, seed: int | tuple[int, ...]) -> AtariRecording:
        """Record one clip; everything random comes from ``seed``.

        A clip never spans an episode end: when the game ends during the clip, it is played again
        from a fresh reset (at most 10 times).
        """
        cfg = self.config
        rng = np.random.default_rng(seed)
        s, k = cfg.size, len(self.spec.names)
        for _attempt in range(10):
            self.env.unwrapped.restore_state(self._start)
            screen = self._start_screen
            policy = self._policy(rng)
            native_c = mask_centroids_px(self.native_masks(screen))
            ended = False
            for _ in range(int(rng.integers(*cfg.warmup))):
                screen, _, term, trunc, _ = self.env.step(policy(native_c))
                native_c = mask_centroids_px(self.native_masks(screen))
                if term or trunc:
                    ended = True
                    break
            if ended:
                continue
            frames = np.empty((cfg.frames, s, s, 3), np.uint8)
            masks = np.empty((cfg.frames, k, s, s), np.uint8)
            centroids = np.empty((cfg.frames, k, 2), np.float32)
            actions = np.zeros(cfg.frames, np.int64)
            rewards = np.zeros(cfg.frames, np.float32)
            for t in range(cfg.frames):
                frames[t], masks[t], centroids[t], native_c = self._frame_and_truth(screen)
                actions[t] = policy(native_c)
                if t + 1 < cfg.frames:
                    screen, reward, term, trunc, _ = self.env.step(int(actions[t]))
                    rewards[t] = reward
                    if term or trunc:
                        ended = True
                        break
            if ended:
                continue
            gt = GroundTruth(
                object_masks=masks,
                foreground=masks.max(axis=1),
                centroids=centroids,
                boxes=mask_boxes_px(masks),
                colors=self._keys.copy(),
                names=self.spec.names,
            )
            return AtariRecording(frames, gt, actions, rewards)
        raise RuntimeError(f"{self.spec.env_id}: every episode ended within the clip (10 tries)")


def locate_atari_objects(
    frames: np.ndarray,
    game: str,
    max_distance: float = 60.0,
    min_pixels: int = 1,
) -> np.ndarray:
    """Find each object of ``game`` in (generated) frames by its key colour, inside its region.

    Like ``training.data.ground_truth.locate_objects`` (nearest key colour within
    ``max_distance``), but a pixel can only belong to object k inside k's region of the play area
    (mapped to the frame size), which separates Breakout's paddle from the red bricks and from
    the ball. Tennis's court-line template is not applied (it needs the emulator's screen), and
    objects whose ``GameSpec.locatable`` is False (Tennis's ball) are always NaN.

    Args:
        frames: uint8 (T, H, W, 3) RGB frames of the recorder's layout (cropped play area).
        game: one of ``GAMES``.
        max_distance: RGB distance threshold (0..255 scale).
        min_pixels: fewer matching pixels than this means "not found".

    Returns:
        float32 (T, K, 2) pixel (x, y) centroids; NaN when not found.
    """
    if game not in GAMES:
        raise ValueError(f"game must be one of {sorted(GAMES)}, got {game!r}")
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(
            f"frames must be uint8 (T,H,W,3), got {frames.dtype} with shape {frames.shape}"
        )
    spec = GAMES[game]
    t, h, w, _ = frames.shape
    r0, r1 = spec.crop
    keys = np.array(spec.colors, np.float32)  # (K, 3)
    k = len(keys)
    d2 = ((frames[:, :, :, None, :].astype(np.float32) - keys) ** 2).sum(-1)  # (T, H, W, K)
    allowed = np.empty((k, h, w), bool)
    for j, regions in enumerate(spec.regions):
        native = _region_mask(regions)[r0:r1].astype(np.float32)
        allowed[j] = np.asarray(
            Image.fromarray(native).resize((w, h), Image.Resampling.BOX), np.float32
        ) > 0.0
    d2 = np.where(allowed.transpose(1, 2, 0)[None], d2, np.inf)
    nearest = d2.argmin(-1)  # (T, H, W)
    ok = np.take_along_axis(d2, nearest[..., None], -1)[..., 0] <= max_distance**2
    out = np.full((t, k, 2), np.nan, np.float32)
    for j in range(k):
        sel = ok & (nearest == j)  # (T, H, W)
        n = sel.sum(axis=(1, 2))
        cen = mask_centroids_px(sel)  # (T, 2), NaN where empty
        found = (n >= max(1, min_pixels)) & spec.locatable[j]
        out[:, j] = np.where(found[:, None], cen, np.nan)
    return out


def main_make(args: argparse.Namespace) -> int:
    """``lcvg-data make atari``: write ``args.clips`` clips of ``args.game`` under ``args.out``.

    Prints a JSON summary line (clips per split, frames, seconds, frames/s).

    Args:
        args: Namespace with ``game`` (breakout, tennis or pong), ``out`` (created, must be
            empty), ``clips``, ``size``, ``frames`` and ``seed``.

    Returns:
        0 on success (the CLI's exit status).
    """
    for name in ("game", "out", "clips", "size", "frames", "seed"):
        if not hasattr(args, name):
            raise TypeError(f"args must have '{name}', got {sorted(vars(args))}")
    config = AtariConfig(game=str(args.game), size=int(args.size), frames=int(args.frames))
    with AtariRecorder(config) as rec:

        def record(seed: tuple[int, int]) -> ClipData:
            clip = rec.record(seed)
            return clip.frames, clip.ground_truth, {
                "actions": [int(a) for a in clip.actions],
                "rewards": [float(r) for r in clip.rewards],
                "dones": [False] * len(clip.frames),
            }

        spec = rec.spec
        summary = record_dataset(
            args.out, args.clips, int(args.seed), record, f"atari/{config.game}",
            {
                "env": spec.env_id,
                "config": asdict(config),
                "objects": list(spec.names),
                "action_meanings": rec.action_meanings,
                "crop_rows": list(spec.crop),
            },
        )
    print(json.dumps(summary))
    return 0
