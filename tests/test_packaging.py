"""The distribution's name (pytest-vlmbench) wherever a tool or vlmbench itself reads it, and the README's install lines."""
import re
from pathlib import Path

import pytest

import vlmbench
from vlmbench.results import summary

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
ROOT = Path(__file__).resolve().parents[1]


def test_the_distribution_is_named_pytest_vlmbench_and_the_import_name_stays():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == vlmbench.DISTRIBUTION == "pytest-vlmbench"
    assert project["scripts"] == {"vlmbench-report": "vlmbench.cli:main"}
    assert project["entry-points"]["pytest11"] == {"vlmbench": "vlmbench.plugin"}


def test_every_metadata_lookup_by_name_uses_the_distribution_name():
    lookups = [(path.name, name) for path in [*ROOT.glob("scripts/*"), *ROOT.glob("vlmbench/**/*.py")]
               if path.is_file()
               for name in re.findall(r"distribution\('([^']+)'\)", path.read_text(errors="replace"))]
    assert lookups and all(name == vlmbench.DISTRIBUTION for _, name in lookups), lookups


def test_the_summary_records_the_distribution_version_or_why_not(monkeypatch):
    monkeypatch.setattr(summary, "installed_version", lambda name: "9.9" if name == "pytest-vlmbench" else None)
    assert summary.distribution_version() == {"pytest_vlmbench": "9.9"}
    monkeypatch.setattr(summary, "installed_version", lambda name: None)
    found = summary.distribution_version()
    assert found["pytest_vlmbench"] is None and "'pytest-vlmbench'" in found["pytest_vlmbench_null_reason"]


def test_the_readme_shows_the_cpu_only_install_route_and_what_the_default_pulls():
    readme = (ROOT / "README.md").read_text()
    assert "pip install --index-url https://download.pytorch.org/whl/cpu torch torchvision" in readme
    assert "pytest-vlmbench" in readme and "6 GB" in readme
