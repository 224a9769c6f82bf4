"""effnet: EfficientNet V1/V2/Lite and the compound scaling method behind them."""

from effnet.net import EfficientNet
from effnet.preprocess import Preprocess
from effnet.scaling import PUBLISHED, check_coefficients, compound_scale, scale
from effnet.specs import NetSpec, ScalingRules, StageSpec
from effnet.zoo import create_model, get_spec, list_models

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
    "get_spec",
    "list_models",
    "scale",
]
