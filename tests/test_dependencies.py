"""Every third-party package production code imports is declared in pyproject.toml.

A package that arrives only as another's dependency (prometheus_client through Flower)
disappears the day that one drops it, and the lock says nothing until then.
"""

import ast
import importlib.metadata
import re
import sys
import tomllib

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
