"""`effnet serve`: an HTTP service (FastAPI + uvicorn) with dynamic batching, metrics and a web page.

Needs the `serve` extra: pip install 'effnet[serve]'.
"""

__all__ = ["ModelSource", "ServeConfig", "create_app", "serve"]


def __getattr__(name: str):  # noqa: ANN202
    # Lazy: importing a light module of the package (serve.workers in a worker process) costs no torch (ModelSource
    # is effnet.weights') and no FastAPI (create_app, serve), which the config alone does not need.
    if name in ("ModelSource", "ServeConfig"):
        from effnet.serve import config

        return getattr(config, name)
    if name == "create_app":
        from effnet.serve.app import create_app

        return create_app
    if name == "serve":
        from effnet.serve.runner import serve

        return serve
    raise AttributeError(name)
