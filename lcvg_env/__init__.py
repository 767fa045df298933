"""lcvg_env: layered controllable video generation as Gymnasium environments."""

from lcvg_env.registration import register_envs

register_envs()
