"""A task named by a string is a task that exists.

Beat's schedule, the outbox and `send_task` name tasks by string, and nothing checks a
string until a worker receives it and dead-letters it as unknown. Here every string that
production code passes where a task name goes is looked up in the registry a fresh worker
process builds by Celery's autodiscovery (not this test process, which has imported
everything).
"""

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator

from config.celery import PLATFORM_TASK_PACKAGES
from tests.fixtures import ROOT

PRODUCTION_CODE = ("config", "apps", "workers")
NAME_ARGUMENTS = {"send_task", "signature"}  # the first argument is a task name
NAME_KEYWORDS = {"task_name", "task"}


def test_every_task_named_by_a_string_is_registered():
    registered = _registry_of_a_fresh_process()
    named = list(_task_names_in_code())
    assert len(named) >= 4, named  # beat's platform entries at least: the scan works
    unknown = [(where, name) for where, name in named if name not in registered]
    assert not unknown, unknown


def test_every_platform_tasks_module_is_autodiscovered():
    modules = {".".join(path.relative_to(ROOT).parent.parts)
               for path in (ROOT / "workers").glob("*/**/tasks.py")
               if "tests" not in path.relative_to(ROOT).parts}
    assert modules == set(PLATFORM_TASK_PACKAGES)


def test_every_task_the_code_defines_is_registered_by_autodiscovery_alone():
    registered = _registry_of_a_fresh_process()
    defined = list(_defined_task_names())
    assert "workers.tasks.dead_letter_drill" in defined  # the scan reads the decorators
    assert set(defined) <= registered, set(defined) - registered


def _defined_task_names() -> Iterator[str]:
    """Each @shared_task's name: its `name=`, or Celery's default, module.function."""
    for package in ("apps", "workers"):
        for path in sorted((ROOT / package).rglob("tasks.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if "tests" in parts:
                continue
            for node in ast.parse(path.read_text()).body:
                for decorator in getattr(node, "decorator_list", []):
                    if "shared_task" in ast.unparse(decorator):
                        names = [_text(k.value) for k in getattr(decorator, "keywords", [])
                                 if k.arg == "name"]
                        yield names[0] if names else ".".join((*parts, node.name))


def test_the_scan_sees_each_way_of_naming_a_task(tmp_path):
    source = ('app.send_task("a.b.one")\n'
              'sig = signature("a.b.two")\n'
              'outbox_enqueue(task_name="a.b.three")\n'
              'SCHEDULE = {"x": {"task": "a.b.four", "schedule": 1.0}}\n')
    assert [name for _, name in _names_in(source, "example.py")] == [
        "a.b.one", "a.b.two", "a.b.three", "a.b.four"]


def _registry_of_a_fresh_process() -> set[str]:
    script = ("import django, json; django.setup(); from config.celery import app; "
              "app.loader.import_default_modules(); print(json.dumps(sorted(app.tasks)))")
    env = os.environ | {"DJANGO_SETTINGS_MODULE": "config.settings", "DJANGO_ENV": "test",
                        "ENV_FILE": ""}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout.splitlines()[-1]))


def _task_names_in_code() -> Iterator[tuple[str, str]]:
    for package in PRODUCTION_CODE:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = set(path.relative_to(ROOT).parts)
            if not parts & {"tests", "migrations"}:
                yield from _names_in(path.read_text(), str(path.relative_to(ROOT)))


def _names_in(source: str, where: str) -> Iterator[tuple[str, str]]:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            function = node.func
            called = function.attr if isinstance(function, ast.Attribute) else getattr(
                function, "id", "")
            if called in NAME_ARGUMENTS and node.args and _text(node.args[0]):
                yield f"{where}:{node.lineno}", _text(node.args[0])
            for keyword in node.keywords:
                if keyword.arg in NAME_KEYWORDS and _text(keyword.value):
                    yield f"{where}:{node.lineno}", _text(keyword.value)
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if key is not None and _text(key) == "task" and _text(value):
                    yield f"{where}:{node.lineno}", _text(value)


def _text(node: ast.expr) -> str:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else ""


