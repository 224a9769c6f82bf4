"""The README is a short front door and every relative link in it and in docs/ points at something that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MAX_README_LINES = 250

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
# Repository files the pages name in prose or code (`/docs/assets` and the like are URLs, hence the look-behind).
REPO_PATH = re.compile(r"(?<![\w/.-])((?:src|tests|benchmarks|docs)/[\w./*-]*\w)")
DOTTED = re.compile(r"(?<![\w.])effnet(?:\.[A-Za-z_]\w*)+")
FROM_IMPORT = re.compile(r"^\s*from (effnet(?:\.\w+)*) import \(?([\w, ]+)", re.M)


def _prose(text: str) -> str:
    """The text without fenced code blocks and code spans, where brackets are code, not links."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    """Every heading anchor of a Markdown page, numbered as GitHub numbers repeated headings."""
    seen: dict[str, int] = {}
    anchors = set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        slug = _slug(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _relative_links(page: Path) -> list[str]:
    links = LINK.findall(_prose(page.read_text(encoding="utf-8")))
    return [link for link in links if not re.match(r"^[a-z][a-z0-9+.-]*:", link, re.I)]


def test_pages_found() -> None:
    assert (ROOT / "README.md").is_file()
    assert len(PAGES) > 5, PAGES


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for link in _relative_links(page):
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        if not path.exists():
            broken.append(f"{link}: no file {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(f"{link}: no heading with anchor #{anchor} in {path.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_readme_is_a_front_door() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move reference text to docs/"
    text = "\n".join(lines)
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"(docs/{page.name})" in text, f"README's Documentation list does not link docs/{page.name}"


def _module_path(parts: list[str]) -> tuple[Path, int]:
    """The deepest module or package file under src/ that a dotted name walks through, and how many parts it used."""
    path, used = ROOT / "src" / parts[0], 1
    for part in parts[1:]:
        if (path / part / "__init__.py").is_file():
            path = path / part
        elif (path / f"{part}.py").is_file():
            path = path / f"{part}.py"
        else:
            break
        used += 1
    return (path / "__init__.py" if path.is_dir() else path), used


def _resolves(name: str) -> bool:
    """Whether `effnet.a.b.name` is a module, or a name the module it lands in defines or imports (read, not run)."""
    parts = name.split(".")
    module, used = _module_path(parts)
    if used == len(parts):
        return True
    return re.search(rf"\b{re.escape(parts[used])}\b", module.read_text(encoding="utf-8")) is not None


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_named_files_and_modules_exist(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    missing = [path for path in set(REPO_PATH.findall(text)) if not list(ROOT.glob(path.rstrip("/")))]
    names = set(DOTTED.findall(text))
    for module, imported in FROM_IMPORT.findall(text):
        names.update(f"{module}.{name.strip()}" for name in imported.split(",") if name.strip())
    missing += sorted(name for name in names if not _resolves(name))
    assert not missing, f"{page.name} names what the repository does not have: {sorted(missing)}"


# The module map is a map, not an area with a command of its own.
NOT_AN_AREA = {"architecture.md"}


@pytest.mark.parametrize("page", PAGES[1:], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_docs_page_starts_with_its_command(page: Path) -> None:
    if page.name in NOT_AN_AREA:
        pytest.skip("a map, not an area")
    lines = [line for line in page.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert lines[0].startswith("# "), f"{page.name} should open with its title"
    assert lines[1].startswith("```"), f"{page.name} should show the command for its area right under the title"


def test_slugs_follow_github() -> None:
    assert _slug("Serve over HTTP: `effnet serve`") == "serve-over-http-effnet-serve"
    heading = "Depthwise convs, residual adds and the classifier in float (`--float-ops`, the default on openvino)"
    expected = "depthwise-convs-residual-adds-and-the-classifier-in-float---float-ops-the-default-on-openvino"
    assert _slug(heading) == expected
