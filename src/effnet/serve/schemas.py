"""The shapes of the server's JSON: effnet's own API and the Open Inference Protocol (KServe v2), as Pydantic models,
so that /openapi.json and /docs show every request body and answer."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorBody(BaseModel):
    """Every refusal of effnet's own endpoints: {"detail": "..."} naming the file and what to send."""

    detail: str


class Score(BaseModel):
    """One class of an image's top-k."""

    index: int
    name: str
    probability: float


class ImagePrediction(BaseModel):
    """The top-k classes of one image, most probable first."""

    filename: str
    top: list[Score]


class PredictResponse(BaseModel):
    """The answer of /predict: one entry per image, in the order they were sent."""

    model: str
    predictions: list[ImagePrediction]


class Instance(BaseModel):
    """One image in a JSON /predict request: the file's bytes (JPEG, PNG, ...) in base64, or as a data URL."""

    model_config = ConfigDict(extra="forbid")

    image_b64: str = Field(description='base64 of the image file, or a data URL "data:image/jpeg;base64,..."')
    name: str | None = Field(None, description="a label echoed back as the prediction's filename")


class PredictInstances(BaseModel):
    """A JSON /predict request: {"instances": [{"image_b64": "..."}, ...]}."""

    model_config = ConfigDict(extra="forbid")

    instances: list[Instance] = Field(min_length=1)


class Health(BaseModel):
    """Liveness, readiness and what is being served (/health)."""

    status: str
    ready: bool
    model: str
    runtime: str
    num_classes: int
    input_size: int
    cam: bool
    threads: int
    streams: int
    max_batch: int
    max_wait_ms: float
    max_upload_bytes: int
    max_images: int
    pid: int


class TensorInfo(BaseModel):
    """A model input or output: name, element type and shape (-1 for any size)."""

    name: str
    datatype: str
    shape: list[int]


class ModelInfo(BaseModel):
    """What the served model takes and gives (/model)."""

    name: str
    runtime: str
    platform: str
    source: str
    num_classes: int
    class_names: list[str] | None
    preprocess: dict[str, Any]
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    cam: bool
    ready: bool


# Open Inference Protocol (KServe v2), HTTP/REST: field names as the specification writes them.


class ServerMetadata(BaseModel):
    """GET /v2."""

    name: str
    version: str
    extensions: list[str]


class ModelMetadata(BaseModel):
    """GET /v2/models/{name}."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]


class Liveness(BaseModel):
    """GET /v2/health/live."""

    live: bool


class Readiness(BaseModel):
    """GET /v2/health/ready."""

    ready: bool


class ModelReadiness(BaseModel):
    """GET /v2/models/{name}/ready."""

    name: str
    ready: bool


class RequestInput(BaseModel):
    """One input tensor of an inference request; `data` is row-major, flat or nested."""

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any]


class RequestOutput(BaseModel):
    """An output the client asks for by name."""

    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    """POST /v2/models/{name}/infer."""

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    """One output tensor of an inference response, `data` flat in row-major order."""

    name: str
    shape: list[int]
    datatype: str
    data: list[float]


class InferenceResponse(BaseModel):
    """The answer of /v2/models/{name}/infer."""

    model_name: str
    model_version: str | None = None
    id: str | None = None
    outputs: list[ResponseOutput]


class ProtocolErrorBody(BaseModel):
    """Every v2 error: {"error": "..."}."""

    error: str
