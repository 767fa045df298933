"""Agents for the lcvg environments: scripted policies (``agents.scripted``) and the demo.

Policies share stable-baselines3's ``predict(observation, state, episode_start,
deterministic)`` signature. ``agents`` imports ``lcvg_env`` and never ``training``.
"""

from agents.scripted import FollowPathPolicy, RandomPolicy, ReachPolicy, ScriptedPolicy

__all__ = ["FollowPathPolicy", "RandomPolicy", "ReachPolicy", "ScriptedPolicy"]
