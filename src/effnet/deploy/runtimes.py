"""Run an exported ONNX file on onnxruntime or OpenVINO: one callable `numpy batch -> numpy logits` per runtime.

Both are optional: onnxruntime comes with the `export` extra, OpenVINO with the `openvino` extra. OpenVINO's CPU
plugin computes in bf16 by default on CPUs with AVX-512 BF16 or AMX; that changes results (about 2% of top-1
predictions of Lite0 move), so effnet asks for f32 unless told otherwise.
"""

from __future__ import annotations

import copy
import importlib.util
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from effnet.deploy.export import (
    count_batchnorms,
    export_onnx,
    fold_batchnorm,
    onnx_session,
    read_onnx_metadata,
    recorded_metadata,
)
from effnet.models.catalog import resolve_spec
from effnet.models.layers.padding import Conv2dSame, same_padding
from effnet.preprocess import default_preprocess

EXPORTED_RUNTIMES = ("onnxruntime", "openvino")
Predictor = Callable[[np.ndarray], np.ndarray]


def runtime_available(runtime: str) -> bool:
    """Whether the Python package of `runtime` is installed."""
    if runtime not in EXPORTED_RUNTIMES:
        raise ValueError(f"runtime must be one of {EXPORTED_RUNTIMES}, got {runtime!r}")
    return importlib.util.find_spec(runtime) is not None


def onnxruntime_predictor(path: str | Path, threads: int = 0) -> Predictor:
    """A batch -> logits function over `effnet.deploy.export.onnx_session` (threads=0 means all cores)."""
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


EXPORTED_SUFFIXES = (".onnx", ".xml")  # what `effnet export` writes: ONNX, and OpenVINO IR (an .xml/.bin pair)


def is_exported(path: str | Path | None) -> bool:
    """Whether `path` names an exported graph (ONNX or OpenVINO IR) rather than a PyTorch weight file."""
    return path is not None and Path(path).suffix.lower() in EXPORTED_SUFFIXES


def read_exported_metadata(path: str | Path) -> Any:
    """The preprocessing, class names and architecture effnet recorded in an exported file (`OnnxMetadata`).

    OpenVINO's converter keeps an ONNX file's metadata_props in the IR's rt_info under "framework", so an int8
    .xml made from effnet's ONNX export carries the same three entries.
    """
    if Path(path).suffix.lower() == ".onnx":
        return read_onnx_metadata(path)
    import openvino as ov

    model = ov.Core().read_model(str(path))
    props = {
        key: model.get_rt_info(["framework", key]).astype(str)
        for key in ("preprocess", "class_names", "architecture")
        if model.has_rt_info(["framework", key])
    }
    return recorded_metadata(props, path)


class ExportedModel(nn.Module):
    """An exported effnet file behind an effnet model's interface: `preprocess`, `class_names`, `num_classes`
    and a forward pass (N, 3, H, W) -> logits that runs on onnxruntime or OpenVINO, so `predict_files`,
    `evaluate` and the server take it as they take a PyTorch model. It has no feature maps (no CAM)."""

    def __init__(
        self,
        path: Path,
        runtime: str,
        run: Predictor,
        num_classes: int,
        input_hw: tuple[int, int] | None,
        metadata: Any,
        preprocess: Any,
    ) -> None:
        super().__init__()
        self.path, self.runtime, self._run = path, runtime, run
        self.num_classes, self.input_hw = num_classes, input_hw
        self.architecture: str = metadata.architecture or path.stem
        self.class_names = metadata.class_names
        self.preprocess = preprocess

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """(N, classes) float32 logits, on the device of `batch`."""
        if self.input_hw is not None and tuple(batch.shape[-2:]) != self.input_hw:
            height, width = self.input_hw
            raise ValueError(
                f"{self.path} was exported for {height}x{width} inputs, got "
                f"{batch.shape[-2]}x{batch.shape[-1]}: drop the input/image size override"
            )
        array = np.ascontiguousarray(batch.detach().float().cpu().numpy())
        return torch.from_numpy(np.asarray(self._run(array), dtype=np.float32)).to(batch.device)


def _graph_shapes(path: Path, runtime: str) -> tuple[int | None, tuple[int, int] | None]:
    """(number of classes, fixed (height, width) of the input or None when dynamic) of an exported graph."""
    if runtime == "onnxruntime":
        session = onnx_session(path, 1)
        dims, classes = session.get_inputs()[0].shape, session.get_outputs()[0].shape[1]
        fixed = all(isinstance(d, int) for d in dims[2:4])
        return (classes if isinstance(classes, int) else None), ((dims[2], dims[3]) if fixed else None)
    import openvino as ov

    model = ov.Core().read_model(str(path))
    dims, classes = model.input(0).get_partial_shape(), model.output(0).get_partial_shape()[1]
    fixed = dims[2].is_static and dims[3].is_static
    return (classes.get_length() if classes.is_static else None), (
        (dims[2].get_length(), dims[3].get_length()) if fixed else None
    )


def open_exported(path: str | Path, model: str | None = None, threads: int = 0) -> ExportedModel:
    """Open an ONNX (onnxruntime, else OpenVINO) or OpenVINO IR file as a classifier with its recorded
    preprocessing and class names; `model` (a registry name or spec) gives the preprocessing of files that
    record none."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} does not exist")
    if not is_exported(path):
        raise ValueError(f"{path} is not an exported graph (.onnx or OpenVINO .xml)")
    onnx_file = path.suffix.lower() == ".onnx"
    runtime = "onnxruntime" if onnx_file and runtime_available("onnxruntime") else "openvino"
    if not runtime_available(runtime):
        extra = "export" if onnx_file else "openvino"
        raise ValueError(f"reading {path} needs {runtime}: pip install 'effnet[{extra}]'")
    if not onnx_file and not path.with_suffix(".bin").is_file():
        raise ValueError(f"{path.with_suffix('.bin')} is missing: an OpenVINO model is an .xml/.bin pair, keep both")
    try:
        return _open_exported(path, runtime, model, threads)
    except (ValueError, MemoryError):
        raise
    except Exception as err:  # noqa: BLE001 - the runtime refused the file: truncated, garbage, bad external data
        reason = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise ValueError(
            f"{path} cannot be read by {runtime} ({reason}); export it again with `effnet export`"
        ) from None


def _open_exported(path: Path, runtime: str, model: str | None, threads: int) -> ExportedModel:
    metadata = read_exported_metadata(path)
    preprocess = metadata.preprocess
    if preprocess is None:
        if model is None:
            raise ValueError(
                f"{path} records no preprocessing (it was not written by `effnet export`): pass "
                "--model NAME, the architecture it was exported from, to use its preprocessing"
            )
        preprocess = default_preprocess(resolve_spec(model))
    num_classes, input_hw = _graph_shapes(path, runtime)
    if num_classes is None:
        raise ValueError(f"{path}: the output's class axis has no fixed size; is it a classifier?")
    if metadata.class_names is not None and len(metadata.class_names) != num_classes:
        raise ValueError(
            f"{path}: metadata 'class_names' lists {len(metadata.class_names)} names for the "
            f"{num_classes} classes of its graph; export it again with `effnet export`"
        )
    run = onnxruntime_predictor(path, threads) if runtime == "onnxruntime" else openvino_predictor(path, threads)
    return ExportedModel(path, runtime, run, num_classes, input_hw, metadata, preprocess)


def runtime_versions() -> str:
    """ "torch X, onnxruntime Y, openvino Z" for the runtimes installed."""
    parts = []
    for package in ("torch", *EXPORTED_RUNTIMES):
        try:
            parts.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            continue
    return ", ".join(parts)


def fix_input_size(path: str | Path, height: int, width: int) -> Path:
    """Rewrite an ONNX file in place for deployment at one input size (the batch stays dynamic).

    effnet exports any size; fixing height and width lets runtimes plan buffers once and the int8 quantizer see
    static shapes. The squeeze-excite means (ReduceMean over H, W) become GlobalAveragePool, the same function:
    onnxruntime's blocked NCHWc layout runs GlobalAveragePool in place but must reorder the tensor around every
    ReduceMean (16 extra reorders in B0).
    """
    import onnx

    model = onnx.load(str(path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value, dims[3].dim_value = height, width  # setting dim_value clears the symbolic dim_param
    for node in model.graph.node:
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        spatial_mean = list(attributes.get("axes", [])) in ([2, 3], [-2, -1]) and attributes.get("keepdims", 1) == 1
        if node.op_type == "ReduceMean" and len(node.input) == 1 and spatial_mean:
            node.op_type = "GlobalAveragePool"
            del node.attribute[:]
    onnx.save(onnx.shape_inference.infer_shapes(model), str(path))
    if runtime_available("onnxruntime"):
        _fuse_pads_into_convs(Path(path))
    return Path(path)


def _foldable_pads(pad: Any, users: list, constants: dict[str, np.ndarray]) -> np.ndarray | None:
    """The 8 pads of an ONNX Pad node that a Conv can take over: constant zero padding of the spatial axes only,
    read by that one Conv; None for any other Pad."""
    pads = constants.get(pad.input[1]) if len(pad.input) > 1 else None
    value = constants.get(pad.input[2]) if len(pad.input) > 2 and pad.input[2] else np.zeros(1)
    mode = [a.s for a in pad.attribute if a.name == "mode"]
    if (
        len(users) != 1
        or users[0].op_type != "Conv"
        or pads is None
        or len(pads) != 8
        or mode not in ([], [b"constant"])
    ):
        return None
    if pads[[0, 1, 4, 5]].any() or np.asarray(value).any():
        return None  # only spatial zero padding folds into a conv
    return pads


def _fuse_pads_into_convs(path: Path) -> None:
    """Fold constant zero Pads (frozen TF "SAME" padding) into the pads attribute of the Conv they feed.

    onnxruntime's portable basic optimizations first fold the pad arithmetic into constants; an ONNX Conv
    takes asymmetric pads, which PyTorch's Conv2d cannot, so the Pad op (and the layout reorders a blocked
    NCHWc graph needs around it) disappears.
    """
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # hardware-independent
    options.optimized_model_filepath = str(path)
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    model = onnx.load(str(path))
    constants = {init.name: onnx.numpy_helper.to_array(init) for init in model.graph.initializer}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    fused = []
    for pad in [node for node in model.graph.node if node.op_type == "Pad"]:
        users = consumers.get(pad.output[0], [])
        pads = _foldable_pads(pad, users, constants)
        if pads is None:
            continue
        conv = users[0]
        current = [list(a.ints) for a in conv.attribute if a.name == "pads"] or [[0, 0, 0, 0]]
        merged = [int(p) + int(q) for p, q in zip(current[0], (pads[2], pads[3], pads[6], pads[7]), strict=True)]
        kept = [a for a in conv.attribute if a.name not in ("pads", "auto_pad")]
        del conv.attribute[:]
        conv.attribute.extend([*kept, onnx.helper.make_attribute("pads", merged)])
        conv.input[0] = pad.input[0]
        fused.append(pad)
    for pad in fused:
        model.graph.node.remove(pad)
    used = {name for node in model.graph.node for name in node.input}
    unused = [init for init in model.graph.initializer if init.name not in used]
    for init in unused:  # the pads and pad values of the removed Pads
        model.graph.initializer.remove(init)
    onnx.save(model, str(path))


def export_deploy_graph(model: nn.Module, path: str | Path, example: torch.Tensor) -> Path:
    """An effnet model as a fixed-size ONNX deployment graph at `path`: BatchNorm folded, TF "SAME" pads frozen
    for `example`'s size (fused into the convs by onnxruntime) and the input size fixed to it."""
    # A model folded already (int8 folds once, effnet.deploy.quantize) goes straight to the padding freeze's copy.
    deployed = freeze_same_padding(fold_batchnorm(model) if count_batchnorms(model) else model, example)
    return fix_input_size(export_onnx(deployed, path, example), example.shape[-2], example.shape[-1])


def freeze_same_padding(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """A copy of `model` whose TF "SAME" convs pad by constants computed for `example`'s size.

    The run-time size arithmetic that lets an export pad right at any size becomes one constant Pad per strided
    conv, which onnxruntime then fuses into the conv (its PadFusion): the graph a fixed-size deployment wants.
    """
    frozen = copy.deepcopy(model).eval()
    sizes: dict[nn.Module, tuple[int, int]] = {}
    hooks = [
        module.register_forward_pre_hook(lambda m, args: sizes.__setitem__(m, tuple(args[0].shape[-2:])))
        for module in frozen.modules()
        if isinstance(module, Conv2dSame) and module.needs_padding
    ]
    with torch.no_grad():
        frozen(example)
    for hook in hooks:
        hook.remove()
    for conv, (height, width) in sizes.items():
        top, bottom = same_padding(height, conv.kernel_size[0], conv.stride[0], conv.dilation[0])
        left, right = same_padding(width, conv.kernel_size[1], conv.stride[1], conv.dilation[1])
        pads = (left, right, top, bottom)
        conv.forward = lambda x, conv=conv, pads=pads: F.conv2d(  # type: ignore[method-assign]
            F.pad(x, pads), conv.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups
        )
    return frozen
