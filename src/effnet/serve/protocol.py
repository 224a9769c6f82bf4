"""The Open Inference Protocol (KServe v2) over HTTP/REST: health, metadata and inference, around the same model
and batcher as effnet's own /predict.

Inputs: "image", BYTES, shape [N], each element the base64 of an image file (decoded and preprocessed as /predict
does); or "input", FP32, shape [N, 3, H, W], tensors already preprocessed. Outputs: "logits" and "probabilities",
FP32, shape [N, classes]. Errors answer {"error": "..."} with a 4xx status, as the protocol asks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from effnet import __version__
from effnet.serve.schemas import (
    InferenceRequest,
    InferenceResponse,
    Liveness,
    ModelMetadata,
    ModelReadiness,
    ProtocolErrorBody,
    Readiness,
    RequestInput,
    ServerMetadata,
    TensorInfo,
)
from effnet.serve.uploads import UploadError, _first_error, decode_base64, decode_within

if TYPE_CHECKING:
    from effnet.serve.app import Endpoints

VERSION = "1"  # one model, one version: the protocol's optional version paths accept only this
IMAGE_INPUT, TENSOR_INPUT = "image", "input"
OUTPUTS = ("logits", "probabilities")
PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "openvino": "openvino_ir", "pytorch": "pytorch_effnet"}


class ProtocolError(Exception):
    """A refused v2 request: answered {"error": message} with `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def input_tensors(endpoints: Endpoints) -> list[TensorInfo]:
    """The two ways to send images: encoded files (BYTES) or preprocessed tensors (FP32)."""
    size = endpoints.classifier.preprocess.input_size
    return [
        TensorInfo(name=IMAGE_INPUT, datatype="BYTES", shape=[-1]),
        TensorInfo(name=TENSOR_INPUT, datatype="FP32", shape=[-1, 3, size, size]),
    ]


def output_tensors(endpoints: Endpoints) -> list[TensorInfo]:
    """Logits and their softmax, one row per image."""
    classes = endpoints.classifier.num_classes
    return [TensorInfo(name=name, datatype="FP32", shape=[-1, classes]) for name in OUTPUTS]


def _parse(body: bytes) -> InferenceRequest:
    try:
        return InferenceRequest.model_validate_json(body)
    except ValidationError as err:
        raise ProtocolError(400, f"bad inference request ({_first_error(err)})") from err


def _images(endpoints: Endpoints, tensor: RequestInput) -> list[torch.Tensor]:
    """Preprocessed images of a BYTES input whose elements are base64 image files."""
    count = int(np.prod(tensor.shape)) if tensor.shape else 0
    if count != len(tensor.data) or count == 0:
        raise ProtocolError(
            400, f"input {tensor.name!r}: shape {tensor.shape} does not match {len(tensor.data)} elements"
        )
    if count > endpoints.config.max_images:
        raise ProtocolError(400, f"{count} images, over the limit of {endpoints.config.max_images} per request")
    limit, prepared = endpoints.config.max_pixels, []
    for number, element in enumerate(tensor.data):
        label = f"{tensor.name}[{number}]"
        if not isinstance(element, str):
            raise ProtocolError(400, f"{label}: BYTES elements are base64 strings of image files")
        data = decode_base64(element, label)
        prepared.append(decode_within(endpoints.decoding, data, label, limit, endpoints.classifier.prepare))
    return prepared


def _tensors(endpoints: Endpoints, tensor: RequestInput) -> list[torch.Tensor]:
    """The rows of an FP32 [N, 3, H, W] input, checked against the model's input size."""
    size = endpoints.classifier.preprocess.input_size
    shape = tensor.shape
    if len(shape) != 4 or shape[1:] != [3, size, size] or shape[0] < 1:
        raise ProtocolError(400, f"input {tensor.name!r}: shape {shape}, expected [N, 3, {size}, {size}]")
    if shape[0] > endpoints.config.max_images:
        raise ProtocolError(400, f"{shape[0]} images, over the limit of {endpoints.config.max_images} per request")
    try:
        with np.errstate(over="ignore"):  # 1e39 overflows float32 to inf: refused below, not logged as a warning
            array = np.asarray(tensor.data, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise ProtocolError(400, f"input {tensor.name!r}: FP32 data must be numbers ({err})") from err
    if not np.isfinite(array).all():  # NaN in, NaN out: answered as nulls with status 200 before
        raise ProtocolError(400, f"input {tensor.name!r}: FP32 data must be finite float32 numbers (NaN, inf, 1e39)")
    if array.size != int(np.prod(shape)):
        raise ProtocolError(400, f"input {tensor.name!r}: {array.size} values for shape {shape}")
    return list(torch.from_numpy(array.reshape(shape)))


def _prepare(endpoints: Endpoints, body: bytes) -> tuple[InferenceRequest, list[torch.Tensor]]:
    """Parse, check and preprocess a request, on a pool thread (JSON parsing and decoding are CPU work)."""
    request = _parse(body)
    if len(request.inputs) != 1:
        raise ProtocolError(400, f"send one input ({IMAGE_INPUT!r} or {TENSOR_INPUT!r}), got {len(request.inputs)}")
    tensor = request.inputs[0]
    kinds = {IMAGE_INPUT: "BYTES", TENSOR_INPUT: "FP32"}
    if kinds.get(tensor.name) != tensor.datatype:
        raise ProtocolError(
            400, f"input {tensor.name!r} {tensor.datatype}: send {IMAGE_INPUT!r} as BYTES or {TENSOR_INPUT!r} as FP32"
        )
    try:
        return request, (_images if tensor.name == IMAGE_INPUT else _tensors)(endpoints, tensor)
    except UploadError as err:
        raise ProtocolError(err.status, str(err)) from err


class ProtocolEndpoints:
    """The v2 handlers of one app, sharing its model, batcher and readiness."""

    def __init__(self, endpoints: Endpoints) -> None:
        self.endpoints = endpoints

    def _check_model(self, name: str, version: str | None = None) -> None:
        served = self.endpoints.classifier.name
        if name != served:
            raise ProtocolError(404, f"model {name!r} is not served here; this server serves {served!r}")
        if version is not None and version != VERSION:
            raise ProtocolError(404, f"model {name!r} has version {VERSION!r} only, not {version!r}")

    async def server_metadata(self) -> ServerMetadata:
        """The server's name, version and protocol extensions (none)."""
        return ServerMetadata(name="effnet", version=__version__, extensions=[])

    async def live(self) -> Liveness:
        """Liveness: the process answers (Kubernetes livenessProbe)."""
        return Liveness(live=True)

    async def ready(self) -> JSONResponse:
        """Readiness: the model is loaded and warmed up (Kubernetes readinessProbe); 503 until then."""
        ready = self.endpoints.ready
        return JSONResponse(Readiness(ready=ready).model_dump(), status_code=200 if ready else 503)

    async def model_ready(self, name: str, version: str | None = None) -> JSONResponse:
        """Readiness of the named model."""
        self._check_model(name, version)
        ready = self.endpoints.ready
        return JSONResponse(ModelReadiness(name=name, ready=ready).model_dump(), status_code=200 if ready else 503)

    async def model_metadata(self, name: str, version: str | None = None) -> ModelMetadata:
        """Inputs, outputs, platform and versions of the named model."""
        self._check_model(name, version)
        endpoints = self.endpoints
        return ModelMetadata(
            name=name,
            versions=[VERSION],
            platform=PLATFORMS.get(endpoints.classifier.runtime, endpoints.classifier.runtime),
            inputs=input_tensors(endpoints),
            outputs=output_tensors(endpoints),
        )

    async def infer(self, request: Request, name: str, version: str | None = None) -> InferenceResponse:
        """Logits and probabilities for images sent as base64 BYTES or as preprocessed FP32 tensors."""
        self._check_model(name, version)
        endpoints = self.endpoints
        with endpoints.batcher.expecting():
            body = await request.body()
            parsed, tensors = await run_in_threadpool(_prepare, endpoints, body)
        wanted = [output.name for output in parsed.outputs] if parsed.outputs else list(OUTPUTS)
        unknown = [output for output in wanted if output not in OUTPUTS]
        if unknown:
            raise ProtocolError(400, f"unknown output(s) {unknown}; this model gives {list(OUTPUTS)}")
        logits = torch.stack(await endpoints.batcher.submit(tensors)).float()
        values = {"logits": logits, "probabilities": logits.softmax(1)}
        outputs = [
            {
                "name": output,
                "datatype": "FP32",
                "shape": list(values[output].shape),
                "data": values[output].flatten().tolist(),
            }
            for output in wanted
        ]
        return {"model_name": name, "model_version": VERSION, "id": parsed.id, "outputs": outputs}  # type: ignore[return-value]


async def _protocol_error(_: Request, err: Exception) -> JSONResponse:
    status = err.status if isinstance(err, ProtocolError) else 400
    return JSONResponse(ProtocolErrorBody(error=str(err)).model_dump(), status_code=status)


# The inference request's JSON schema in the OpenAPI document (the handler reads the body itself).
_INFER_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InferenceRequest"}}},
    }
}


def add_protocol_routes(app: FastAPI, endpoints: Endpoints) -> None:
    """Mount the v2 endpoints (with and without the optional /versions/{version} part) on `app`."""
    v2 = ProtocolEndpoints(endpoints)
    errors: dict[int | str, dict[str, Any]] = {status: {"model": ProtocolErrorBody} for status in (400, 404, 503)}
    app.add_exception_handler(ProtocolError, _protocol_error)
    tags = ["Open Inference Protocol (KServe v2)"]
    app.add_api_route("/v2", v2.server_metadata, methods=["GET"], tags=tags)
    app.add_api_route("/v2/health/live", v2.live, methods=["GET"], tags=tags)
    app.add_api_route(
        "/v2/health/ready", v2.ready, methods=["GET"], tags=tags, response_model=Readiness, responses=errors
    )

    # Without /versions/{version}: the same handlers with no version (a default argument would show as a query).
    async def metadata(name: str) -> ModelMetadata:
        return await v2.model_metadata(name)

    async def ready(name: str) -> JSONResponse:
        return await v2.model_ready(name)

    async def infer(request: Request, name: str) -> InferenceResponse:
        return await v2.infer(request, name)

    routes = (
        ("/v2/models/{name}", metadata, ready, infer),
        ("/v2/models/{name}/versions/{version}", v2.model_metadata, v2.model_ready, v2.infer),
    )
    for prefix, metadata_handler, ready_handler, infer_handler in routes:
        app.add_api_route(
            prefix, metadata_handler, methods=["GET"], tags=tags, response_model=ModelMetadata, responses=errors
        )
        app.add_api_route(
            f"{prefix}/ready",
            ready_handler,
            methods=["GET"],
            tags=tags,
            response_model=ModelReadiness,
            responses=errors,
        )
        app.add_api_route(
            f"{prefix}/infer",
            infer_handler,
            methods=["POST"],
            tags=tags,
            response_model=InferenceResponse,
            responses=errors,
            openapi_extra=_INFER_BODY,
        )
