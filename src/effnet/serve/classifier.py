"""The model behind the server: a PyTorch model (CAM included), an ONNX graph on onnxruntime or an OpenVINO IR on
OpenVINO (int8 exports too), loaded with the library's own loaders and carrying its preprocessing and class names."""

from __future__ import annotations

import importlib.util
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from effnet.analysis.cam import image_cam
from effnet.deploy.export import fold_batchnorm, onnx_session
from effnet.deploy.runtimes import export_deploy_graph, read_exported_metadata, runtime_available
from effnet.preprocess import Preprocess, preprocess_transform
from effnet.serve.config import SERVE_RUNTIMES
from effnet.weights.source import ModelSource, load_source


class CamUnavailableError(ValueError):
    """Raised when the served model cannot draw class activation maps (an ONNX graph has no feature maps)."""


class Classifier:
    """A loaded model: preprocessing, logits for a batch, class names and (PyTorch only) CAM."""

    runtime = "none"

    def __init__(self, name: str, preprocess: Preprocess, num_classes: int, class_names: Sequence[str] | None):
        self.name = name
        self.preprocess = preprocess
        self.num_classes = num_classes
        self.class_names = tuple(class_names) if class_names else None
        self._transform = preprocess_transform(preprocess)

    @property
    def has_cam(self) -> bool:
        """Whether `cam` works for this model."""
        return False

    def prepare(self, image: Image.Image) -> torch.Tensor:
        """(3, H, W) normalized input tensor of one RGB image, with the model's eval preprocessing."""
        return self._transform(image)

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """(N, classes) logits of a preprocessed (N, 3, H, W) batch."""
        raise NotImplementedError

    def cam(self, image: Image.Image) -> Any:
        """The CAM of the image's top class (effnet.analysis.cam.CamResult)."""
        raise CamUnavailableError(f"CAM needs a PyTorch model; {self.name} is served by {self.runtime}")

    def class_name(self, index: int) -> str:
        """Readable name of a class index (the index itself when no names are known)."""
        names = self.class_names
        return names[index] if names is not None and index < len(names) else str(index)


class TorchClassifier(Classifier):
    """An effnet model in eval mode, BatchNorm folded into the convolutions and weights in channels-last layout.

    Both keep the outputs and cut the CPU time: on a 2-core EPYC, one thread, Lite0 in channels-last took ~11 ms
    per image in batches of 2-4 against ~12 ms alone and ~15 ms in batches of 8 (the activations of big batches
    no longer fit the caches; `benchmarks/serve_costs.py`), which is why batches of 4 are the default.
    """

    runtime = "pytorch"

    def __init__(self, model: torch.nn.Module, class_names: Sequence[str] | None):
        super().__init__(model.spec.name, model.preprocess, model.num_classes, class_names)
        self.model = fold_batchnorm(model.eval()).to(memory_format=torch.channels_last)

    @property
    def has_cam(self) -> bool:
        """CAM needs the linear classifier, which a headless model (num_classes 0) lacks."""
        return self.num_classes > 0

    @torch.inference_mode()
    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """(N, classes) logits of a preprocessed batch."""
        return self.model(batch.contiguous(memory_format=torch.channels_last))

    def cam(self, image: Image.Image) -> Any:
        """CAM of the top class, at the image's own size."""
        if not self.has_cam:
            raise CamUnavailableError(f"{self.name} has no classifier, so there is no class to explain")
        return image_cam(self.model, image)


class OnnxClassifier(Classifier):
    """An exported ONNX graph (input (N, 3, H, W) -> logits) run by onnxruntime on the CPU."""

    runtime = "onnxruntime"

    def __init__(
        self, path: Path, preprocess: Preprocess, class_names: Sequence[str] | None, threads: int, name: str = ""
    ):
        self.session = onnx_session(path, threads)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        self.input_name = inputs[0].name
        height, width = inputs[0].shape[2:4]
        if isinstance(height, int) and (height, width) != (preprocess.input_size, preprocess.input_size):
            raise ValueError(
                f"{path} takes {height}x{width} inputs but the preprocessing gives {preprocess.input_size}; "
                f"pass --input-size {height} or the --model the graph was exported from"
            )
        num_classes = outputs[0].shape[1]
        if not isinstance(num_classes, int):
            raise ValueError(f"{path}: the output's class axis has no fixed size ({num_classes!r})")
        super().__init__(name or path.stem, preprocess, num_classes, class_names)

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """(N, classes) logits from onnxruntime."""
        return _run_session(self.session, self.input_name, batch)


class OpenVinoClassifier(Classifier):
    """An OpenVINO IR (.xml + .bin, e.g. `effnet export --int8`) compiled for the CPU; each model thread gets its
    own infer request, since one request must not run two batches at once."""

    runtime = "openvino"

    def __init__(
        self,
        path: Path,
        preprocess: Preprocess,
        class_names: Sequence[str] | None,
        threads: int,
        streams: int = 1,
        name: str = "",
    ) -> None:
        import openvino as ov

        # f32 keeps float layers as exported (OpenVINO would pick bf16 on CPUs that have it); int8 layers stay int8.
        config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": streams, "INFERENCE_PRECISION_HINT": "f32"}
        config["INFERENCE_NUM_THREADS"] = threads
        model = ov.Core().read_model(str(path))
        dims, classes = model.input(0).get_partial_shape(), model.output(0).get_partial_shape()
        size = preprocess.input_size
        if dims[2].is_static and (dims[2].get_length(), dims[3].get_length()) != (size, size):
            height, width = dims[2].get_length(), dims[3].get_length()
            raise ValueError(
                f"{path} takes {height}x{width} inputs but the preprocessing gives {size}; pass --input-size {height}"
            )
        if classes.rank.get_length() != 2 or not classes[1].is_static:
            raise ValueError(f"{path}: the output is not (batch, classes) with a fixed class count ({classes})")
        self.compiled = ov.Core().compile_model(model, "CPU", config)
        self._local = threading.local()
        super().__init__(name or _exported_name(path, None), preprocess, classes[1].get_length(), class_names)

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """(N, classes) logits from OpenVINO."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        request.infer([np.ascontiguousarray(batch.numpy(), dtype=np.float32)])
        return torch.from_numpy(request.get_output_tensor(0).data.copy())


def _exported_name(path: Path, architecture: str | None) -> str:
    """The name a graph is served under: its recorded architecture, else the file name without suffixes."""
    return architecture or path.name.split(".")[0]


def _run_session(session: Any, input_name: str, batch: torch.Tensor) -> torch.Tensor:
    array = np.ascontiguousarray(batch.numpy(), dtype=np.float32)  # no copy for a stacked float32 batch
    return torch.from_numpy(session.run(None, {input_name: array})[0])


class ExportedClassifier(Classifier):
    """An effnet model whose forward pass runs on onnxruntime: exported at startup (BatchNorm folded, input size
    fixed), beside the PyTorch model (a `TorchClassifier`, kept for CAM).

    On the 2-core EPYC, one thread, batch 1, Lite0's forward pass takes well under half the time of the folded
    channels-last PyTorch model (`benchmarks/serve_costs.py`), and the export takes about a second at startup.
    """

    runtime = "onnxruntime"

    def __init__(self, model: torch.nn.Module, class_names: Sequence[str] | None, threads: int):
        self.eager = TorchClassifier(model, class_names)  # folds the BatchNorms, once for both runtimes
        super().__init__(self.eager.name, self.eager.preprocess, self.eager.num_classes, class_names)
        size = self.preprocess.input_size
        example = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
        with tempfile.TemporaryDirectory(prefix="effnet-serve-") as folder:
            contiguous = self.model.to(memory_format=torch.contiguous_format)
            path = export_deploy_graph(contiguous, Path(folder) / "model.onnx", example)
            self.session = onnx_session(path, threads)  # reads the file: the folder can go
        self.eager.model = self.model.to(memory_format=torch.channels_last)
        self.input_name = self.session.get_inputs()[0].name
        self._check(example)

    @property
    def model(self) -> torch.nn.Module:
        """The folded PyTorch model the graph was exported from (CAM runs on it)."""
        return self.eager.model

    @property
    def has_cam(self) -> bool:
        """As the PyTorch model: CAM needs its linear classifier."""
        return self.eager.has_cam

    def cam(self, image: Image.Image) -> Any:
        """CAM of the top class, drawn by the PyTorch model."""
        return self.eager.cam(image)

    def _check(self, example: torch.Tensor) -> None:
        """The export must compute what the model computes; refuse to serve it otherwise."""
        expected = self.eager.logits(example)
        difference = (self.logits(example) - expected).abs().max().item()
        if not difference <= 1e-3 * max(1.0, expected.abs().max().item()):
            raise ValueError(
                f"{self.name}'s onnxruntime export differs from the PyTorch model by {difference:.2e}; "
                "serve it with --runtime pytorch"
            )

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """(N, classes) logits from onnxruntime."""
        return _run_session(self.session, self.input_name, batch)


def _check_exported_file(path: Path) -> None:
    """One clear line for a graph file that is missing, a folder, or an IR without its .bin."""
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not an exported graph; pass the .onnx or .xml file itself")
    if not path.is_file():
        raise ValueError(f"{'ONNX' if path.suffix.lower() == '.onnx' else 'OpenVINO'} file {path} does not exist")
    if path.suffix.lower() == ".xml" and not path.with_suffix(".bin").is_file():
        raise ValueError(f"{path.with_suffix('.bin')} is missing: an OpenVINO model is an .xml/.bin pair, keep both")


def _load_exported(source: ModelSource, threads: int, streams: int) -> Classifier:
    """An ONNX graph (onnxruntime) or OpenVINO IR (OpenVINO), int8 ones included, with the preprocessing, class
    names and architecture its export recorded (`effnet.deploy.runtimes.read_exported_metadata`)."""
    assert source.weights is not None
    path = Path(source.weights)
    _check_exported_file(path)
    runtime = "onnxruntime" if source.is_onnx else "openvino"
    if not runtime_available(runtime):
        extra = "export" if source.is_onnx else "openvino"
        raise ValueError(f"serving {path} needs {runtime}: pip install 'effnet[{extra}]'")
    metadata = read_exported_metadata(path)
    preprocess = source.apply_preprocess(metadata.preprocess or source.fallback_preprocess())
    name = _exported_name(path, metadata.architecture)
    classifier: Classifier
    if source.is_onnx:
        classifier = OnnxClassifier(path, preprocess, None, threads, name)
    else:
        classifier = OpenVinoClassifier(path, preprocess, None, threads, streams, name)
    names = source.class_names(classifier.num_classes, metadata.class_names)
    classifier.class_names = tuple(names) if names else None
    return classifier


def resolve_runtime(runtime: str, source: ModelSource) -> str:
    """ "auto" made concrete: onnxruntime when it is installed (or the file is ONNX), else pytorch."""
    if runtime not in SERVE_RUNTIMES:
        raise ValueError(f"runtime must be one of {SERVE_RUNTIMES}, got {runtime!r}")
    if source.is_exported:
        wanted = "onnxruntime" if source.is_onnx else "openvino"
        if runtime not in ("auto", wanted):
            kind = "an ONNX graph" if source.is_onnx else "an OpenVINO IR"
            raise ValueError(f"{source.weights} is {kind}: it runs on {wanted}; drop --runtime {runtime}")
        return wanted
    has_ort = importlib.util.find_spec("onnxruntime") is not None
    if runtime == "onnxruntime" and not has_ort:
        raise ValueError("--runtime onnxruntime needs onnxruntime: pip install 'effnet[export]' (or --runtime pytorch)")
    return runtime if runtime != "auto" else ("onnxruntime" if has_ort else "pytorch")


def load_classifier(source: ModelSource, threads: int = 1, runtime: str = "auto", streams: int = 1) -> Classifier:
    """Load what `source` names, ready to serve on `runtime`; user mistakes raise ValueError with the fix."""
    runtime = resolve_runtime(runtime, source)
    if source.is_exported:
        return _load_exported(source, threads, streams)
    model = load_source(source)  # the one resolution of --model / --pretrained / --weights (preprocessing too)
    names = source.class_names(model.num_classes, model.class_names)
    if runtime == "onnxruntime":
        return ExportedClassifier(model, names, threads)
    return TorchClassifier(model, names)
