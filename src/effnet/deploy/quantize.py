"""int8 post-training static quantization with an accuracy guard.

The model is BN-folded and exported to ONNX, calibrated on real photos, quantized (onnxruntime QDQ or OpenVINO
through NNCF), then judged on held-out photos that calibration never saw: top-1 agreement with the fp32 export
and the latency of both, timed interleaved at batch 1 on one thread. An export whose agreement is below the
threshold is refused (`Int8Refused`) unless forced. docs/deploy.md records how the default recipe was chosen.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from effnet._util.fileio import replace_files, staging_dir

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
    threads: int = 1  # for the latency comparison (batch 1)
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
    fp32_ms: float  # fp32 ONNX on onnxruntime, batch 1, median
    int8_ms: float  # the int8 export on its backend, batch 1, median
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
        return self.int8_ms / self.fp32_ms


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
        import importlib.util

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
    from effnet.deploy.predict import load_image, preprocess_image

    preprocess = model.preprocess
    if resolution is not None:
        preprocess = replace(preprocess, input_size=resolution)
    return np.stack([preprocess_image(load_image(path), preprocess).numpy() for path in paths]).astype(np.float32)


def shuffled_images(folder: str | Path, seed: int = 0) -> list[Path]:
    """Every image under `folder`, in a seeded random order (so a prefix mixes the classes)."""
    from effnet.deploy.predict import collect_images

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
    from effnet.deploy.runtimes import export_deploy_graph

    folder.mkdir(parents=True, exist_ok=True)
    return export_deploy_graph(model, folder / "fp32.onnx", torch.zeros(1, 3, resolution, resolution))


def _onnx_node_names(path: Path) -> list[str]:
    import onnx

    return [node.name for node in onnx.load(str(path)).graph.node]


def float_op_nodes(path: Path, kinds: Sequence[str]) -> list[str]:
    """Names of the nodes of the ONNX graph at `path` of the float_ops `kinds` ("depthwise", "add", "classifier").

    For onnxruntime; OpenVINO renames and fuses nodes on import, so `openvino_float_ops` looks in its own graph.
    """
    import onnx

    graph = onnx.load(str(path)).graph
    shapes = {tensor.name: list(tensor.dims) for tensor in graph.initializer}
    names = []
    for node in graph.node:
        if (node.op_type == "Add" and "add" in kinds) or (node.op_type == "Gemm" and "classifier" in kinds):
            names.append(node.name)
        elif node.op_type == "Conv" and "depthwise" in kinds:
            group = next((attribute.i for attribute in node.attribute if attribute.name == "group"), 1)
            weight = shapes.get(node.input[1], [])
            if group > 1 and len(weight) == 4 and weight[1] == 1:  # one input channel per group: depthwise
                names.append(node.name)
    return names


def openvino_float_ops(model: object, kinds: Sequence[str]) -> list[str]:
    """Names of the operations of an OpenVINO model of the float_ops `kinds`: depthwise GroupConvolutions (one
    input channel per group), Adds of two computed tensors (residual adds, not a conv's bias) and MatMuls."""
    names = []
    for op in model.get_ops():
        kind = op.get_type_name()
        if kind == "GroupConvolution" and "depthwise" in kinds:
            weight = op.input_value(1).get_partial_shape()  # (groups, out / groups, in / groups, kh, kw)
            if weight.rank.is_static and weight[2].is_static and weight[2].get_length() == 1:
                names.append(op.get_friendly_name())
        elif kind == "Add" and "add" in kinds:
            inputs = [op.input_value(i).get_node().get_type_name() for i in range(op.get_input_size())]
            if "Constant" not in inputs:
                names.append(op.get_friendly_name())
        elif kind == "MatMul" and "classifier" in kinds:
            names.append(op.get_friendly_name())
    return names


def _keep_float_nodes(names: Sequence[str], keep_float: Sequence[str]) -> list[str]:
    kept = [name for name in names if any(name == key or name.startswith(key) for key in keep_float)]
    missing = [key for key in keep_float if not any(name == key or name.startswith(key) for name in names)]
    if missing:
        raise ValueError(f"--keep-float {', '.join(missing)} matches no node of the exported graph (e.g. {names[0]})")
    return kept


def _quantize_onnxruntime(fp32: Path, images: np.ndarray, out: Path, config: QuantizeConfig) -> Path:
    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as err:
        raise ValueError("int8 on onnxruntime needs onnxruntime: pip install 'effnet[export]'") from err

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(images[i : i + 1] for i in range(len(images)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {"input": batch}

    prepared = fp32.with_name("prepared.onnx")
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    methods = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
    quantize_static(
        str(prepared),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,  # onnxruntime fuses QDQ pairs into QLinearConv; other runtimes read it too
        per_channel=config.per_channel,
        activation_type=QuantType.QUInt8,  # u8 activations x s8 weights: the fast VNNI / AVX2 kernels
        weight_type=QuantType.QInt8,
        calibrate_method=getattr(CalibrationMethod, methods[config.method]),
        nodes_to_exclude=_keep_float_nodes(_onnx_node_names(prepared), config.keep_float)
        + float_op_nodes(prepared, config.float_ops),
        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False, "CalibPercentile": 99.99},
    )
    return out


def _quantize_openvino(fp32: Path, images: np.ndarray, out: Path, config: QuantizeConfig) -> Path:
    try:
        import nncf
        import openvino as ov
    except ImportError as err:
        raise ValueError("int8 on OpenVINO needs NNCF and OpenVINO: pip install 'effnet[openvino]'") from err
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    model = ov.convert_model(str(fp32))
    names = [op.get_friendly_name() for op in model.get_ops()]
    overflow = OverflowFix.FIRST_LAYER if config.overflow_fix else OverflowFix.DISABLE
    ignored = _keep_float_nodes(names, config.keep_float) + openvino_float_ops(model, config.float_ops)
    scope = nncf.IgnoredScope(names=ignored) if ignored else None
    # NNCF draws progress bars on stdout; stderr keeps stdout clean for `--json`. Its INFO log lists every layer
    # it leaves unquantized (dozens of lines with float_ops): warnings only, for this call only.
    level = nncf.nncf_logger.level
    nncf.nncf_logger.setLevel(logging.WARNING)
    with contextlib.redirect_stdout(sys.stderr), contextlib.ExitStack() as restore:
        restore.callback(nncf.nncf_logger.setLevel, level)
        quantized = nncf.quantize(
            model,
            nncf.Dataset(list(images), lambda image: image[None]),
            subset_size=len(images),
            fast_bias_correction=not config.full_bias_correction,
            ignored_scope=scope,
            advanced_parameters=AdvancedQuantizationParameters(overflow_fix=overflow),
        )
        if "classifier" in config.float_ops:
            # The classifier computes in float (its pooled input is what int8 hurts) but reads int8 weights,
            # decompressed on the fly: 1.3 MB instead of 5 MB for 1280 x 1000, a quarter of a millisecond on Lite0.
            quantized = nncf.compress_weights(
                quantized,
                mode=nncf.CompressWeightsMode.INT8_ASYM,
                ignored_scope=nncf.IgnoredScope(types=["Convolution", "GroupConvolution"]),
            )
    ov.save_model(quantized, str(out.with_suffix(".xml")))
    return out.with_suffix(".xml")


def quantize_onnx(fp32: Path, images: np.ndarray, out: str | Path, config: QuantizeConfig) -> Path:
    """Calibrate the fp32 ONNX file on `images` (N, 3, H, W) and write the int8 model; returns the written path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    config = resolve_backend(config)
    quantize = _quantize_onnxruntime if config.backend == "onnxruntime" else _quantize_openvino
    return quantize(fp32, images, out, config)


def prepare_weights(model: nn.Module, images: np.ndarray, config: QuantizeConfig) -> nn.Module:
    """`model` as the quantizer should see it: with config.rounding "optimized", weights rounded for `images`.

    Layers that stay in float (config.float_ops) keep their weights as they are.
    """
    config = resolve_backend(config)
    if config.rounding != "optimized":
        return model.eval()
    from effnet.deploy.int8_rounding import round_weights

    return round_weights(model.eval(), images[: config.rounding_size], float_ops=config.float_ops)


def quantize_model(model: nn.Module, images: np.ndarray, out: str | Path, config: QuantizeConfig) -> Path:
    """Fold BN, round the weights (config.rounding), export at the size of `images`, calibrate and write int8."""
    out = Path(out)
    with staging_dir(out) as tmp:  # staged beside `out` and renamed, like export_int8
        fp32 = _export_fp32(prepare_weights(model, images, config), tmp, images.shape[-1])
        staged = quantize_onnx(fp32, images, tmp / out.name, config)
        _move_export(staged, out.parent / staged.name)
        return out.parent / staged.name


def _interleaved_ms(runners: Sequence[Callable[[np.ndarray], object]], x: np.ndarray, runs: int) -> list[float]:
    """Median milliseconds of each runner, timed one call of each per round so load hits them alike."""
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
    fp32_ms: float
    int8_ms: float
    fp32_top1: float | None = None  # accuracy on the photos' labels, when they have labels
    int8_top1: float | None = None


def photo_labels(paths: Sequence[Path], class_names: Sequence[str] | None, num_classes: int) -> np.ndarray | None:
    """Every photo's class index from its name, or None when some photo has none.

    A model with its own classes (fine-tuned): the photo's folder is one of them (an ImageFolder). An ImageNet-1k
    model: a WordNet id names the photo's folder or starts its file name (`n01440764/x.JPEG`,
    `n01440764_tench.JPEG`).
    """
    from effnet.weights.pretrained import imagenet_classes, imagenet_label

    if class_names is not None and tuple(class_names) != imagenet_classes():
        index = {name: i for i, name in enumerate(class_names)}
        labels = [index.get(Path(path).parent.name, index.get("/".join(Path(path).parts[-3:-1]))) for path in paths]
    elif num_classes == 1000:
        labels = [imagenet_label(path) for path in paths]
    else:
        return None
    return None if not labels or any(label is None for label in labels) else np.array(labels)


def compare_int8(
    fp32_path: Path,
    int8_path: Path,
    holdout: np.ndarray,
    config: QuantizeConfig,
    runs: int = 30,
    labels: np.ndarray | None = None,
) -> Int8Comparison:
    """Top-1 agreement (and accuracy on `labels`) of the int8 file against the fp32 ONNX file; latency of both."""
    from effnet.deploy.runtimes import predictor

    config = resolve_backend(config)
    fp32 = predictor(fp32_path, "onnxruntime", config.threads)
    int8 = predictor(int8_path, config.backend, config.threads)
    fp32_top = np.array([int(fp32(x[None]).argmax()) for x in holdout])
    int8_top = np.array([int(int8(x[None]).argmax()) for x in holdout])
    fp32_ms, int8_ms = _interleaved_ms([fp32, int8], holdout[:1], runs)
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
    out, config = Path(out), resolve_backend(config)
    cal_paths, held_paths = split_photos(calibration, holdout, config)
    cal_images = load_arrays(model, cal_paths, resolution)
    held_images = load_arrays(model, held_paths, resolution)
    with staging_dir(out) as tmp:  # beside `out`: the final renames stay on one filesystem, never a copy
        # The reference is the model as given; the quantizer gets its weights rounded for int8 (if asked).
        fp32 = _export_fp32(model.eval(), Path(tmp), cal_images.shape[-1])
        rounded = fp32
        if config.rounding == "optimized":
            rounded = _export_fp32(
                prepare_weights(model, cal_images, config), Path(tmp) / "rounded", cal_images.shape[-1]
            )
        staged = quantize_onnx(rounded, cal_images, Path(tmp) / out.name, config)
        labels = photo_labels(held_paths, getattr(model, "class_names", None), int(getattr(model, "num_classes", 0)))
        result = compare_int8(fp32, staged, held_images, config, config.timing_runs, labels)
        accepted = result.agreement >= config.min_agreement
        final = out.with_suffix(staged.suffix)
        report = Int8Report(
            str(final), config.backend, config.method, len(cal_paths), len(held_paths), result.agreement,
            result.fp32_ms, result.int8_ms, config.min_agreement, accepted, accepted or force, config.rounding,
            config.float_ops, result.fp32_top1, result.int8_top1,
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
