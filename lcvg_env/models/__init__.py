"""The networks of layered controllable video generation.

``LayeredGenerator(ModelConfig.paper_bair())`` builds the paper's model; ``ModelConfig()``
(= ``ModelConfig.medium()``) a 64x64 one that trains on a CPU; ``ModelConfig.tiny()`` is the
tests' model. Model code imports only torch and ``lcvg_env``.
"""

from lcvg_env.device import resolve_device
from lcvg_env.models.config import MASK_NORMS, ModelConfig
from lcvg_env.models.decoder import Decoder
from lcvg_env.models.encoder import Encoder
from lcvg_env.models.generator import (
    GeneratorOutput,
    LayeredGenerator,
    LayeredOutput,
    LayerLatents,
    stored_model_config,
)
from lcvg_env.models.mask_net import MaskNet
from lcvg_env.models.quantizer import QuantizerOutput, VectorQuantizer

__all__ = [
    "MASK_NORMS",
    "Decoder",
    "Encoder",
    "GeneratorOutput",
    "LayerLatents",
    "LayeredGenerator",
    "LayeredOutput",
    "MaskNet",
    "ModelConfig",
    "QuantizerOutput",
    "VectorQuantizer",
    "resolve_device",
    "stored_model_config",
]
