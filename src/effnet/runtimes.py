"""Run an exported ONNX file on onnxruntime or OpenVINO: one callable `numpy batch -> numpy logits` per runtime.

Both are optional: onnxruntime comes with the `export` extra, OpenVINO with the `openvino` extra. OpenVINO's CPU
plugin computes in bf16 by default on CPUs with AVX-512 BF16 or AMX; that changes results (about 2% of top-1
predictions of Lite0 move), so effnet asks for f32 unless told otherwise.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np

RUNTIMES = ("onnxruntime", "openvino")
Predictor = Callable[[np.ndarray], np.ndarray]


def runtime_available(runtime: str) -> bool:
    """Whether the Python package of `runtime` is installed."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    return importlib.util.find_spec(runtime) is not None


def onnxruntime_predictor(path: str | Path, threads: int = 0) -> Predictor:
    """onnxruntime CPU session on `path` with every graph optimization; threads=0 means all cores."""
    from effnet.export import onnx_session

    session = onnx_session(path, threads)
    input_name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {input_name: batch})[0]


def openvino_predictor(path: str | Path, threads: int = 0, precision: str = "f32") -> Predictor:
    """OpenVINO CPU model compiled for latency from an ONNX (or OpenVINO IR) file; threads=0 means all cores."""
    if not runtime_available("openvino"):
        raise ValueError("OpenVINO is not installed; run: pip install 'effnet[openvino]'")
    import openvino as ov

    config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": precision}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()

    def predict(batch: np.ndarray) -> np.ndarray:
        request.infer([batch])
        return request.get_output_tensor(0).data.copy()

    return predict


def predictor(path: str | Path, runtime: str = "onnxruntime", threads: int = 0) -> Predictor:
    """A `numpy batch -> numpy logits` callable for `path` on `runtime`."""
    if not runtime_available(runtime):
        extra = "export" if runtime == "onnxruntime" else "openvino"
        raise ValueError(f"{runtime} is not installed; run: pip install 'effnet[{extra}]'")
    if runtime == "onnxruntime":
        return onnxruntime_predictor(path, threads)
    return openvino_predictor(path, threads)


def runtime_versions() -> str:
    """ "torch X, onnxruntime Y, openvino Z" for the runtimes installed."""
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for package in ("torch", *RUNTIMES):
        try:
            parts.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            continue
    return ", ".join(parts)


def fix_input_size(path: str | Path, height: int, width: int) -> Path:
    """Rewrite an ONNX file in place with its input height and width fixed (the batch stays dynamic).

    effnet exports any size; a deployment at one size lets onnxruntime / OpenVINO fold the TF "SAME" padding
    arithmetic into constants and plan buffers once, and lets the int8 quantizer see static shapes.
    """
    import onnx

    model = onnx.load(str(path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value, dims[3].dim_value = height, width  # setting dim_value clears the symbolic dim_param
    onnx.save(onnx.shape_inference.infer_shapes(model), str(path))
    return Path(path)
