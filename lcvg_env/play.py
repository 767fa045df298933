"""Play an lcvg environment with the keyboard and mouse, and record the episode.

    python -m lcvg_env.play [--env LCVG-Sprites-v0] [--checkpoint PATH] [--record out.gif]

Needs pygame (``pip install 'lcvg[play]'``). Controls:

- arrow keys: move the selected object (one action unit per frame held); Tab: select the next
  object; with ``--control affine`` also Q / E rotate, Z / X shrink / grow;
- left click (position/affine control): steer the selected object toward the clicked point;
- ``--control mask``: paint the next mask with the left button, erase with the right one, then
  Return to step; C clears the drawing, M copies the current mask into it;
- Space: step with no motion; R: new episode; Esc or closing the window: quit.

Frames are shown with the mask overlay, centroids and targets (``render_mode="rgb_array"``
upscaled); ``--record`` writes what was shown as a GIF or MP4 on exit. The flags are the fields
of :class:`PlayConfig` (``--print-config`` prints the resolved config and exits).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lcvg_env.configs import check_choices, check_ints, parse_config
from lcvg_env.render import import_pygame, save_video
from lcvg_env.spaces import PARAMS_PER_OBJECT, Control
from lcvg_env.tracking import Tracking

MOVES = {"up": (0.0, -1.0), "down": (0.0, 1.0), "left": (-1.0, 0.0), "right": (1.0, 0.0)}
"""Arrow key -> (dx, dy) in action units (y points down)."""
AFFINE_KEYS = {"q": (2, -1.0), "e": (2, 1.0), "z": (3, -1.0), "x": (3, 1.0)}
"""Key -> (parameter index, sign): rotation (2), log scale (3 and 4 together)."""


def action_from_keys(
    keys: set[str], control: str, num_objects: int, selected: int = 0
) -> np.ndarray:
    """Return the normalised action for the held ``keys`` (pygame key names).

    The keys act on object ``selected``; the action is float32 (K * P,) in [-1, 1].
    """
    p = PARAMS_PER_OBJECT[control]
    action = np.zeros((num_objects, p), dtype=np.float32)
    for key in keys:
        if key in MOVES:
            action[selected, :2] += MOVES[key]
        elif control == "affine" and key in AFFINE_KEYS:
            index, sign = AFFINE_KEYS[key]
            action[selected, index] += sign
            if index == 3:
                action[selected, 4] += sign  # uniform scale
    return np.clip(action, -1.0, 1.0).reshape(-1)


def action_toward(
    point: np.ndarray, centroid: np.ndarray, control: str, num_objects: int, selected: int,
    max_translation: float,
) -> np.ndarray:
    """Return the action moving object ``selected`` from ``centroid`` toward ``point``."""
    p = PARAMS_PER_OBJECT[control]
    action = np.zeros((num_objects, p), dtype=np.float32)
    action[selected, :2] = (np.asarray(point) - np.asarray(centroid)) / max_translation
    return np.clip(action, -1.0, 1.0).reshape(-1)


@dataclass(frozen=True)
class PlayConfig:
    """What ``python -m lcvg_env.play`` opens; None leaves the environment id's default."""

    env: str = "LCVG-Sprites-v0"
    """Registered environment id."""
    checkpoint: str | None = None
    """Checkpoint path or name."""
    start_frames: str | None = None
    """First frames (a file of start frames)."""
    control: Control | None = None
    """Control mode: translate each object, transform it affinely, or paint the whole mask."""
    tracking: Tracking | None = None
    """How the simulator follows the objects (LCVGEnv's tracking)."""
    device: str | None = None
    """Torch device: "auto", "cpu", "cuda"..."""
    scale: int = 6
    """Window upscaling."""
    fps: float = 10.0
    """Frames per second."""
    record: str | None = None
    """Write the shown frames here on exit (.gif or .mp4)."""
    seed: int | None = None
    """Seed of the first episode."""
    max_frames: int | None = None
    """Quit after this many frames (for scripted runs)."""

    def __post_init__(self) -> None:
        """Validate the choices and counts, naming the offending value."""
        check_choices(self)
        check_ints(self, {"scale": 1, "max_frames": 1})
        if not self.fps > 0:
            raise ValueError(f"PlayConfig.fps must be > 0, got {self.fps!r}")


def make_env(config: PlayConfig) -> Any:
    """Make the environment to play (``render_mode="rgb_array"``; the window is ours)."""
    import gymnasium as gym

    from lcvg_env.registration import register_envs

    register_envs()
    kwargs: dict[str, Any] = {"render_mode": "rgb_array", "render_scale": config.scale}
    for name in ("checkpoint", "start_frames", "control", "tracking", "device"):
        value = getattr(config, name)
        if value is not None:
            kwargs[name] = value
    return gym.make(config.env, **kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    """Open a window and play; returns 0 (1 if pygame is missing)."""
    parser = argparse.ArgumentParser(
        prog="python -m lcvg_env.play", description=__doc__.split("\n")[0]
    )
    config, _ = parse_config(parser, PlayConfig, argv)
    if config is None:  # --print-config
        return 0
    try:
        pygame = import_pygame()
    except Exception as error:  # noqa: BLE001 - DependencyNotInstalled
        print(error)
        return 1
    env = make_env(config)
    player = _Player(env, config)
    pygame.display.init()
    pygame.display.set_caption(f"lcvg play: {config.env}")
    screen = pygame.display.set_mode((player.w * config.scale, player.h * config.scale))
    clock = pygame.time.Clock()
    recorded: list[np.ndarray] = []
    env.reset(seed=config.seed)
    while player.running:
        action = player.held_input(pygame, player.handle_events(pygame))
        if action is not None:
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()
        frame = player.frame()
        recorded.append(frame)
        surface = pygame.surfarray.make_surface(np.ascontiguousarray(frame.transpose(1, 0, 2)))
        screen.blit(surface, (0, 0))
        pygame.display.flip()
        clock.tick(config.fps)
        if config.max_frames is not None and len(recorded) >= config.max_frames:
            player.running = False
    pygame.display.quit()
    env.close()
    if config.record and recorded:
        print(f"wrote {save_video(config.record, recorded, fps=config.fps)}")
    return 0


class _Player:
    """The player's side of a session, turning window input into actions.

    Holds the selected object, the mask being drawn (mask control) and whether to go on.
    """

    def __init__(self, env: Any, config: PlayConfig) -> None:
        self.env, self.config = env, config
        self.core = env.unwrapped.core
        self.control, self.k = self.core.control, self.core.num_objects
        self.h, self.w = self.core.resolution
        self.selected = 0
        self.drawing = np.zeros((self.h, self.w), dtype=np.int8)
        self.running = True

    def handle_events(self, pygame: Any) -> np.ndarray | None:
        """Apply the queued window events; returns the action the last of them asked for."""
        action: np.ndarray | None = None
        for event in pygame.event.get():
            if event.type == pygame.QUIT:
                self.running = False
            elif event.type == pygame.KEYDOWN:
                asked = self._on_key(pygame.key.name(event.key))
                action = action if asked is None else asked
            elif (event.type == pygame.MOUSEBUTTONDOWN and self.control != "mask"
                  and event.button == 1):
                action = self._toward_click(event.pos)
        return action

    def _on_key(self, name: str) -> np.ndarray | None:
        """Act on one pressed key; returns the action it asks for (Space, Return), if any."""
        if name == "escape":
            self.running = False
        elif name == "r":
            self.env.reset()
        elif name == "tab":
            self.selected = (self.selected + 1) % self.k
        elif name == "space" and self.control != "mask":
            return np.zeros(self.env.action_space.shape, np.float32)
        elif name == "return" and self.control == "mask":
            return self.drawing.copy()
        elif name == "c":
            self.drawing[:] = 0
        elif name == "m":
            self.drawing[:] = self.core.sim.masks[0, 0].cpu().numpy() > 0.5
        return None

    def _toward_click(self, pos: tuple[int, int]) -> np.ndarray:
        """Return the action steering the selected object toward the clicked window pixel."""
        px, py = pos[0] / self.config.scale, pos[1] / self.config.scale
        point = np.array([(2 * px) / self.w - 1, (2 * py) / self.h - 1])
        centroid = self.core.sim.centroids[0, self.selected].cpu().numpy()
        return action_toward(point, centroid, self.control, self.k, self.selected,
                             self.core.action_ranges.max_translation)

    def held_input(self, pygame: Any, action: np.ndarray | None) -> np.ndarray | None:
        """Return the action to step with (or None) after the held mouse buttons and keys.

        Mask control paints with the held buttons; otherwise, when no event asked for an
        action (``action`` None), the held keys give it.
        """
        if self.control == "mask":
            buttons = pygame.mouse.get_pressed()
            if buttons[0] or buttons[2]:
                px, py = pygame.mouse.get_pos()
                y, x = int(py / self.config.scale), int(px / self.config.scale)
                self.drawing[max(0, y - 2) : y + 3, max(0, x - 2) : x + 3] = (
                    1 if buttons[0] else 0)
        elif action is None:
            held = pygame.key.get_pressed()
            keys = {
                name
                for name in (*MOVES, *AFFINE_KEYS)
                if held[pygame.key.key_code(name)]
            }
            if keys:
                action = action_from_keys(keys, self.control, self.k, self.selected)
        return action

    def frame(self) -> np.ndarray:
        """Render the env's frame, with the mask being drawn outlined (mask control)."""
        frame = self.env.render()
        if self.control == "mask" and self.drawing.any():
            from lcvg_env.render import outline

            scale = self.config.scale
            big = np.repeat(np.repeat(self.drawing, scale, 0), scale, 1)
            frame = outline(frame, big, (255, 255, 0))
        return frame


if __name__ == "__main__":
    raise SystemExit(main())
