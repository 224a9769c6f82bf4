"""The container recipe: the Dockerfile is linted here (instructions, a non-root user, the port, the command's flags
checked by effnet's own parser, a build context holding what it copies); with a Docker daemon, a slow test builds
the image and asks the container for readiness."""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined and comments dropped."""
    lines, joined = (ROOT / "Dockerfile").read_text().splitlines(), []
    current = ""
    for line in lines:
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        current += " " + stripped.removesuffix("\\").strip() if current else stripped.removesuffix("\\").strip()
        if not stripped.endswith("\\"):
            joined.append(current)
            current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in joined]


def exec_form(arguments: str) -> list[str]:
    """The JSON array of an exec-form ENTRYPOINT / CMD (shell form would not receive SIGTERM as PID 1)."""
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(part, str) for part in value), arguments
    return value


def test_dockerfile_instructions_are_sound():
    steps = instructions()
    kinds = [kind for kind, _ in steps]
    known = {"FROM", "ARG", "ENV", "WORKDIR", "RUN", "COPY", "USER", "EXPOSE", "HEALTHCHECK", "ENTRYPOINT", "CMD"}
    assert set(kinds) <= known, set(kinds) - known
    assert kinds[0] in ("FROM", "ARG") and kinds.count("FROM") == 1
    base = dict(steps)["FROM"]
    assert ":" in base and not base.endswith(":latest"), "pin the base image's tag"
    assert dict(steps)["EXPOSE"] == "8000"
    users = [args for kind, args in steps if kind == "USER"]
    assert users and users[-1] not in ("root", "0") and not users[-1].startswith("0:"), (
        "the server must not run as root"
    )
    assert kinds.index("USER") < kinds.index("ENTRYPOINT")
    installs = " ".join(args for kind, args in steps if kind == "RUN")
    assert '".[serve' in installs, "the image installs effnet with its serve extra"


def test_the_container_command_is_one_effnet_serve_accepts_on_all_interfaces():
    from effnet.cli import build_parser

    steps = dict(instructions())
    entrypoint, command = exec_form(steps["ENTRYPOINT"]), exec_form(steps["CMD"])
    assert entrypoint[:2] == ["effnet", "serve"]
    args = build_parser().parse_args(entrypoint[1:] + command)  # the real parser: unknown flags would exit
    assert (args.host, args.port, args.pretrained, args.model) == ("0.0.0.0", 8000, True, "efficientnet_lite0")
    probe = steps["HEALTHCHECK"]
    assert "/v2/health/ready" in probe and "8000" in probe


def test_the_build_context_holds_what_the_dockerfile_copies():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [p for p in patterns if p and not p.startswith("#")]

    def ignored(path: str) -> bool:  # Docker's rule: the last matching pattern wins; "!" re-includes
        verdict = False
        for pattern in patterns:
            negate, bare = pattern.startswith("!"), pattern.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, bare) or path.startswith(bare + "/"):
                verdict = not negate
        return verdict

    copied = [args.split()[:-1] for kind, args in instructions() if kind == "COPY"]
    sources = [source for sources in copied for source in sources]
    assert sources, "the Dockerfile copies nothing"
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not ignored(source), f"{source} is excluded by .dockerignore"
    assert ignored("tests/test_serve.py") and ignored("BENCHMARKS.md") and ignored(".git")
    assert not ignored("src/effnet/serve/app.py")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {"serve", "pretrained"} <= set(extras)


def _docker_works() -> str | None:
    """None when a Docker daemon answers, else why the build test cannot run."""
    if shutil.which("docker") is None:
        return "no docker command here"
    probe = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        return f"docker cannot reach a daemon: {(probe.stderr or probe.stdout).strip().splitlines()[-1]}"
    return None


@pytest.mark.slow
def test_the_image_builds_and_the_container_gets_ready():
    reason = _docker_works()
    if reason:
        pytest.skip(reason)
    tag = "effnet-serve-test:latest"
    build = subprocess.run(["docker", "build", "-t", tag, str(ROOT)], capture_output=True, text=True, timeout=3600)
    assert build.returncode == 0, build.stderr[-3000:]
    user = subprocess.run(["docker", "run", "--rm", "--entrypoint", "id", tag, "-u"], capture_output=True, text=True)
    assert user.stdout.strip() not in ("", "0")
    started = subprocess.run(
        ["docker", "run", "-d", "--rm", "-p", "127.0.0.1::8000", tag], capture_output=True, text=True
    )
    assert started.returncode == 0, started.stderr
    container = started.stdout.strip()
    try:
        port = subprocess.run(["docker", "port", container, "8000"], capture_output=True, text=True).stdout
        url = f"http://{port.strip().splitlines()[0]}"
        import httpx

        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        else:
            pytest.fail("the container never reported ready")
        assert httpx.get(f"{url}/v2/models/efficientnet_lite0").json()["platform"] == "onnxruntime_onnx"
    finally:
        subprocess.run(["docker", "stop", container], capture_output=True)
