"""effnet: EfficientNet V1/V2/Lite and the compound scaling method behind them."""

from effnet.models.net import EfficientNet
from effnet.models.registry import create_model, get_spec, list_models
from effnet.models.scaling import PUBLISHED, check_coefficients, compound_scale, scale
from effnet.models.specs import NetSpec, ScalingRules, StageSpec
from effnet.preprocess import Preprocess
from effnet.weights import load_model, save_weights
from effnet.weights.pretrained import get_pretrained, list_pretrained

__version__ = "0.1.0"

__all__ = [
    "PUBLISHED",
    "EfficientNet",
    "NetSpec",
    "Preprocess",
    "ScalingRules",
    "StageSpec",
    "__version__",
    "check_coefficients",
    "compound_scale",
    "create_model",
    "get_pretrained",
    "get_spec",
    "list_models",
    "list_pretrained",
    "load_model",
    "save_weights",
    "scale",
]
