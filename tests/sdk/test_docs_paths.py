"""What the guides and docstrings point at exists: modules, attributes, files, and nothing outside the repository.

Modules moved when `core/` was split into wings (`crm_activation.config` became `crm_activation.campaign.schema`,
`email/tools.py` became `email/commands.py`, ...); a guide that still names the old place sends its reader
nowhere. These checks read the text itself, so a renamed module or a deleted file fails here, not in a reader's
terminal.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from crm_activation import Capability

ROOT = Path(__file__).resolve().parents[2]
GUIDES = sorted([*ROOT.glob("docs/*.md"), ROOT / "README.md", ROOT / "DEVELOPERS.md"])
SOURCES = sorted(
    path
    for folder in ("core", "connectors", "plugins/crm-activation-google-data-manager/src")
    for path in (ROOT / folder).rglob("*.py")
)
MODULE_PATH = re.compile(r"\bcrm_activation(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
REPO_PATH = re.compile(r"(?<![\w./-])(?:core|connectors)/[\w./-]*[\w/]")
DOCS_FILE = re.compile(r"(?<![\w./-])docs/[\w-]+\.md")
PARENT_PATH = re.compile(r"(?<![\w.])\.\./[\w./-]*[\w/]")
CAPABILITY = re.compile(r"\bCapability\.([A-Za-z_]+)")
MARKDOWN_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
PYTHON_FILE = re.compile(r"(?<![\w/.-])(\w+\.py)\b")
#: Files of the imaginary plugin the connector guide lays out, which this repository does not have.
IMAGINARY: set[tuple[str, str]] = set()


def docstrings(path: Path) -> Iterator[str]:
    """The module's, classes' and functions' docstrings."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            text = ast.get_docstring(node, clean=False)
            if text:
                yield text


def texts() -> Iterator[tuple[str, str]]:
    """(where, text) for every guide and every docstring of the package, its connectors and the plugin."""
    for path in GUIDES:
        yield str(path.relative_to(ROOT)), path.read_text(encoding="utf-8")
    for path in SOURCES:
        for text in docstrings(path):
            yield str(path.relative_to(ROOT)), text


def resolves(dotted: str) -> bool:
    """Whether `crm_activation.a.b.c` is a module, or an attribute chain of the longest importable module."""
    parts = dotted.split(".")
    for length in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:length]))
        except ModuleNotFoundError:
            continue
        for name in parts[length:]:
            if not hasattr(target, name):
                return False
            target = getattr(target, name)
        return True
    return False


def test_the_checks_read_something():
    assert len(GUIDES) >= 6 and len(SOURCES) > 50
    mentioned = {m for _, text in texts() for m in MODULE_PATH.findall(text)}
    assert {"crm_activation.campaign.email_settings", "crm_activation.testing"} <= mentioned
    assert not resolves("crm_activation.config") and not resolves("crm_activation.email.tools")
    assert resolves("crm_activation.email.coupons.lookup") and not resolves("crm_activation.email.coupons.nothing")
    assert PARENT_PATH.findall("see ../outside/platform-apis.md.") == ["../outside/platform-apis.md"]
    assert outside_repository("../outside/platform-apis.md") and not outside_repository("../../pyproject.toml")


def test_every_module_path_mentioned_resolves():
    stale = sorted({(where, m) for where, text in texts() for m in MODULE_PATH.findall(text) if not resolves(m)})
    assert not stale, f"module paths that do not exist: {stale}"


def test_every_repository_path_mentioned_exists():
    stale = sorted(
        {(where, p) for where, text in texts() for p in REPO_PATH.findall(text) if not (ROOT / p).exists()}
        | {(where, p) for where, text in texts() for p in DOCS_FILE.findall(text) if not (ROOT / p).is_file()}
    )
    assert not stale, f"paths that do not exist: {stale}"


def test_every_python_file_named_exists_somewhere():
    """A bare `name.py` (a module named relative to its wing, `engine.py`) is a file of the repository."""
    names = {path.name for folder in ("core", "connectors", "plugins", "tests", "bench", "scripts")
             for path in (ROOT / folder).rglob("*.py")}
    unknown = sorted(
        {(where, n) for where, text in texts() for n in PYTHON_FILE.findall(text) if n not in names} - IMAGINARY
    )
    assert not unknown, f"Python files that do not exist: {unknown}"


def outside_repository(path: str) -> bool:
    """Whether a `../` path leads to no file of the repository from any folder of it where one is read (a
    guide's own, the root, a plugin's: `extend = "../../pyproject.toml"` is read in a plugin's folder)."""
    folders = [ROOT, ROOT / "docs", *ROOT.glob("plugins/*/"), *ROOT.glob("plugins/*/src/*/")]
    targets = [(folder / path).resolve() for folder in folders]
    return not any(target.is_relative_to(ROOT) and target.exists() for target in targets)


def test_nothing_points_outside_the_repository():
    found = {(where, path) for where, text in texts() for path in PARENT_PATH.findall(text)}
    outside = sorted((where, path) for where, path in found if outside_repository(path))
    assert not outside, f"paths outside the repository (or to nothing): {outside}"


@pytest.mark.parametrize("guide", GUIDES, ids=lambda path: path.name)
def test_relative_links_in_the_guides_lead_to_files(guide: Path):
    text = guide.read_text(encoding="utf-8")
    links = [link for link in MARKDOWN_LINK.findall(text) if "://" not in link and not link.startswith("mailto:")]
    broken = [link for link in links if not (guide.parent / link).resolve().exists()]
    assert not broken, f"{guide.name} links to nothing: {broken}"


def test_every_capability_mentioned_exists():
    names = {member.name for member in Capability}
    unknown = sorted({(where, n) for where, text in texts() for n in CAPABILITY.findall(text) if n not in names})
    assert not unknown, f"capabilities that do not exist: {unknown}"
