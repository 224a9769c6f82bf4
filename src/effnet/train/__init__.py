"""Training engine: the EfficientNet recipe, V2 progressive learning, fine-tuning, DDP and resumable runs."""

from effnet.train.checkpoint import Checkpoint, CheckpointManager, load_checkpoint
from effnet.train.config import RECIPES, TrainConfig
from effnet.train.ema import ModelEma, tf_ema_decay
from effnet.train.evaluate import evaluate, evaluate_checkpoint, resolve_device
from effnet.train.freezing import set_backbone_frozen
from effnet.train.loop import TrainingDiverged, TrainingInterrupted, TrainResult, fit
from effnet.train.optim import RMSpropTF, build_optimizer, param_groups
from effnet.train.progressive import TABLE6, ProgressiveRange, ProgressiveStage, default_range, progressive_stages
from effnet.train.schedule import LRSchedule

__all__ = [
    "RECIPES",
    "TABLE6",
    "Checkpoint",
    "CheckpointManager",
    "LRSchedule",
    "ModelEma",
    "ProgressiveRange",
    "ProgressiveStage",
    "RMSpropTF",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "TrainingInterrupted",
    "build_optimizer",
    "default_range",
    "evaluate",
    "evaluate_checkpoint",
    "fit",
    "load_checkpoint",
    "param_groups",
    "progressive_stages",
    "resolve_device",
    "set_backbone_frozen",
    "tf_ema_decay",
]
