"""Agents for the lcvg environments: scripted policies, the demo, reinforcement learning.

``agents.scripted`` holds the scripted policies, ``agents.demo`` the demo, and ``agents.rl``
the ``lcvg-rl`` command (not imported here: it loads stable-baselines3).

Policies share stable-baselines3's ``predict(observation, state, episode_start,
deterministic)`` signature. ``agents`` imports ``lcvg_env`` and never ``training``.
"""

from agents.scripted import FollowPathPolicy, RandomPolicy, ReachPolicy, ScriptedPolicy

__all__ = ["FollowPathPolicy", "RandomPolicy", "ReachPolicy", "ScriptedPolicy"]
