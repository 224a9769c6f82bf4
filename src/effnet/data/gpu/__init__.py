"""Batched, device-agnostic twins of the CPU input pipeline: decode, crop, flip, RandAugment / AutoAugment,
normalize, on whole batches on the training device (`--input-pipeline gpu`)."""

from effnet.data.gpu.crop import center_crops, normalize, random_hflip, random_resized_crop, sample_crop_boxes
from effnet.data.gpu.decode import collate_images, decode_batch
from effnet.data.gpu.ops import BATCHED_OPS
from effnet.data.gpu.pipeline import (
    INPUT_PIPELINES,
    BatchEvalTransform,
    BatchTrainTransform,
    GpuInputPipeline,
    gpu_input_pipeline,
    resolve_input_pipeline,
)
from effnet.data.gpu.policy import BatchedAutoAugment, BatchedRandAugment, autoaugment_plan, randaugment_plan

__all__ = [
    "BATCHED_OPS",
    "INPUT_PIPELINES",
    "BatchEvalTransform",
    "BatchTrainTransform",
    "BatchedAutoAugment",
    "BatchedRandAugment",
    "GpuInputPipeline",
    "autoaugment_plan",
    "center_crops",
    "collate_images",
    "decode_batch",
    "gpu_input_pipeline",
    "normalize",
    "random_hflip",
    "random_resized_crop",
    "randaugment_plan",
    "resolve_input_pipeline",
    "sample_crop_boxes",
]
