# effnet serve in a container: the HTTP service (effnet's /predict, KServe v2 under /v2, /docs) on port 8000.
#
#   docker build -t effnet-serve .
#   docker run --rm -p 8000:8000 effnet-serve                                  # Lite0, ImageNet, pretrained
#   docker run --rm -p 8000:8000 -v "$PWD/models:/models:ro" -e EFFNET_SERVE_TOKEN=secret \
#       effnet-serve --weights /models/lite0.int8.xml --cors-origin https://app.example.com
#
# A smaller image: pass PyTorch's CPU-only wheel index as --build-arg TORCH_INDEX_URL=... (PyPI's Linux torch wheel
# brings the CUDA libraries along).
FROM python:3.11-slim

ARG TORCH_INDEX_URL=""
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OMP_NUM_THREADS=1

WORKDIR /opt/effnet
RUN if [ -n "$TORCH_INDEX_URL" ]; then pip install --index-url "$TORCH_INDEX_URL" torch torchvision; fi
COPY pyproject.toml README.md ./
COPY src ./src
# serve: FastAPI, uvicorn, onnxruntime, Swagger UI's files; pretrained: Lite0-2 weights; openvino: int8 .xml models
RUN pip install ".[serve,pretrained]" "openvino>=2024.0" && rm -rf /root/.cache

# Never run as root: a fixed unprivileged user that owns nothing but its home.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin effnet
USER 10001
WORKDIR /home/effnet

EXPOSE 8000
# Kubernetes probes: /v2/health/live (liveness) and /v2/health/ready (readiness, once the model is warmed up).
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=4)"]
# Inside a container the server must listen on every interface; arguments after the image name replace CMD.
ENTRYPOINT ["effnet", "serve", "--host", "0.0.0.0", "--port", "8000"]
CMD ["--pretrained", "--model", "efficientnet_lite0"]
