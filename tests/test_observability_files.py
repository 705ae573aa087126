"""deploy/observability/: promtool accepts the rules and their unit tests pass, and every
metric the rules and the dashboard query is one `/metrics` serves."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest

from workers.ops.prometheus import _registry

DIRECTORY = Path(__file__).resolve().parent.parent / "deploy" / "observability"
RULES = DIRECTORY / "prometheus-rules.yml"
METRIC = re.compile(r"\b(celery_[a-z_]+)\b")


def promtool(*args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: apt-get install prometheus (.ci/run does)"
    return subprocess.run([binary, *args], cwd=DIRECTORY, capture_output=True, text=True,
                          timeout=120, check=False)


def test_promtool_accepts_the_rules():
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_in_its_unit_test():
    result = promtool("test", "rules", "prometheus-rules.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)",
                            (DIRECTORY / "prometheus-rules.test.yml").read_text()))
    alerts = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"]
              for rule in group["rules"]}
    assert alerts <= tested, f"alerts with no unit test: {sorted(alerts - tested)}"


@pytest.mark.django_db
def test_rules_and_dashboard_query_only_served_metrics():
    served = set()
    for line in generate_latest(_registry).decode().splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
            name = name.removesuffix("_total")
            served.update([name + suffix for suffix in suffixes.get(kind, [""])])
    dashboard = json.loads((DIRECTORY / "grafana-dashboard.json").read_text())
    queried = {METRIC.search(target["expr"]) and target["expr"]
               for panel in dashboard["panels"] for target in panel.get("targets", [])}
    queried |= {rule["expr"] for group in yaml.safe_load(RULES.read_text())["groups"]
                for rule in group["rules"]}
    names = {name for expr in queried if expr for name in METRIC.findall(expr)}
    assert names, "no metric found in the queries"
    assert names <= served, f"queried but not served: {sorted(names - served)}"
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
