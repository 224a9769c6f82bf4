"""The HTTP application: /predict, /cam, /health, /model, /metrics, the Open Inference Protocol under /v2, /docs and
the web page at /, around one model and batcher."""

from __future__ import annotations

import asyncio
import io
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any
from urllib.parse import quote

import torch
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from PIL import Image
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from effnet import __version__
from effnet.analysis.cam import overlay
from effnet.deploy.predict import top_classes
from effnet.serve.batcher import DynamicBatcher
from effnet.serve.classifier import CamUnavailableError, Classifier, load_classifier
from effnet.serve.config import DEFAULT_TOP_K, ServeConfig
from effnet.serve.docs import add_docs, install_openapi
from effnet.serve.limits import BodyTooLargeError, LimitsAndMetrics
from effnet.serve.metrics import ServeMetrics
from effnet.serve.protocol import PLATFORMS, add_protocol_routes, input_tensors, output_tensors
from effnet.serve.schemas import ErrorBody, Health, InferenceRequest, ModelInfo, PredictInstances, PredictResponse
from effnet.serve.security import BearerToken
from effnet.serve.uploads import (
    PixelBudget,
    UploadError,
    check_content_type,
    decode_within,
    parse_instances,
    return_large_images_to_the_system,
)
from effnet.serve.workers import die_with_parent

CONFIG_ENV = "EFFNET_SERVE_CONFIG"
DECODE_BUDGET_PIXELS = 100_000_000
_HOW_TO_SEND = (
    "send images as multipart/form-data (curl -F file=@cat.jpg URL), one raw image/* body, or JSON "
    '{"instances": [{"image_b64": "..."}]}'
)
Uploads = Callable[[], list[tuple[str, bytes]]]  # (name, image file bytes), produced on a pool thread
_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                    "required": ["file"],
                },
                "encoding": {"file": {"contentType": "image/*"}},
            },
            "application/json": {"schema": {"$ref": "#/components/schemas/PredictInstances"}},
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


async def _read_uploads(request: Request, max_images: int) -> Uploads:
    """What the request holds, as a function returning (name, bytes) of every image: multipart files (content
    types checked), a raw image body, or base64 images in JSON (decoded by the function, off the event loop).
    More than `max_images` images is refused as they are counted, before any is decoded."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        try:  # the parser stops at file max_images + 1, so memory stays bounded by the limit, not the request
            form = await request.form(max_files=max_images, max_fields=max_images + 16)
        except HTTPException as err:  # starlette's answer to a malformed or over-full multipart body
            if "Too many files" in str(err.detail):
                plural = "s" if max_images > 1 else ""
                raise UploadError(400, f"more than {max_images} image{plural} in one request; send fewer") from err
            raise UploadError(400, f"bad multipart body: {err.detail}") from err
        try:
            files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
            if not files:
                raise UploadError(400, f"the form holds no file; {_HOW_TO_SEND}")
            uploads = []
            for index, file in enumerate(files):
                name = file.filename or f"file {index + 1}"
                check_content_type(file.content_type, name)
                uploads.append((name, await file.read()))
            return lambda: uploads
        finally:
            await form.close()
    if kind.startswith("image/") or kind == "application/octet-stream":
        body = await request.body()
        return lambda: [("request body", body)]
    if kind == "application/json":
        body = await request.body()
        return lambda: parse_instances(body, max_images)
    raise UploadError(415, f"content type {kind or '(none)'!r} is not accepted; {_HOW_TO_SEND}")


def _top_k(classifier: Classifier, logits: torch.Tensor, k: int) -> list[dict[str, object]]:
    """/predict's "top" list: the library's top-k (effnet predict's too), probabilities to 6 decimals."""
    return [
        {"index": score.index, "name": score.name, "probability": round(score.probability, 6)}
        for score in top_classes(logits[None], k, classifier.class_names)[0]
    ]


def _page() -> str:
    return resources.files("effnet.serve").joinpath("static/index.html").read_text(encoding="utf-8")


class Endpoints:
    """The handlers of one app, around one model, its batcher and its metrics."""

    def __init__(self, config: ServeConfig, classifier: Classifier, metrics: ServeMetrics) -> None:
        self.config = config
        self.classifier = classifier
        self.metrics = metrics
        self.batcher = DynamicBatcher(
            classifier.logits, config.max_batch, config.max_wait_ms / 1000, metrics.observe_batch, config.streams
        )
        # Twice the largest image, and at least 100M pixels (~300 MB of RGB): photos decode side by side, and
        # clients sending the largest images together wait for each other instead of multiplying the memory.
        self.decoding = PixelBudget(max(2 * config.max_pixels, DECODE_BUDGET_PIXELS))
        self.page = _page()
        self.ready = False  # set once a warm-up pass at every batch size a request can meet has run
        self.warm_up_error: str | None = None

    async def warm_up(self) -> None:
        """Run the model once at batch 1 and at --max-batch (first passes allocate and pick kernels), then
        report ready; a failure is logged and leaves the server live but not ready."""
        size = self.classifier.preprocess.input_size
        try:
            for batch in sorted({1, self.config.max_batch}):
                inputs = torch.zeros(batch, 3, size, size)
                await self.batcher.run_on_model_thread(lambda inputs=inputs: self.classifier.logits(inputs))
        except Exception as err:  # noqa: BLE001 - the readiness probe reports it; the process stays up
            self.warm_up_error = f"{type(err).__name__}: {err}"
            logging.getLogger("effnet.serve").error("warm-up failed, the server is not ready: %s", self.warm_up_error)
            return
        self.ready = True

    async def index(self) -> HTMLResponse:
        """The web page: drop an image, see the top-5 and the CAM overlay."""
        return HTMLResponse(self.page)

    async def health(self) -> Health:
        """Liveness (the answer itself), readiness and what is being served."""
        classifier, config = self.classifier, self.config
        return Health(
            status="ok",
            ready=self.ready,
            model=classifier.name,
            runtime=classifier.runtime,
            num_classes=classifier.num_classes,
            input_size=classifier.preprocess.input_size,
            cam=classifier.has_cam,
            threads=config.intra_op_threads,
            streams=config.streams,
            max_batch=config.max_batch,
            max_wait_ms=config.max_wait_ms,
            max_upload_bytes=config.max_upload_bytes,
            max_images=config.max_images,
            pid=os.getpid(),
        )

    async def model(self) -> ModelInfo:
        """The served model: name, runtime, classes, preprocessing, and its inputs and outputs."""
        classifier = self.classifier
        return ModelInfo(
            name=classifier.name,
            runtime=classifier.runtime,
            platform=PLATFORMS.get(classifier.runtime, classifier.runtime),
            source=self.config.source.describe(),
            num_classes=classifier.num_classes,
            class_names=list(classifier.class_names) if classifier.class_names else None,
            preprocess=classifier.preprocess.to_dict(),
            inputs=input_tensors(self),
            outputs=output_tensors(self),
            cam=classifier.has_cam,
            ready=self.ready,
        )

    async def prometheus_metrics(self) -> Response:
        """Prometheus text exposition."""
        return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def predict(self, request: Request, top_k: int | None = None) -> dict[str, object]:
        """Top-k classes with probabilities for each image: multipart files, a raw image body or base64 JSON."""
        classifier = self.classifier
        k = top_k if top_k is not None else self.config.top_k or DEFAULT_TOP_K
        if k < 1:
            raise UploadError(400, f"top_k must be in 1..{classifier.num_classes}, got {k}")
        k = min(k, classifier.num_classes)  # top 5 of a 3-class model: all 3, as `effnet predict` answers
        with self.batcher.expecting():
            uploads = await _read_uploads(request, self.config.max_images)
            names, tensors = await run_in_threadpool(self._decode_and_prepare, uploads)
        rows = await self.batcher.submit(tensors)
        predictions = [
            {"filename": name, "top": _top_k(classifier, row, k)} for name, row in zip(names, rows, strict=True)
        ]
        return {"model": classifier.name, "predictions": predictions}

    def _decode_and_prepare(self, uploads: Uploads) -> tuple[list[str], list[torch.Tensor]]:
        """Names and model inputs of the uploads, on a pool thread: one hop for every step, and PIL and torch
        release the GIL while they decode, resize and normalize, so this overlaps with the forward pass and the
        event loop."""
        limit, files, prepare = self.config.max_pixels, uploads(), self.classifier.prepare
        return [name for name, _ in files], [
            decode_within(self.decoding, data, name, limit, prepare) for name, data in files
        ]

    async def cam(self, request: Request, alpha: float = 0.5) -> Response:
        """The class activation map of the image's top class, blended over the image, as a PNG."""
        classifier = self.classifier
        if not classifier.has_cam:
            raise CamUnavailableError(f"CAM needs a PyTorch model with a classifier; {classifier.name} has none")
        if not 0.0 <= alpha <= 1.0:
            raise UploadError(400, f"alpha must be in [0, 1], got {alpha}")
        uploads = await _read_uploads(request, max_images=1)  # a second image is refused before any is decoded

        def shrink(image: Image.Image) -> Image.Image:
            image.thumbnail((self.config.cam_max_side, self.config.cam_max_side), Image.Resampling.BICUBIC)
            return image

        def decode() -> Image.Image:
            ((name, data),) = uploads()
            return decode_within(self.decoding, data, name, self.config.max_pixels, shrink)

        image = await run_in_threadpool(decode)  # decoding is CPU work: keep the event loop answering
        result = await self.batcher.run_on_model_thread(lambda: classifier.cam(image))

        def encode() -> bytes:
            buffer = io.BytesIO()
            overlay(image, result.heatmap, alpha).save(buffer, format="PNG")
            return buffer.getvalue()

        headers = {
            "X-Class-Index": str(result.class_index),
            "X-Class-Name": quote(classifier.class_name(result.class_index)),  # headers are latin-1 only
            "X-Probability": f"{result.probability:.6f}",
        }
        return Response(await run_in_threadpool(encode), media_type="image/png", headers=headers)


def _error_handler(status: int | None) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handle(_: Request, err: Exception) -> JSONResponse:
        code = status if status is not None else getattr(err, "status", 400)
        return JSONResponse({"detail": str(err)}, status_code=code)

    return handle


def create_app(config: ServeConfig, classifier: Classifier | None = None) -> FastAPI:
    """The FastAPI app serving `classifier` (loaded from `config.source` when not given)."""
    classifier = classifier or load_classifier(config.source, config.intra_op_threads, config.runtime, config.streams)
    metrics = ServeMetrics()
    endpoints = Endpoints(config, classifier, metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        endpoints.batcher.start()
        warming = asyncio.get_running_loop().create_task(endpoints.warm_up())  # the port opens meanwhile: live
        yield
        warming.cancel()
        await endpoints.batcher.stop()

    app = FastAPI(title="effnet serve", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    _add_middleware(app, config, metrics)
    app.add_exception_handler(UploadError, _error_handler(None))  # its own 4xx status
    app.add_exception_handler(BodyTooLargeError, _error_handler(413))
    app.add_exception_handler(CamUnavailableError, _error_handler(501))
    refusals: dict[int | str, dict[str, Any]] = {status: {"model": ErrorBody} for status in (400, 401, 413, 415)}
    app.add_api_route("/", endpoints.index, methods=["GET"], response_class=HTMLResponse, include_in_schema=False)
    app.add_api_route("/health", endpoints.health, methods=["GET"], response_model=Health)
    app.add_api_route("/model", endpoints.model, methods=["GET"], response_model=ModelInfo)
    app.add_api_route("/metrics", endpoints.prometheus_metrics, methods=["GET"], response_class=PlainTextResponse)
    app.add_api_route(
        "/predict",
        endpoints.predict,
        methods=["POST"],
        response_model=PredictResponse,
        responses=refusals,
        openapi_extra=_PREDICT_BODY,
    )
    app.add_api_route(
        "/cam",
        endpoints.cam,
        methods=["POST"],
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}, **refusals, 501: {"model": ErrorBody}},
        openapi_extra=_PREDICT_BODY,
    )
    add_protocol_routes(app, endpoints)
    add_docs(app)
    install_openapi(app, [PredictInstances, InferenceRequest], bearer=config.token is not None)
    return app


def _add_middleware(app: FastAPI, config: ServeConfig, metrics: ServeMetrics) -> None:
    """Bearer token, body limits with request metrics, and CORS when origins are allowed."""
    # Outermost last: CORS answers preflights before anything else; 401s and 413s are counted in the metrics.
    if config.token:
        app.add_middleware(BearerToken, token=config.token)
    app.add_middleware(LimitsAndMetrics, max_body_bytes=config.max_upload_bytes, metrics=metrics)
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["X-Class-Index", "X-Class-Name", "X-Probability"],
            max_age=600,
        )


def app_from_environment() -> FastAPI:
    """Factory for uvicorn worker processes: the settings come in the EFFNET_SERVE_CONFIG variable."""
    text = os.environ.get(CONFIG_ENV)
    if not text:
        raise RuntimeError(f"{CONFIG_ENV} is not set; start the server with `effnet serve`")
    config = ServeConfig.from_json(text)
    die_with_parent(config.drain_seconds)  # no orphan keeps serving, or holds the port, after a SIGKILL
    return_large_images_to_the_system()
    torch.set_num_threads(config.intra_op_threads)
    return create_app(config)
