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
upscaled); ``--record`` writes what was shown as a GIF or MP4 on exit.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import numpy as np

from lcvg_env.render import import_pygame, save_video
from lcvg_env.simulator import SIM_TRACKING
from lcvg_env.spaces import PARAMS_PER_OBJECT

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


def make_env(args: argparse.Namespace) -> Any:
    """Make the environment to play (``render_mode="rgb_array"``; the window is ours)."""
    import gymnasium as gym

    from lcvg_env.registration import register_envs

    register_envs()
    kwargs: dict[str, Any] = {"render_mode": "rgb_array", "render_scale": args.scale}
    for name in ("checkpoint", "start_frames", "control", "tracking", "device"):
        value = getattr(args, name)
        if value is not None:
            kwargs[name] = value
    return gym.make(args.env, **kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    """Open a window and play; returns 0 (1 if pygame is missing)."""
    parser = argparse.ArgumentParser(
        prog="python -m lcvg_env.play", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--env", default="LCVG-Sprites-v0", help="registered environment id")
    parser.add_argument("--checkpoint", default=None, help="checkpoint path or name")
    parser.add_argument("--start-frames", dest="start_frames", default=None, help="first frames")
    parser.add_argument("--control", choices=("position", "affine", "mask"), default=None)
    parser.add_argument("--tracking", choices=SIM_TRACKING, default=None,
                        help="how the simulator follows the objects (LCVGEnv's tracking)")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda")
    parser.add_argument("--scale", type=int, default=6, help="window upscaling")
    parser.add_argument("--fps", type=float, default=10.0, help="frames per second")
    parser.add_argument("--record", default=None, help="write the shown frames here on exit")
    parser.add_argument("--seed", type=int, default=None, help="seed of the first episode")
    parser.add_argument("--max-frames", type=int, default=None,
                        help="quit after this many frames (for scripted runs)")
    args = parser.parse_args(argv)
    try:
        pygame = import_pygame()
    except Exception as error:  # noqa: BLE001 - DependencyNotInstalled
        print(error)
        return 1
    env = make_env(args)
    core = env.unwrapped.core
    control, k = core.control, core.num_objects
    h, w = core.resolution
    pygame.display.init()
    pygame.display.set_caption(f"lcvg play: {args.env}")
    screen = pygame.display.set_mode((w * args.scale, h * args.scale))
    clock = pygame.time.Clock()
    recorded: list[np.ndarray] = []
    env.reset(seed=args.seed)
    selected = 0
    drawing = np.zeros((h, w), dtype=np.int8)
    running = True
    while running:
        action: np.ndarray | None = None
        for event in pygame.event.get():
            if event.type == pygame.QUIT:
                running = False
            elif event.type == pygame.KEYDOWN:
                name = pygame.key.name(event.key)
                if name == "escape":
                    running = False
                elif name == "r":
                    env.reset()
                elif name == "tab":
                    selected = (selected + 1) % k
                elif name == "space" and control != "mask":
                    action = np.zeros(env.action_space.shape, np.float32)
                elif name == "return" and control == "mask":
                    action = drawing.copy()
                elif name == "c":
                    drawing[:] = 0
                elif name == "m":
                    drawing[:] = core.sim.masks[0, 0].cpu().numpy() > 0.5
            elif event.type == pygame.MOUSEBUTTONDOWN and control != "mask" and event.button == 1:
                px, py = event.pos[0] / args.scale, event.pos[1] / args.scale
                point = np.array([(2 * px) / w - 1, (2 * py) / h - 1])
                centroid = core.sim.centroids[0, selected].cpu().numpy()
                action = action_toward(
                    point, centroid, control, k, selected, core.action_ranges.max_translation
                )
        if control == "mask":
            buttons = pygame.mouse.get_pressed()
            if buttons[0] or buttons[2]:
                px, py = pygame.mouse.get_pos()
                y, x = int(py / args.scale), int(px / args.scale)
                drawing[max(0, y - 2) : y + 3, max(0, x - 2) : x + 3] = 1 if buttons[0] else 0
        elif action is None:
            held = pygame.key.get_pressed()
            keys = {
                name
                for name in (*MOVES, *AFFINE_KEYS)
                if held[pygame.key.key_code(name)]
            }
            if keys:
                action = action_from_keys(keys, control, k, selected)
        if action is not None:
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()
        frame = env.render()
        if control == "mask" and drawing.any():
            from lcvg_env.render import outline

            big = np.repeat(np.repeat(drawing, args.scale, 0), args.scale, 1)
            frame = outline(frame, big, (255, 255, 0))
        recorded.append(frame)
        surface = pygame.surfarray.make_surface(np.ascontiguousarray(frame.transpose(1, 0, 2)))
        screen.blit(surface, (0, 0))
        pygame.display.flip()
        clock.tick(args.fps)
        if args.max_frames is not None and len(recorded) >= args.max_frames:
            running = False
    pygame.display.quit()
    env.close()
    if args.record and recorded:
        print(f"wrote {save_video(args.record, recorded, fps=args.fps)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
