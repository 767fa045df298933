"""Property-based tests of the runtime's inputs: whatever comes in, a result or a clear error.

For environment actions and reset options (the learned ``LCVGEnv`` over the tiny model of
``conftest``, and the twin), the ``lcvg_env.control`` functions and checkpoint bytes, any input
gives either a valid result or a ``TypeError`` / ``ValueError`` (``CheckpointError``) with a
message; never another exception, never NaN out of finite input.

Each test is bounded by ``max_examples`` of the hypothesis profile (``tests/conftest.py``):
``LCVG_HYPOTHESIS_PROFILE=thorough`` runs many more examples than the default ``quick``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lcvg_env import control as ctl
from lcvg_env.checkpoint import CheckpointError, load_checkpoint
from lcvg_env.env import RESET_OPTIONS, LCVGEnv
from lcvg_env.models import LayeredGenerator
from lcvg_env.world.scene import SceneConfig, sample_scene
from lcvg_env.world.twin import RESET_OPTIONS as TWIN_RESET_OPTIONS
from lcvg_env.world.twin import SpritesRealEnv
from tests.lcvg_env.conftest import tiny_frames

CLEAR = (TypeError, ValueError)
"""The errors bad input may raise."""

# --- strategies -----------------------------------------------------------------------------
DTYPES = [np.float32, np.float64, np.float16, np.int8, np.int64, np.uint8, np.bool_,
          np.complex64, np.complex128]
junk = st.one_of(
    st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(), st.text(max_size=4),
    st.complex_numbers(), st.binary(max_size=4), st.lists(st.floats(), max_size=4),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
"""Python values that are not arrays (or are odd ones)."""


def arrays(shape: Any = None) -> st.SearchStrategy[np.ndarray]:
    """Arrays of any listed dtype, of ``shape`` or of small random shapes."""
    shapes = hnp.array_shapes(min_dims=0, max_dims=3, max_side=4) if shape is None else \
        st.just(shape)
    return hnp.arrays(st.sampled_from(DTYPES), shapes)


def actions(size: int) -> st.SearchStrategy[Any]:
    """Anything an agent might send: right-shaped arrays of any dtype, others, junk."""
    return st.one_of(arrays((size,)), arrays((1, size)), arrays(), junk)


option_values = st.one_of(junk, arrays(), st.just(tiny_frames(1)[0]),
                          st.just(np.zeros((1, 2), np.float32)))
option_keys = st.one_of(st.sampled_from(["frame", "target", "scene", "reset_mask", "Frame",
                                         "seed", ""]), st.text(max_size=4), st.integers(0, 3))
reset_options = st.one_of(
    st.none(),
    st.dictionaries(option_keys, option_values, max_size=3),
    st.lists(st.tuples(st.just("frame"), st.none()), max_size=2),  # pairs, not a dict
    junk,
)


def check_reset_outcome(env: Any, options: Any, accepted: tuple[str, ...]) -> None:
    """Reset with ``options``: a valid observation, or the right clear error."""
    try:
        obs, info = env.reset(seed=0, options=options)
    except CLEAR as error:
        message = str(error)
        assert message
        if options is not None and not isinstance(options, dict):
            assert isinstance(error, TypeError) and type(options).__name__ in message
        elif options:
            unknown = [key for key in options if key not in accepted]
            if unknown:
                assert isinstance(error, ValueError) and repr(unknown[0]) in message
    else:
        assert options is None or isinstance(options, dict)
        assert not [key for key in (options or {}) if key not in accepted]
        assert env.observation_space.contains(obs)
        assert isinstance(info["objects_found"], int)


def check_step_outcome(env: Any, action: Any) -> None:
    """Step with ``action``: a valid transition, or a clear error that leaves env usable."""
    env.reset(seed=0)
    try:
        obs, reward, terminated, truncated, info = env.step(action)
    except CLEAR as error:
        assert str(error)
        if np.iscomplexobj(action):
            assert isinstance(error, TypeError) and "complex" in str(error)
        obs, reward, *_ = env.step(np.zeros(env.action_space.shape, np.float32))
    assert env.observation_space.contains(obs)
    assert np.isfinite(reward)


# --- environments ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def learned(tiny: dict) -> LCVGEnv:
    env = LCVGEnv(control="affine", num_objects=2, task="reach",
                  observation_keys=("frame", "mask", "centroids", "target"), **tiny)
    yield env
    env.close()


@pytest.fixture(scope="module")
def twin() -> SpritesRealEnv:
    return SpritesRealEnv(control="affine", num_objects=2, task="reach", size=32,
                          observation_keys=("frame", "mask", "centroids", "target"))


@given(action=actions(12))
def test_learned_env_step_takes_any_action_or_says_why(learned: LCVGEnv, action: Any) -> None:
    check_step_outcome(learned, action)


@given(action=hnp.arrays(np.float32, (12,), elements=st.floats(-1e6, 1e6, width=32)))
def test_learned_env_accepts_every_finite_action(learned: LCVGEnv, action: np.ndarray) -> None:
    learned.reset(seed=0)
    obs, reward, *_, info = learned.step(action)
    assert learned.observation_space.contains(obs)
    assert np.isfinite(reward) and np.all(np.isfinite(info["centroids"]))


@given(options=reset_options)
def test_learned_env_reset_options_are_used_or_refused(learned: LCVGEnv, options: Any) -> None:
    check_reset_outcome(learned, options, RESET_OPTIONS)


@given(action=actions(12))
def test_twin_step_takes_any_action_or_says_why(twin: SpritesRealEnv, action: Any) -> None:
    check_step_outcome(twin, action)


@given(options=st.one_of(reset_options, st.just({"scene": sample_scene(
    SceneConfig(size=32, objects=(2, 2)), np.random.default_rng(0))})))
def test_twin_reset_options_are_used_or_refused(twin: SpritesRealEnv, options: Any) -> None:
    check_reset_outcome(twin, options, TWIN_RESET_OPTIONS)


@given(num_objects=st.one_of(st.integers(-2, 3), st.floats(-2, 3), st.text(max_size=2),
                             st.booleans(), st.sampled_from([np.int64(2), np.int8(1)])))
def test_num_objects_is_an_int_or_refused(tiny: dict, num_objects: Any) -> None:
    integral = isinstance(num_objects, int | np.integer) and not isinstance(num_objects, bool)
    for make in (lambda: LCVGEnv(num_objects=num_objects, **tiny),
                 lambda: SpritesRealEnv(num_objects=num_objects)):
        if integral and num_objects >= 1:
            env = make()
            assert env.action_space.shape == (2 * int(num_objects),)
            continue
        with pytest.raises(TypeError if not integral else ValueError, match="an int >= 1"):
            make()


# --- lcvg_env.control -------------------------------------------------------------------------
finite = st.floats(-50, 50, width=32)
tensors = st.one_of(
    hnp.arrays(np.float32, hnp.array_shapes(max_dims=4, max_side=5), elements=finite).map(
        torch.from_numpy),
    hnp.arrays(np.float64, hnp.array_shapes(max_dims=4, max_side=5)).map(torch.from_numpy),
    junk,
)
"""Tensors of any small shape (finite float32, or float64 with NaN/inf) and non-tensors."""


def masks(batch: int = 2, channels: int = 1, size: int = 12) -> st.SearchStrategy[torch.Tensor]:
    """Binary float masks (B, C, S, S)."""
    return hnp.arrays(np.bool_, (batch, channels, size, size)).map(
        lambda a: torch.from_numpy(a.astype(np.float32)))


def thetas(batch: int = 2) -> st.SearchStrategy[torch.Tensor]:
    """Finite (B, 2, 3) matrices of moderate entries."""
    return hnp.arrays(np.float32, (batch, 2, 3), elements=st.floats(-4, 4, width=32)).map(
        torch.from_numpy)


def no_nan(result: Any) -> None:
    """Every tensor in ``result`` (a tensor, tuple or dataclass of them) is NaN-free."""
    values = result if isinstance(result, tuple) else getattr(result, "__dict__", {}).values() \
        if not isinstance(result, torch.Tensor) else (result,)
    for value in values:
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            assert not bool(torch.isnan(value).any()), value


def call(function: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``function``; a clear error gives None, anything else propagates."""
    try:
        return function(*args, **kwargs)
    except CLEAR as error:
        assert str(error), f"{type(error).__name__} without a message"
    return None


@given(params=tensors, center=st.one_of(st.none(), tensors),
       size=st.one_of(st.none(), st.tuples(st.integers(1, 64), st.integers(1, 64)), junk))
def test_params_to_matrix_any_input(params: Any, center: Any, size: Any) -> None:
    theta = call(ctl.params_to_matrix, params, center, size=size)
    if theta is not None:
        assert theta.shape == (params.shape[0], 2, 3)
        no_nan(theta)


@given(params=st.one_of(
    hnp.arrays(np.float32, st.tuples(st.integers(1, 3), st.sampled_from([2, 6])),
               elements=st.floats(-3, 3, width=32)).map(torch.from_numpy)),
    size=st.one_of(st.none(), st.tuples(st.integers(1, 64), st.integers(1, 64))))
def test_params_to_matrix_is_finite_and_inverts(params: torch.Tensor, size: Any) -> None:
    theta = ctl.params_to_matrix(params, size=size)
    assert theta.shape == (params.shape[0], 2, 3) and bool(torch.isfinite(theta).all())
    back = ctl.matrix_to_params(theta, size=size)
    assert back.shape == (params.shape[0], 6)
    no_nan(back)


@given(mask=st.one_of(masks(), tensors), theta=st.one_of(thetas(), tensors),
       mode=st.sampled_from(["bilinear", "nearest", "cubic"]))
def test_warp_masks_any_input(mask: Any, theta: Any, mode: str) -> None:
    out = call(ctl.warp_masks, mask, theta, mode=mode)
    if out is not None:
        assert out.shape == mask.shape
        if bool(torch.isfinite(theta).all()):
            no_nan(out)


@given(mask=masks(), theta=thetas(), residual=st.one_of(st.none(), hnp.arrays(
    np.float32, (2, 2), elements=st.floats(-1, 1, width=32)).map(torch.from_numpy)))
def test_warp_binary_gives_binary_masks(mask: torch.Tensor, theta: torch.Tensor,
                                        residual: Any) -> None:
    out, owed = ctl.warp_binary(mask, theta, residual)
    assert out.shape == mask.shape and owed.shape == (2, 2)
    assert bool(((out == 0) | (out == 1)).all()) and bool(torch.isfinite(owed).all())


@given(source=st.one_of(masks(), tensors), target=st.one_of(masks(), tensors),
       mode=st.sampled_from(["translation", "similarity", "affine", "projective"]))
def test_fit_control_any_input(source: Any, target: Any, mode: str) -> None:
    fit = call(ctl.fit_control, source, target, mode, iterations=2)
    if fit is not None:
        batch = source.shape[0]
        assert fit.theta.shape == (batch, 2, 3) and fit.valid.shape == (batch,)
        no_nan(fit)


@given(mask=st.one_of(masks(), tensors), k=st.one_of(st.integers(-1, 4), junk))
def test_object_masks_and_measurements_any_input(mask: Any, k: Any) -> None:
    objects = call(ctl.object_masks, mask, k)
    if objects is None:
        return
    assert objects.shape == (mask.shape[0], k, *mask.shape[2:])
    centroids, areas = ctl.mask_centroids(objects), ctl.mask_areas(objects)
    assert centroids.shape == (mask.shape[0], k, 2) and areas.shape == (mask.shape[0], k)
    no_nan(centroids)


# --- checkpoints ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint_bytes(tiny: dict) -> bytes:
    return Path(tiny["checkpoint"]).read_bytes()


def load_bytes(data: bytes) -> Any:
    """Write ``data`` to a file and load it as a checkpoint and as a generator."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.safetensors"
        path.write_bytes(data)
        try:
            checkpoint = load_checkpoint(path)
        except CheckpointError as error:
            assert str(path) in str(error)
            return None
        try:  # the header may still name other tensors or an invalid config
            LayeredGenerator.from_checkpoint(path, device="cpu")
        except CheckpointError as error:
            assert str(error)
        return checkpoint


@given(data=st.binary(max_size=256))
def test_random_bytes_are_not_a_checkpoint(data: bytes) -> None:
    assert load_bytes(data) is None


@given(data=st.data())
def test_corrupted_checkpoints_load_or_say_why(checkpoint_bytes: bytes, data: Any) -> None:
    raw = bytearray(checkpoint_bytes)
    kind = data.draw(st.sampled_from(["truncate", "flip", "header", "splice"]))
    if kind == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif kind == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
    else:  # overwrite bytes in the JSON header, or anywhere
        end = int.from_bytes(raw[:8], "little") + 8 if kind == "header" else len(raw)
        start = data.draw(st.integers(0, end - 1))
        chunk = data.draw(st.binary(min_size=1, max_size=16))
        raw[start : start + len(chunk)] = chunk
    checkpoint = load_bytes(bytes(raw))
    if checkpoint is not None:  # what loads is whole: finite weights and a config
        assert isinstance(checkpoint.config, dict)
        assert all(bool(torch.isfinite(w).all()) for w in checkpoint.weights.values()
                   if w.is_floating_point())
