"""int8 post-training static quantization with an accuracy guard.

The model is BN-folded and exported to ONNX, calibrated on real photos, quantized (onnxruntime QDQ or OpenVINO
through NNCF), then judged on held-out photos that calibration never saw: top-1 agreement with the fp32 export
and the latency of both, timed interleaved at batch 1 on one thread. An export whose agreement is below the
threshold is refused (`Int8Refused`) unless forced. docs/deploy.md records how the default recipe was chosen.
"""

from __future__ import annotations

import importlib.util
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from effnet._util.fileio import replace_files, staging_dir
from effnet.deploy.export import fold_batchnorm
from effnet.deploy.int8_quantizers import quantize_graph
from effnet.deploy.int8_rounding import round_weights
from effnet.deploy.predict import collect_images, load_image, preprocess_image
from effnet.deploy.runtimes import export_deploy_graph, predictor
from effnet.weights.pretrained import imagenet_classes, imagenet_label

QUANT_BACKENDS = ("auto", "onnxruntime", "openvino")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
ROUNDINGS = ("auto", "nearest", "optimized")
FLOAT_OPS = ("auto", "none", "depthwise", "add", "classifier")
_FLOAT_OP_WORDS = {"depthwise": "depthwise convs", "add": "residual adds", "classifier": "the classifier"}


@dataclass(frozen=True)
class QuantizeConfig:
    """How to quantize and how strictly to judge the result."""

    # onnxruntime: a QDQ ONNX file; openvino: NNCF on OpenVINO, an IR .xml/.bin pair; auto: openvino when NNCF
    # and OpenVINO are installed (it agreed with fp32 more often at the same speed, docs/deploy.md), else onnxruntime
    backend: str = "auto"
    method: str = "minmax"  # activation range calibration (onnxruntime; NNCF always uses its min-max)
    per_channel: bool = True  # one weight scale per output channel: depthwise convs need it after BN folding
    keep_float: tuple[str, ...] = ()  # ONNX node names, or prefixes like "/head", computed in float
    full_bias_correction: bool = True  # NNCF: correct each layer's output mean shift using real activations
    # Weights onto their int8 grid: "optimized" picks each weight's rounding for the layer's outputs on the
    # calibration photos (effnet.deploy.int8_rounding); "nearest" is plain PTQ; "auto" = optimized on openvino
    # (measured, docs/deploy.md), nearest on onnxruntime (same symmetric [-127, 127] grid, but not measured there)
    rounding: str = "auto"
    rounding_size: int = 256  # calibration photos whose layer inputs steer the rounding
    # Kinds of operation computed in float whatever the calibration says: "depthwise" convs (9 or 25 taps per
    # channel, a few percent of the multiply-adds, the largest source of int8 error), residual "add"s (the linear
    # bottleneck stream then passes between blocks in float) and the final linear "classifier" (its pooled input on
    # one 8-bit scale moves every logit; on openvino its weights are still stored and read as int8, only its
    # arithmetic is float); "auto" = all three on openvino (measured, docs/deploy.md), none on
    # onnxruntime (not measured there); "none" quantizes everything NNCF or onnxruntime would
    float_ops: tuple[str, ...] = ("auto",)
    # NNCF's overflow fix halves the first layer's weight range for CPUs without VNNI, where u8 x s8 products can
    # saturate in 16-bit sums; off it agreed with fp32 on 1-3 points more photos (docs/deploy.md)
    overflow_fix: bool = False
    calibration_size: int = 300  # photos for activation ranges
    holdout_size: int = 200  # photos to judge on (taken after the calibration ones when no holdout folder)
    min_agreement: float = 0.9  # top-1 agreement with fp32 below which the export is refused
    threads: int = 1  # threads of the latency comparison (batch 1), not of the quantization
    timing_runs: int = 30  # interleaved rounds of the latency comparison

    def __post_init__(self) -> None:
        if self.backend not in QUANT_BACKENDS:
            raise ValueError(f"backend must be one of {QUANT_BACKENDS}, got {self.backend!r}")
        if self.method not in CALIBRATION_METHODS:
            raise ValueError(f"calibration method must be one of {CALIBRATION_METHODS}, got {self.method!r}")
        if self.rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {ROUNDINGS}, got {self.rounding!r}")
        if self.calibration_size < 1 or self.holdout_size < 1 or self.rounding_size < 1:
            raise ValueError("calibration_size, holdout_size and rounding_size must be >= 1")
        if any(kind not in FLOAT_OPS for kind in self.float_ops) or (
            len(self.float_ops) > 1 and {"auto", "none"} & set(self.float_ops)
        ):
            raise ValueError(f"float_ops are some of {FLOAT_OPS[2:]}, or one of 'auto' / 'none'; got {self.float_ops}")
        if not 0.0 <= self.min_agreement <= 1.0:
            raise ValueError(f"min_agreement is a fraction in [0, 1], got {self.min_agreement}")


@dataclass(frozen=True)
class Int8Report:
    """What an int8 export was judged on and how it did."""

    path: str
    backend: str
    method: str
    calibration_images: int
    holdout_images: int
    agreement: float  # fraction of held-out photos whose top-1 class matches fp32
    # Median milliseconds of one batch-1 call on config.threads threads (config.timing_runs rounds, the two
    # interleaved): the fp32 ONNX graph on onnxruntime, the int8 file on its backend
    fp32_latency_ms: float
    int8_latency_ms: float
    min_agreement: float
    accepted: bool  # agreement >= min_agreement
    written: bool  # False when refused
    rounding: str = "nearest"  # how weights were rounded onto their int8 grid
    float_ops: tuple[str, ...] = ()  # kinds of operation left in float
    # Top-1 accuracy of the fp32 export and the int8 one when every held-out photo's name gives its class
    # (`photo_labels`); None otherwise
    fp32_top1: float | None = None
    int8_top1: float | None = None

    @property
    def top1_change(self) -> float | None:
        """int8 top-1 minus fp32 top-1, in points (None without labels)."""
        if self.fp32_top1 is None or self.int8_top1 is None:
            return None
        return (self.int8_top1 - self.fp32_top1) * 100.0

    @property
    def in_float(self) -> str:
        """What float_ops left in float, in words ("depthwise convs and the classifier"), or ""."""
        return " and ".join(_FLOAT_OP_WORDS[kind] for kind in self.float_ops)

    @property
    def speed_ratio(self) -> float:
        """int8 latency / fp32 onnxruntime latency (below 1 is faster)."""
        return self.int8_latency_ms / self.fp32_latency_ms


class Int8Refused(ValueError):
    """The int8 model disagrees with fp32 too often; the report says by how much."""

    def __init__(self, report: Int8Report):
        self.report = report
        super().__init__(
            f"int8 export refused: top-1 agreement with fp32 is {report.agreement:.1%} on {report.holdout_images} "
            f"held-out photos, below the {report.min_agreement:.0%} threshold; calibrate on more photos like the "
            "ones the model will see, keep more layers in float (--keep-float), or pass --force to write it anyway"
        )


def resolve_backend(config: QuantizeConfig) -> QuantizeConfig:
    """`config` with backend "auto" replaced by the backend installed here (openvino first), rounding resolved."""
    if config.backend == "auto":
        has_openvino = all(importlib.util.find_spec(name) is not None for name in ("openvino", "nncf"))
        config = replace(config, backend="openvino" if has_openvino else "onnxruntime")
    if config.rounding == "auto":
        config = replace(config, rounding="optimized" if config.backend == "openvino" else "nearest")
    if config.float_ops == ("auto",):
        config = replace(config, float_ops=FLOAT_OPS[2:] if config.backend == "openvino" else ())
    elif config.float_ops == ("none",):
        config = replace(config, float_ops=())
    return config


def load_arrays(model: nn.Module, paths: Sequence[Path], resolution: int | None = None) -> np.ndarray:
    """The photos at `paths` through the model's own eval preprocessing, as one float32 (N, 3, H, W) array."""
    preprocess = model.preprocess
    if resolution is not None:
        preprocess = replace(preprocess, input_size=resolution)
    return np.stack([preprocess_image(load_image(path), preprocess).numpy() for path in paths]).astype(np.float32)


def shuffled_images(folder: str | Path, seed: int = 0) -> list[Path]:
    """Every image under `folder`, in a seeded random order (so a prefix mixes the classes)."""
    if not Path(folder).is_dir():
        raise ValueError(f"calibration folder {folder} does not exist or is not a folder")
    paths = collect_images([folder])
    order = np.random.default_rng(seed).permutation(len(paths))
    return [paths[i] for i in order]


def calibration_arrays(
    model: nn.Module, folder: str | Path, limit: int, resolution: int | None = None
) -> tuple[np.ndarray, list[Path]]:
    """Up to `limit` photos from `folder` (seeded order), preprocessed; and their paths."""
    paths = shuffled_images(folder)[:limit]
    return load_arrays(model, paths, resolution), paths


def split_photos(
    calibration: str | Path, holdout: str | Path | None, config: QuantizeConfig
) -> tuple[list[Path], list[Path]]:
    """Calibration and held-out photo paths; without a holdout folder the photos after the calibration ones."""
    photos = shuffled_images(calibration)
    if holdout is not None:
        return photos[: config.calibration_size], shuffled_images(holdout)[: config.holdout_size]
    if len(photos) < 2:
        raise ValueError(f"{calibration} holds {len(photos)} image(s); int8 calibration needs at least 2")
    # Never judge on a photo calibration saw: the held-out share comes first out of a small folder.
    held = min(config.holdout_size, max(1, len(photos) // 3))
    cal = min(config.calibration_size, len(photos) - held)
    return photos[:cal], photos[cal : cal + held]


def _export_fp32(model: nn.Module, folder: Path, resolution: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return export_deploy_graph(model, folder / "fp32.onnx", torch.zeros(1, 3, resolution, resolution))


def _quantize_in(folder: Path, folded: nn.Module, images: np.ndarray, name: str, config: QuantizeConfig,
                 fp32: Path | None = None) -> Path:  # fmt: skip
    """The int8 file quantized in `folder` from the BN-folded model, calibrated on `images`: its weights rounded
    for their outputs first with config.rounding "optimized" (layers left in float keep theirs), else from the
    plain fp32 graph (`fp32` when already exported). `config` is resolved."""
    if config.rounding == "optimized":
        rounded = round_weights(folded, images[: config.rounding_size], float_ops=config.float_ops)
        fp32 = _export_fp32(rounded, folder / "rounded", images.shape[-1])
    elif fp32 is None:
        fp32 = _export_fp32(folded, folder, images.shape[-1])
    return quantize_graph(fp32, images, folder / name, config)


def quantize_model(model: nn.Module, images: np.ndarray, out: str | Path, config: QuantizeConfig) -> Path:
    """Fold BN, round the weights (config.rounding), export at the size of `images`, calibrate and write int8."""
    out, config = Path(out), resolve_backend(config)
    with staging_dir(out) as tmp:  # staged beside `out` and renamed, like export_int8
        staged = _quantize_in(tmp, fold_batchnorm(model), images, out.name, config)
        _move_export(staged, out.parent / staged.name)
        return out.parent / staged.name


def _median_latency_ms(runners: Sequence[Callable[[np.ndarray], object]], x: np.ndarray, runs: int) -> list[float]:
    """Median milliseconds of one call of each runner on `x`, timed one call of each per round so load hits them
    alike."""
    times: list[list[float]] = [[] for _ in runners]
    for run in runners:
        run(x)  # warm-up: first calls allocate and pick kernels
    for _ in range(runs):
        for run, bucket in zip(runners, times, strict=True):
            start = time.perf_counter()
            run(x)
            bucket.append(time.perf_counter() - start)
    return [statistics.median(bucket) * 1000.0 for bucket in times]


@dataclass(frozen=True)
class Int8Comparison:
    """How an int8 file did against the fp32 ONNX file on the same held-out photos."""

    agreement: float  # fraction of photos whose top-1 class matches fp32
    fp32_latency_ms: float  # see Int8Report
    int8_latency_ms: float
    fp32_top1: float | None = None  # accuracy on the photos' labels, when they have labels
    int8_top1: float | None = None


def photo_labels(paths: Sequence[Path], class_names: Sequence[str] | None, num_classes: int) -> np.ndarray | None:
    """Every photo's class index from its name, or None when some photo has none.

    A model with its own classes (fine-tuned): the photo's folder is one of them (an ImageFolder). An ImageNet-1k
    model: a WordNet id names the photo's folder or starts its file name (`n01440764/x.JPEG`,
    `n01440764_tench.JPEG`).
    """
    if class_names is not None and tuple(class_names) != imagenet_classes():
        index = {name: i for i, name in enumerate(class_names)}
        labels = [index.get(Path(path).parent.name, index.get("/".join(Path(path).parts[-3:-1]))) for path in paths]
    elif num_classes == 1000:
        labels = [imagenet_label(path) for path in paths]
    else:
        return None
    return None if not labels or any(label is None for label in labels) else np.array(labels)


def _compare(fp32_path: Path, int8_path: Path, holdout: np.ndarray, config: QuantizeConfig,
             labels: np.ndarray | None = None) -> Int8Comparison:  # fmt: skip
    """Top-1 agreement (and accuracy on `labels`) of the int8 file against the fp32 ONNX file; batch-1 latency of
    both, config.timing_runs interleaved rounds on config.threads threads. `config` is resolved."""
    fp32 = predictor(fp32_path, "onnxruntime", config.threads)
    int8 = predictor(int8_path, config.backend, config.threads)
    fp32_top = np.array([int(fp32(x[None]).argmax()) for x in holdout])
    int8_top = np.array([int(int8(x[None]).argmax()) for x in holdout])
    fp32_ms, int8_ms = _median_latency_ms([fp32, int8], holdout[:1], config.timing_runs)
    agreement = float(np.mean(fp32_top == int8_top))
    if labels is None:
        return Int8Comparison(agreement, fp32_ms, int8_ms)
    return Int8Comparison(
        agreement, fp32_ms, int8_ms, float(np.mean(fp32_top == labels)), float(np.mean(int8_top == labels))
    )


def export_int8(
    model: nn.Module,
    out: str | Path,
    calibration: str | Path,
    holdout: str | Path | None = None,
    config: QuantizeConfig = QuantizeConfig(),
    force: bool = False,
    resolution: int | None = None,
) -> Int8Report:
    """Quantize `model` on photos from `calibration`, judge it on held-out photos, write it only if it passes.

    Raises `Int8Refused` (a ValueError carrying the report) when agreement is below `config.min_agreement` and
    not `force`; nothing is written then.
    """
    out, config = Path(out), resolve_backend(config)  # once (a resolved config is kept): all below reads it
    cal_paths, held_paths = split_photos(calibration, holdout, config)
    cal_images = load_arrays(model, cal_paths, resolution)
    held_images = load_arrays(model, held_paths, resolution)
    labels = photo_labels(held_paths, getattr(model, "class_names", None), int(getattr(model, "num_classes", 0)))
    folded = fold_batchnorm(model)  # the only fold: the reference, the rounding and the quantizer start from it
    with staging_dir(out) as tmp:  # beside `out`: the final renames stay on one filesystem, never a copy
        fp32 = _export_fp32(folded, tmp, cal_images.shape[-1])  # the reference: the model as given
        staged = _quantize_in(tmp, folded, cal_images, out.name, config, fp32)
        result = _compare(fp32, staged, held_images, config, labels)
        accepted = result.agreement >= config.min_agreement
        final = out.with_suffix(staged.suffix)
        report = Int8Report(
            str(final), config.backend, config.method, len(cal_paths), len(held_paths), result.agreement,
            result.fp32_latency_ms, result.int8_latency_ms, config.min_agreement, accepted, accepted or force,
            config.rounding, config.float_ops, result.fp32_top1, result.int8_top1,
        )  # fmt: skip
        if not report.written:
            raise Int8Refused(report)
        _move_export(staged, final)
    return report


def _move_export(staged: Path, final: Path) -> None:
    """Move the staged file (and an OpenVINO .bin beside an .xml) into place: the .xml last, the old pair kept
    whole until the new one is (effnet._util.fileio.replace_files)."""
    pair = staged.suffix == ".xml"
    replace_files([staged, staged.with_suffix(".bin")] if pair else [staged],
                  [final, final.with_suffix(".bin")] if pair else [final])  # fmt: skip
