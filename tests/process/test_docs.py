"""The documentation site builds with warnings as errors, offline, and the README's links
point at pages that exist."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.fixtures import ROOT

needs_mkdocs = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None,
    reason="mkdocs is not installed (pip install -e '.[docs]'; CI installs it)",
)


@needs_mkdocs
def test_site_builds_strict(tmp_path: Path) -> None:
    """``mkdocs build --strict``: a broken link, a page missing from the nav, a snippet of the
    README that no longer exists or a docstring the API reference cannot parse fails it."""
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        env=dict(os.environ, NO_MKDOCS_2_WARNING="1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    reference = (tmp_path / "reference" / "index.html").read_text()
    assert "queue_task" in reference and "wait_for_task" in reference
    quickstart = re.sub(r"<[^>]+>", "", (tmp_path / "quickstart" / "index.html").read_text())
    assert "pgqueue-worker --task-paths myapp.jobs" in quickstart
    assert "--8&lt;--" not in quickstart
    assert "Unreleased" in (tmp_path / "changelog" / "index.html").read_text()


@needs_mkdocs
def test_site_fetches_nothing_at_build_time() -> None:
    """No web fonts, social cards or privacy plugin: each would download at build time."""
    import yaml

    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)
    assert config["theme"]["font"] == "false"
    plugins = [next(iter(p)) if isinstance(p, dict) else p for p in config["plugins"]]
    assert not {"social", "privacy", "optimize"} & set(plugins)


def test_api_reference_covers_every_public_name() -> None:
    import pgqueue

    reference = (ROOT / "docs" / "reference.md").read_text()
    documented = set(re.findall(r"^::: pgqueue\.(?:worker\.)?(\w+)$", reference, re.M))
    assert documented - {"testing"} == set(pgqueue.__all__)


def test_readme_links_point_at_files() -> None:
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(((?:docs/|CHANGELOG|LICENSE)[^)#]*)", readme)
    assert targets
    missing = [target for target in targets if not (ROOT / target).exists()]
    assert not missing
