"""The HTTP application: /predict, /cam, /health, /metrics and the web page at /, around one model and batcher."""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from urllib.parse import quote

import torch
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from effnet.serve.backend import CamUnavailableError, Classifier, load_classifier
from effnet.serve.batcher import DynamicBatcher
from effnet.serve.config import ServeConfig
from effnet.serve.limits import BodyTooLargeError, LimitsAndMetrics
from effnet.serve.metrics import ServeMetrics
from effnet.serve.uploads import UploadError, check_content_type, decode_image

CONFIG_ENV = "EFFNET_SERVE_CONFIG"
_HOW_TO_SEND = "send images as multipart/form-data (curl -F file=@cat.jpg URL) or one raw image/* body"


async def _read_uploads(request: Request, config: ServeConfig) -> list[tuple[str, bytes]]:
    """(filename, bytes) of every image in the request, content types checked."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        try:
            form = await request.form(max_files=config.max_images, max_fields=config.max_images + 16)
        except HTTPException as err:  # starlette's answer to a malformed or over-full multipart body
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
            return uploads
        finally:
            await form.close()
    if kind.startswith("image/") or kind == "application/octet-stream":
        return [("request body", await request.body())]
    raise UploadError(415, f"content type {kind or '(none)'!r} is not accepted; {_HOW_TO_SEND}")


async def _read_images(request: Request, config: ServeConfig) -> list[tuple[str, Image.Image]]:
    uploads = await _read_uploads(request, config)
    decode = lambda: [(name, decode_image(data, name, config.max_pixels)) for name, data in uploads]  # noqa: E731
    return await run_in_threadpool(decode)  # decoding is CPU work: keep the event loop answering


def _top_k(classifier: Classifier, logits: torch.Tensor, k: int) -> list[dict[str, object]]:
    probabilities = logits.float().softmax(0)
    values, indices = probabilities.topk(min(k, probabilities.numel()))
    return [
        {"index": int(i), "name": classifier.class_name(int(i)), "probability": round(float(p), 6)}
        for p, i in zip(values, indices, strict=True)
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
        self.page = _page()

    async def index(self) -> HTMLResponse:
        """The web page: drop an image, see the top-5 and the CAM overlay."""
        return HTMLResponse(self.page)

    async def health(self) -> dict[str, object]:
        """Liveness and what is being served."""
        classifier, config = self.classifier, self.config
        return {
            "status": "ok",
            "model": classifier.name,
            "runtime": classifier.runtime,
            "num_classes": classifier.num_classes,
            "input_size": classifier.preprocess.input_size,
            "cam": classifier.has_cam,
            "threads": config.intra_op_threads,
            "streams": config.streams,
            "max_batch": config.max_batch,
            "max_wait_ms": config.max_wait_ms,
            "max_upload_bytes": config.max_upload_bytes,
            "max_images": config.max_images,
            "pid": os.getpid(),
        }

    async def prometheus_metrics(self) -> Response:
        """Prometheus text exposition."""
        return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def predict(self, request: Request, top_k: int | None = None) -> dict[str, object]:
        """Top-k classes with probabilities for each uploaded image."""
        classifier = self.classifier
        k = self.config.top_k if top_k is None else top_k
        if not 1 <= k <= classifier.num_classes:
            raise UploadError(400, f"top_k must be in 1..{classifier.num_classes}, got {k}")
        with self.batcher.expecting():
            uploads = await _read_uploads(request, self.config)
            tensors = await run_in_threadpool(self._decode_and_prepare, uploads)
        rows = await self.batcher.submit(tensors)
        predictions = [
            {"filename": name, "top": _top_k(classifier, row, k)} for (name, _), row in zip(uploads, rows, strict=True)
        ]
        return {"model": classifier.name, "predictions": predictions}

    def _decode_and_prepare(self, uploads: list[tuple[str, bytes]]) -> list[torch.Tensor]:
        """Model inputs of the uploads, on a pool thread: one hop for both steps, and PIL and torch release the GIL
        while they decode, resize and normalize, so this overlaps with the forward pass and the event loop."""
        limit = self.config.max_pixels
        return [self.classifier.prepare(decode_image(data, name, limit)) for name, data in uploads]

    async def cam(self, request: Request, alpha: float = 0.5) -> Response:
        """The class activation map of the image's top class, blended over the image, as a PNG."""
        from effnet.analysis.cam import overlay

        classifier = self.classifier
        if not classifier.has_cam:
            raise CamUnavailableError(f"CAM needs a PyTorch model with a classifier; {classifier.name} has none")
        if not 0.0 <= alpha <= 1.0:
            raise UploadError(400, f"alpha must be in [0, 1], got {alpha}")
        images = await _read_images(request, self.config)
        if len(images) != 1:
            raise UploadError(400, f"/cam explains one image per request, got {len(images)}")
        image = images[0][1]
        image.thumbnail((self.config.cam_max_side, self.config.cam_max_side), Image.Resampling.BICUBIC)
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
    classifier = classifier or load_classifier(config.source, config.intra_op_threads, config.runtime)
    metrics = ServeMetrics()
    endpoints = Endpoints(config, classifier, metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        endpoints.batcher.start()
        yield
        await endpoints.batcher.stop()

    app = FastAPI(title="effnet serve", lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.add_middleware(LimitsAndMetrics, max_body_bytes=config.max_upload_bytes, metrics=metrics)
    app.add_exception_handler(UploadError, _error_handler(None))  # its own 4xx status
    app.add_exception_handler(BodyTooLargeError, _error_handler(413))
    app.add_exception_handler(CamUnavailableError, _error_handler(501))
    app.add_api_route("/", endpoints.index, methods=["GET"], response_class=HTMLResponse)
    app.add_api_route("/health", endpoints.health, methods=["GET"])
    app.add_api_route("/metrics", endpoints.prometheus_metrics, methods=["GET"])
    app.add_api_route("/predict", endpoints.predict, methods=["POST"])
    app.add_api_route("/cam", endpoints.cam, methods=["POST"])
    return app


def app_from_environment() -> FastAPI:
    """Factory for uvicorn worker processes: the settings come in the EFFNET_SERVE_CONFIG variable."""
    text = os.environ.get(CONFIG_ENV)
    if not text:
        raise RuntimeError(f"{CONFIG_ENV} is not set; start the server with `effnet serve`")
    config = ServeConfig.from_json(text)
    torch.set_num_threads(config.intra_op_threads)
    return create_app(config)
