"""deploy/kubernetes renders, validates, and agrees with the Procfile and the settings.

Each overlay is rendered with `kubectl kustomize` and its core objects are checked by
`kubernetes-validate --strict` against the Kubernetes schema; KEDA's objects (a CRD no
schema here knows) and what no schema can know are checked below.
"""

import shlex
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml
from django.urls import resolve
from kombu.transport import redis as kombu_redis

from config.celery import app
from tests.fixtures import ROOT, project_tasks
from tests.test_deploy_files import procfile
from workers.core.priorities import REDIS_STEPS
from workers.core.routing import QUEUES, queue_for

KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(path.name for path in (KUBERNETES / "overlays").iterdir())
BROKER_OF_OVERLAY = {"production": "redis", "production-rabbitmq": "rabbitmq",
                     "production-sentinel": "redis-sentinel"}
KEDA = "keda.sh/v1alpha1"


@cache
def rendered(overlay: str) -> tuple[dict, ...]:
    assert shutil.which("kubectl"), "kubectl is needed to render deploy/kubernetes"
    result = subprocess.run(["kubectl", "kustomize", str(KUBERNETES / "overlays" / overlay)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def objects(overlay: str, kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in rendered(overlay) if doc["kind"] == kind}


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def longest_hard_limit(queue: str) -> int:
    return max((task.time_limit or app.conf.task_time_limit) for task in project_tasks()
               if queue_for(task.name, task) == queue)


def test_every_overlay_is_listed():
    assert set(OVERLAYS) == set(BROKER_OF_OVERLAY)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_core_objects_pass_strict_schema_validation(overlay, tmp_path):
    core = [doc for doc in rendered(overlay) if doc["apiVersion"] != KEDA]
    manifest = tmp_path / f"{overlay}.yaml"
    manifest.write_text(yaml.safe_dump_all(core))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "kubernetes-validate"), "--strict", "--quiet",
         str(manifest)], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_procfile_process_has_a_deployment_running_its_command(overlay):
    deployments = objects(overlay, "Deployment")
    for process, command in procfile().items():
        containers = pod_spec(deployments[process])["containers"]
        assert [c["command"] for c in containers] == [shlex.split(command)], process


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grace_periods_exceed_the_longest_hard_time_limit_of_each_pool(overlay):
    deployments = objects(overlay, "Deployment")
    for queue in QUEUES:
        grace = pod_spec(deployments[f"worker-{queue}"])["terminationGracePeriodSeconds"]
        assert grace > longest_hard_limit(queue), queue
    web = pod_spec(deployments["web"])
    graceful = shlex.split(procfile()["web"])
    assert web["terminationGracePeriodSeconds"] > int(
        graceful[graceful.index("--graceful-timeout") + 1])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_reach_what_exists(overlay):
    config = next(iter(objects(overlay, "ConfigMap").values()))["data"]
    for name, deployment in objects(overlay, "Deployment").items():
        for container in pod_spec(deployment)["containers"]:
            probes = [container[key] for key in ("livenessProbe", "readinessProbe")
                      if key in container]
            assert probes, f"{name} has no probe"
            for probe in probes:
                if "httpGet" in probe:
                    resolve(probe["httpGet"]["path"])  # raises Resolver404 for a typo
                    host = {h["name"]: h["value"] for h in probe["httpGet"]["httpHeaders"]}
                    assert host["Host"] in config["ALLOWED_HOSTS"].split(","), name
                elif "exec" in probe:
                    command = probe["exec"]["command"]
                    assert command[:3] == ["python", "-m", "workers.ops.liveness"], name
                    assert command[3] in (config["WORKER_HEARTBEAT_FILE"],
                                          config["BEAT_HEARTBEAT_FILE"]), name
                else:
                    port = probe["tcpSocket"]["port"]
                    assert port in {p["name"] for p in container["ports"]}, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_as_non_root_with_requests_and_limits(overlay):
    workloads = {**objects(overlay, "Deployment"), **objects(overlay, "Job")}
    for name, workload in workloads.items():
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        for container in spec["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
            assert set(container["resources"]) == {"requests", "limits"}, name
            assert container["envFrom"] == [
                {"configMapRef": {"name": next(iter(objects(overlay, "ConfigMap")))}},
                {"secretRef": {"name": "app-secrets"}}], name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_values_are_committed_and_flower_stays_inside(overlay):
    assert not objects(overlay, "Secret")
    assert objects(overlay, "Service")["flower"]["spec"]["type"] == "ClusterIP"
    assert not objects(overlay, "Ingress")
    assert objects(overlay, "Deployment")["beat"]["spec"]["replicas"] == 2  # one holds the lock
    budgets = {budget["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
               for budget in objects(overlay, "PodDisruptionBudget").values()}
    assert budgets == {"web", "worker-critical", "worker-bulk", "beat"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_scaled_objects_scale_each_pool_on_its_own_queue(overlay):
    scaled = objects(overlay, "ScaledObject")
    deployments = objects(overlay, "Deployment")
    assert set(scaled) == {f"worker-{queue}" for queue in QUEUES}
    for name, scaled_object in scaled.items():
        spec = scaled_object["spec"]
        target = deployments[spec["scaleTargetRef"]["name"]]
        command = pod_spec(target)["containers"][0]["command"]
        queue = command[command.index("-Q") + 1]
        triggers = spec["triggers"]
        assert {trigger["type"] for trigger in triggers} == {BROKER_OF_OVERLAY[overlay]}, name
        if BROKER_OF_OVERLAY[overlay] == "rabbitmq":  # one queue holds every priority
            assert [trigger["metadata"]["queueName"] for trigger in triggers] == [queue], name
        else:
            assert [trigger["metadata"]["listName"] for trigger in triggers] == redis_lists(queue)
            sums = spec["advanced"]["scalingModifiers"]
            assert sums["formula"] == " + ".join(trigger["name"] for trigger in triggers), name
            assert {sums["target"]} == {t["metadata"]["listLength"] for t in triggers}, name
        assert spec["minReplicaCount"] >= 1, name  # a pool never scales to no worker
        assert spec["maxReplicaCount"] > spec["minReplicaCount"], name


def redis_lists(queue: str) -> list[str]:
    """The lists a queue's messages wait in on Redis, as the workers' fetch reads them:
    the queue's own key and one per priority step above it (workers/core/priorities.py)."""
    assert (0, *REDIS_STEPS) == tuple(kombu_redis.Channel.priority_steps)
    return [queue, *(f"{queue}{kombu_redis.Channel.sep}{step}" for step in REDIS_STEPS)]


def workloads(overlay: str) -> dict[str, dict]:
    return {**objects(overlay, "Deployment"), **objects(overlay, "Job")}


def selects(selector: dict, labels: dict[str, str]) -> bool:
    """A label selector's verdict on a pod's labels (matchLabels and matchExpressions)."""
    tests = {"In": lambda key, values: labels.get(key) in values,
             "NotIn": lambda key, values: labels.get(key) not in values,
             "Exists": lambda key, values: key in labels,
             "DoesNotExist": lambda key, values: key not in labels}
    return (all(labels.get(key) == value
                for key, value in selector.get("matchLabels", {}).items())
            and all(tests[e["operator"]](e["key"], e.get("values", ()))
                    for e in selector.get("matchExpressions", ())))


def ingress_policies(overlay: str, labels: dict[str, str]) -> list[dict]:
    return [policy["spec"] for policy in objects(overlay, "NetworkPolicy").values()
            if "Ingress" in policy["spec"]["policyTypes"]
            and selects(policy["spec"]["podSelector"], labels)]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_pod_gets_a_service_account_token(overlay):
    """No process talks to the Kubernetes API: a token in the pod would only serve an
    attacker who got code execution in it."""
    for name, workload in workloads(overlay).items():
        assert pod_spec(workload).get("automountServiceAccountToken") is False, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_flower_admits_only_labelled_peers_on_its_port(overlay):
    flower = objects(overlay, "Deployment")["flower"]
    policies = ingress_policies(overlay, flower["spec"]["template"]["metadata"]["labels"])
    assert policies, "no NetworkPolicy isolates Flower"
    (container,) = pod_spec(flower)["containers"]
    ports = {port["containerPort"] for port in container["ports"]}
    for policy in policies:
        for rule in policy.get("ingress", []):
            assert rule.get("from"), "a rule without `from` admits every pod"
            for peer in rule["from"]:
                assert "ipBlock" not in peer
                for key in ("podSelector", "namespaceSelector"):
                    if key in peer:
                        assert peer[key] == {"matchLabels": {"flower-access": "true"}}, peer
            assert {port["port"] for port in rule["ports"]} <= ports
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["FLOWER_ADDRESS"] == "0.0.0.0"  # the pod's interfaces, for the Service


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_isolated_and_only_web_and_flower_accept_connections(overlay):
    open_to = {"web", "flower"}
    for name, workload in workloads(overlay).items():
        policies = ingress_policies(overlay, workload["spec"]["template"]["metadata"]["labels"])
        assert policies, f"no NetworkPolicy selects {name}"
        rules = [rule for policy in policies for rule in policy.get("ingress", [])]
        assert bool(rules) == (name in open_to), name


def config_map(overlay: str) -> dict[str, str]:
    return next(iter(objects(overlay, "ConfigMap").values()))["data"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_variable_keda_reads_is_in_the_config_map_or_the_documented_secrets(overlay):
    """A ScaledObject's `*FromEnv` is read from the workers' environment: the ConfigMap, or
    the Secret whose keys docs/scaling.md lists."""
    documented = (ROOT / "docs" / "scaling.md").read_text().split("`secrets.env` holds", 1)[1]
    documented = documented.split("\n\n", 1)[0]
    for name, scaled_object in objects(overlay, "ScaledObject").items():
        for trigger in scaled_object["spec"]["triggers"]:
            for key, variable in trigger["metadata"].items():
                if key.endswith("FromEnv"):
                    assert variable in config_map(overlay) or f"`{variable}`" in documented, (
                        name, key, variable)


def test_the_sentinel_overlay_names_its_group_and_waits_for_a_replica():
    config = config_map("production-sentinel")
    assert config["REDIS_SENTINEL_MASTER"]
    assert int(config["BROKER_MIN_REPLICAS"]) >= 1


def test_the_rabbitmq_overlay_gives_up_on_a_silent_worker_within_a_minute():
    assert 2 * int(config_map("production-rabbitmq")["BROKER_HEARTBEAT"]) <= 60
