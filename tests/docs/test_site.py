"""The documentation site builds with ``mkdocs build --strict``, and the README stays short and linked.

``--strict`` turns every warning into a failure: a broken link or anchor, a page missing from ``nav``, an
API reference (``::: module``) that does not resolve, a docstring griffe cannot parse. The second test
checks that each of those breakages really fails the build.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from markdown.extensions.toc import slugify

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
README_HARD_LIMIT = 300
LINK = re.compile(r"\]\(([^)\s]+)\)")


def build_site(config: Path, site_dir: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config), "--site-dir", str(site_dir)],
        cwd=ROOT, capture_output=True, text=True, env=environment, timeout=600,
    )


def test_mkdocs_build_strict(tmp_path):
    result = build_site(ROOT / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stdout + result.stderr
    site = tmp_path / "site"
    assert "WeightedTopKTrainingSAEConfig" in (site / "api" / "architectures" / "index.html").read_text()
    assert "Unreleased" in (site / "changelog" / "index.html").read_text()  # CHANGELOG.md included as it is
    for page in ("getting-started", "weighted-saes", "identifiability", "gba", "topafa", "real-models",
                 "autointerp", "benchmarks", "scaling-out"):
        assert (site / page / "index.html").is_file(), page


def breakable_copy(tmp_path: Path) -> Path:
    """mkdocs.yml and docs/ copied to tmp_path, still reading the package and CHANGELOG.md of the repository."""
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    config["docs_dir"] = str(tmp_path / "docs")
    for extension in config["markdown_extensions"]:
        if isinstance(extension, dict) and "pymdownx.snippets" in extension:
            extension["pymdownx.snippets"]["base_path"] = [str(ROOT)]
    for plugin in config["plugins"]:
        if isinstance(plugin, dict) and "mkdocstrings" in plugin:
            plugin["mkdocstrings"]["handlers"]["python"]["paths"] = [str(ROOT)]
    path = tmp_path / "mkdocs.yml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False))
    return path


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


BREAKAGES = {
    "broken link": lambda docs, config: append(docs / "index.md", "\n[gone](no-such-page.md)\n"),
    "broken anchor": lambda docs, config: append(docs / "index.md", "\n[gone](gba.md#no-such-section)\n"),
    "page missing from nav": lambda docs, config: (docs / "orphan.md").write_text("# Orphan\n"),
    "unresolved API reference": lambda docs, config: append(docs / "api" / "training.md", "\n::: wsae_lens.no_such_module\n"),
    "missing snippet": lambda docs, config: (docs / "changelog.md").write_text('--8<-- "NO_SUCH_FILE.md"\n'),
}


@pytest.mark.slow
def test_the_copy_builds_before_it_is_broken(tmp_path):
    result = build_site(breakable_copy(tmp_path), tmp_path / "site")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_strict_build_fails_on(breakage, tmp_path):
    config = breakable_copy(tmp_path)
    BREAKAGES[breakage](tmp_path / "docs", config)
    result = build_site(config, tmp_path / "site")
    assert result.returncode != 0, f"{breakage} did not fail the strict build:\n{result.stderr}"


def headings_slugs(markdown: str) -> set[str]:
    """Anchors python-markdown's toc (mkdocs) gives the headings; the same as GitHub's for ASCII headings."""
    text = re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M)
    return {slugify(match.group(1).replace("`", "").strip(), "-") for match in re.finditer(r"^#+ (.+)$", text, re.M)}


def test_readme_is_short_and_holds_no_research_tables_but_the_verdict():
    text = README.read_text()
    assert len(text.splitlines()) <= README_HARD_LIMIT
    verdict = text.split("\n## Does weighting help?\n", 1)[1].split("\n## ", 1)[0]
    assert len(re.findall(r"^\|---", verdict, flags=re.M)) == 2  # the decisive toy and the SmolLM2 sweep
    tables = re.findall(r"^\|---", text.replace(verdict, ""), flags=re.M)
    assert len(tables) == 1, "besides the verdict, the README keeps only the capability table; research tables live in docs/"


def test_readme_links_resolve():
    for target in LINK.findall(README.read_text()):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        assert (ROOT / path).exists(), target
        if anchor:
            assert anchor in headings_slugs((ROOT / path).read_text()), target


def test_every_capability_row_links_into_the_docs():
    text = README.read_text()
    table = text.split("\n## What is in it\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| capability")]
    assert len(rows) >= 8
    for row in rows:
        assert "](docs/" in row, row


def test_docs_tools_are_dev_extras():
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    names = {re.split(r"[<>=\[ ]", requirement, maxsplit=1)[0] for requirement in dev}
    assert {"mkdocs", "mkdocs-material", "mkdocstrings-python"} <= names
    assert "mkdocs build --strict" in (ROOT / "Makefile").read_text()


def test_command_line_page_lists_every_command():
    from wsae_lens.cli import app

    page = (ROOT / "docs" / "cli.md").read_text()
    for info in app.registered_commands:
        name = info.name or info.callback.__name__
        assert f"| `wsae-lens {name}" in page, name
