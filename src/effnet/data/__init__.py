"""Datasets (built-in procedural shapes, image folders, CIFAR files), transform presets and mixup/cutmix."""

from effnet.data.autoaugment import TFAutoAugment, TFRandAugment, reference_augment
from effnet.data.cifar import ArrayImageDataset, load_cifar
from effnet.data.config import DATASET_NAMES, DataConfig, DatasetPair, build_datasets
from effnet.data.folder import ImageFolderDataset, load_rgb
from effnet.data.mixup import MixupCutmix, smooth_one_hot
from effnet.data.procedural import CLASS_NAMES, ProceduralShapes, render_sample
from effnet.data.transforms import TorchvisionRandAugment, train_transform
from effnet.preprocess import IMAGENET_MEAN, IMAGENET_STD, eval_transform

__all__ = [
    "ArrayImageDataset",
    "CLASS_NAMES",
    "DATASET_NAMES",
    "DataConfig",
    "DatasetPair",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageFolderDataset",
    "MixupCutmix",
    "ProceduralShapes",
    "TFAutoAugment",
    "TFRandAugment",
    "TorchvisionRandAugment",
    "build_datasets",
    "eval_transform",
    "load_cifar",
    "load_rgb",
    "reference_augment",
    "render_sample",
    "smooth_one_hot",
    "train_transform",
]
