"""Reinforcement learning in the learned simulators, judged in their ground-truth twins.

``lcvg-rl`` (``agents.rl.cli``) trains stable-baselines3 agents for the reach task in a
learned environment (``LCVG-Sprites-Reach-v0``) and evaluates them there and in the twin
(``LCVG-Sprites-Reach-Real-v0``); docs/agents.md has the usage and the reasons for the
defaults. Modules:

- ``config``: the frozen, documented configs of the three commands;
- ``wrappers``: the agent's view (vector observation, moves within the model's motion);
- ``frame_backed``: ``FrameBackedReach``, success only where M sees the object in the frame;
- ``envs``: learned/twin id pairs and the training and evaluation environments;
- ``policies``: saved SB3 models and scripted policies behind one ``predict``;
- ``evaluate``, ``train``, ``curve``: episodes and summaries, training, the learning curve;
- ``agreement``: how often frame-backed success agrees with the twin's (paired episodes);
- ``mimic``: a driving clip's motion replayed from another first frame (and in the twin);
- ``cli``: the command line (flags from the configs by ``lcvg_env.configs``).

Importing ``agents.rl`` imports only the configs; the rest loads on use.
"""

from agents.rl.config import EvalConfig, MimicConfig, TrainConfig

__all__ = ["EvalConfig", "MimicConfig", "TrainConfig"]
