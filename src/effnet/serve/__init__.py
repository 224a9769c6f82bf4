"""`effnet serve`: an HTTP service (FastAPI + uvicorn) with dynamic batching, metrics and a web page.

Needs the `serve` extra: pip install 'effnet[serve]'.
"""

from effnet.serve.config import ModelSource, ServeConfig

__all__ = ["ModelSource", "ServeConfig", "create_app", "serve"]


def __getattr__(name: str):  # noqa: ANN202 - lazy, so that the config imports without FastAPI installed
    if name == "create_app":
        from effnet.serve.app import create_app

        return create_app
    if name == "serve":
        from effnet.serve.runner import serve

        return serve
    raise AttributeError(name)
