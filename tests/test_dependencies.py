"""Every third-party package production code imports is declared in pyproject.toml, and
every place that names the supported Pythons names the same ones.

A package that arrives only as another's dependency (prometheus_client through Flower)
disappears the day that one drops it, and the lock says nothing until then.
"""

import ast
import importlib.metadata
import re
import sys
import tomllib

from packaging.specifiers import SpecifierSet

from tests.fixtures import ROOT

PRODUCTION_CODE = ("config", "apps", "workers")


def test_every_imported_package_is_a_declared_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_normal(re.split(r"[\[<>=!~; ]", requirement)[0])
                for requirement in project["dependencies"]}
    distributions = importlib.metadata.packages_distributions()
    undeclared = {}
    for module in _imported_top_level_modules():
        providers = {_normal(name) for name in distributions.get(module, [])}
        if not providers & declared:
            undeclared[module] = sorted(providers)
    assert not undeclared, undeclared


def _imported_top_level_modules() -> set[str]:
    modules: set[str] = set()
    for package in PRODUCTION_CODE:
        for path in (ROOT / package).rglob("*.py"):
            if {"tests", "migrations"} & set(path.relative_to(ROOT).parts):
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    modules |= {alias.name.partition(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules.add(node.module.partition(".")[0])
    assert "celery" in modules  # the scan reads the code
    return {module for module in modules
            if module not in sys.stdlib_module_names and module not in PRODUCTION_CODE}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_supported_pythons_are_the_same_everywhere():
    """requires-python, `make dev`'s choice of interpreter, the Docker image's base and the
    interpreter running this test agree; the locks are resolved for all of them."""
    allowed = SpecifierSet(tomllib.loads((ROOT / "pyproject.toml").read_text())
                           ["project"]["requires-python"])
    makefile = (ROOT / "Makefile").read_text()
    supported = re.search(r"^SUPPORTED_PYTHONS := (.+)$", makefile, re.MULTILINE)[1].split()
    base = re.search(r"^FROM python:(\d+\.\d+)", (ROOT / "docker" / "Dockerfile").read_text(),
                     re.MULTILINE)[1]
    minors = sorted(int(version.split(".")[1]) for version in supported)

    assert [f"3.{minor}.0" in allowed for minor in range(minors[0] - 1, minors[-1] + 2)] == [
        False, *[True] * len(minors), False]  # exactly the listed ones, no gap
    assert base in supported
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in supported
    for lock in ("base.lock", "dev.lock"):  # `make lock` resolves with --universal
        assert "python_full_version" in (ROOT / "requirements" / lock).read_text(), lock
