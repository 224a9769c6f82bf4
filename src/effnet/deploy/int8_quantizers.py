"""The two int8 quantizers behind `effnet.deploy.quantize`: onnxruntime's QDQ static quantization and NNCF on
OpenVINO, and how each finds the operations an int8 export keeps in float (QuantizeConfig.float_ops, keep_float).

Both take a fixed-size fp32 ONNX graph (BN already folded) and preprocessed calibration photos, and write one file
(an .onnx, or an OpenVINO .xml/.bin pair). The config they get is resolved (no "auto" left): see
`effnet.deploy.quantize.resolve_backend`.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from effnet.deploy.quantize import QuantizeConfig


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


def quantize_graph(fp32: Path, images: np.ndarray, out: Path, config: QuantizeConfig) -> Path:
    """Calibrate the fp32 ONNX file on `images` (N, 3, H, W) and write the int8 model; returns the written path
    (`out`, or its .xml for OpenVINO). `config` is resolved: its backend names one quantizer."""
    assert config.backend in ("onnxruntime", "openvino"), "resolve the config once, before quantizing"
    quantize = _quantize_onnxruntime if config.backend == "onnxruntime" else _quantize_openvino
    return quantize(fp32, images, out, config)
