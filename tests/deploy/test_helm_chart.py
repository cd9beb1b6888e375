"""helm/sabot rendered by Helm's own engine (helm-python-sdk), checked against the Kubernetes
schemas (kubernetes-validate), Helm's linter, the chart's values.schema.json, Sabot's own
configuration parser and HTTP routes, and the Dockerfile it runs."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
from deploy_support import REPO, containers, env_of, parse_dockerfile

helm_python = pytest.importorskip("helm_python", reason="pip install helm-python-sdk")
kv_utils = pytest.importorskip("kubernetes_validate.utils", reason="pip install kubernetes-validate")

CHART_DIR = REPO / "helm" / "sabot"
#: The oldest Kubernetes the chart declares (Chart.yaml kubeVersion) and the newest schemas.
KUBE_VERSIONS = ["1.25.0", kv_utils.latest_version()]
HEX64 = re.compile(r"^[0-9a-f]{64}$")
TOKEN = "s3cr3t-token-for-tests-0123456789"

#: Rendered variants: what a user changes most.
SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "ten-workers-no-autoscaling": {"worker": {"replicas": 10, "autoscaling": {"enabled": False}}},
    "persistence": {"coordinator": {"persistence": {"enabled": True, "storageClassName": "fast",
                                                    "size": "20Gi"}}},
    "token": {"auth": {"token": TOKEN}},
    "custom-image": {"image": {"repository": "registry.example.com:5000/team/sabot", "tag": "1.2.3",
                               "pullPolicy": "Always"},
                     "imagePullSecrets": [{"name": "regcred"}]},
    "memory-autoscaling": {"worker": {"autoscaling": {"minReplicas": 3, "maxReplicas": 40,
                                                      "targetMemoryUtilizationPercentage": 80}}},
    "service-monitor": {"metrics": {"serviceMonitor": {"enabled": True}}, "auth": {"token": TOKEN}},
    "existing-secrets": {"clusterKey": {"existingSecret": "my-key", "key": "k"},
                         "auth": {"existingSecret": "my-token"}},
    "percent-pdb": {"worker": {"podDisruptionBudget": {"maxUnavailable": "25%"}}},
    "other-release": {"fullnameOverride": "analytics"},
    "data-port": {"coordinator": {"dataPort": 9092}},
}


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def scenario(request: pytest.FixtureRequest, chart: Any) -> tuple[str, Any]:
    return request.param, chart.render(SCENARIOS[request.param])


def _deployments(rendered: Any) -> dict[str, dict[str, Any]]:
    by_component = {}
    for dep in rendered.of_kind("Deployment"):
        by_component[dep["metadata"]["labels"]["app.kubernetes.io/component"]] = dep
    assert set(by_component) == {"coordinator", "worker"}
    return by_component


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _pod_labels(dep: dict[str, Any]) -> dict[str, str]:
    return dict(dep["spec"]["template"]["metadata"]["labels"])


# -- schemas and lint -------------------------------------------------------------------------
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_object_validates_strictly_against_kubernetes(scenario: Any, kube_version: str) -> None:
    name, rendered = scenario
    assert rendered.documents, name
    for doc in rendered.documents:
        if doc.obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD of the Prometheus Operator: no upstream schema; checked below
        try:
            kv_utils.validate(doc.obj, kube_version, strict=True)
        except kv_utils.ValidationError as exc:
            pytest.fail(f"{name}: {doc.kind}/{doc.name} from {doc.source} is invalid for "
                        f"Kubernetes {kube_version}: {exc.message} at {list(exc.path)}")


def test_service_monitor_is_well_formed(chart: Any) -> None:
    rendered = chart.render(SCENARIOS["service-monitor"])
    (sm,) = rendered.of_kind("ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    selector = sm["spec"]["selector"]["matchLabels"]
    services = rendered.of_kind("Service")
    # It finds the coordinator and the (headless) worker Service, on their port named http.
    assert {s["metadata"]["name"] for s in services if _matches(selector, s["metadata"]["labels"])} \
        == {"sabot-coordinator", "sabot-worker"}
    for svc in services:
        assert "http" in {p["name"] for p in svc["spec"]["ports"]}
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
    assert endpoint["authorization"]["credentials"]["name"] == "sabot-auth"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_helm_lint_is_clean(name: str) -> None:
    report = helm_python.lint(CHART_DIR, SCENARIOS[name], strict=True, kube_version="v1.33.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report.get("errors", [])
    assert report["total_charts_linted"] == 1
    assert problems == [], problems


# -- names the README uses ----------------------------------------------------------------------
def test_default_names_match_the_readme(chart: Any) -> None:
    rendered = chart.render()
    svc = rendered.get("Service", "sabot-coordinator")
    ports = {p["name"]: p["port"] for p in svc["spec"]["ports"]}
    # curl http://sabot-coordinator:8080/stats
    assert ports == {"http": 8080, "zmq": 8081, "data": 8082}
    rendered.get("Deployment", "sabot-worker")  # kubectl scale deployment sabot-worker
    rendered.get("Deployment", "sabot-coordinator")


@pytest.mark.parametrize("values, port", [({}, 8082), ({"coordinator": {"dataPort": 9092}}, 9092)],
                         ids=["default", "override"])
def test_coordinator_exposes_the_data_port(chart: Any, values: dict[str, Any], port: int) -> None:
    """coordinator.dataPort reaches SABOT_DATA_PORT, the container's port named data and the
    coordinator Service's port, and no other port moves."""
    rendered = chart.render(values)
    svc = rendered.get("Service", "sabot-coordinator")
    svc_ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert svc_ports["data"] == {"name": "data", "port": port, "targetPort": "data",
                                 "protocol": "TCP"}
    assert {n: p["port"] for n, p in svc_ports.items()} == {"http": 8080, "zmq": 8081,
                                                            "data": port}
    (c,) = containers(rendered.get("Deployment", "sabot-coordinator"))
    declared = {p["name"]: p for p in c["ports"]}
    assert declared["data"] == {"name": "data", "containerPort": port, "protocol": "TCP"}
    assert env_of(c)["SABOT_DATA_PORT"]["value"] == str(port)
    assert env_of(c)["SABOT_ZMQ_PORT"]["value"] == "8081"
    # workers need no setting: they learn the port from GET /cluster
    (worker,) = containers(rendered.get("Deployment", "sabot-worker"))
    assert "SABOT_DATA_PORT" not in env_of(worker)
    assert "data" not in {p["name"] for p in worker["ports"]}
    assert f"{port} (data)" in rendered.notes


def test_release_name_prefixes_objects(chart: Any) -> None:
    rendered = chart.render(release="prod")
    assert rendered.get("Deployment", "prod-sabot-worker")
    assert rendered.get("Service", "prod-sabot-coordinator")
    worker_env = env_of(containers(rendered.get("Deployment", "prod-sabot-worker"))[0])
    assert worker_env["COORDINATOR_HOST"]["value"] == "prod-sabot-coordinator"


# -- wiring ---------------------------------------------------------------------------------------
def test_selectors_match_their_pods_only(scenario: Any) -> None:
    name, rendered = scenario
    deps = _deployments(rendered)
    for dep in deps.values():
        assert _matches(dep["spec"]["selector"]["matchLabels"], _pod_labels(dep)), name
    for svc in rendered.of_kind("Service"):
        selected = [c for c, d in deps.items() if _matches(svc["spec"]["selector"], _pod_labels(d))]
        assert len(selected) == 1, (name, svc["metadata"]["name"], selected)
        component = selected[0]
        # every Service port targets a port the selected container declares
        names = {p["name"] for c in containers(deps[component]) for p in c["ports"]}
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in names, (svc["metadata"]["name"], port)
    coordinator_svc = [s for s in rendered.of_kind("Service")
                       if _matches(s["spec"]["selector"], _pod_labels(deps["coordinator"]))]
    assert len(coordinator_svc) == 1 and "clusterIP" not in coordinator_svc[0]["spec"]
    for pdb in rendered.of_kind("PodDisruptionBudget"):
        sel = pdb["spec"]["selector"]["matchLabels"]
        assert _matches(sel, _pod_labels(deps["worker"]))
        assert not _matches(sel, _pod_labels(deps["coordinator"]))


def test_workers_point_at_the_coordinator_service(scenario: Any) -> None:
    _, rendered = scenario
    deps = _deployments(rendered)
    (coord_container,) = containers(deps["coordinator"])
    (worker,) = containers(deps["worker"])
    env = env_of(worker)
    svc_name = env["COORDINATOR_HOST"]["value"]
    svc = rendered.get("Service", svc_name)
    assert _matches(svc["spec"]["selector"], _pod_labels(deps["coordinator"]))
    http = next(p for p in svc["spec"]["ports"] if p["name"] == "http")
    assert env["COORDINATOR_PORT"]["value"] == str(http["port"])
    coord_ports = {p["name"]: p["containerPort"] for p in coord_container["ports"]}
    coord_env = env_of(coord_container)
    assert coord_env["SABOT_PORT"]["value"] == str(coord_ports["http"])
    assert coord_env["SABOT_ZMQ_PORT"]["value"] == str(coord_ports["zmq"])
    assert coord_env["SABOT_DATA_PORT"]["value"] == str(coord_ports["data"])
    # GET /cluster tells the workers the coordinator's own data port, which they dial on the
    # Service's name (COORDINATOR_HOST): the Service must expose it on that same number.
    data = next(p for p in svc["spec"]["ports"] if p["name"] == "data")
    assert (data["port"], data["targetPort"]) == (coord_ports["data"], "data")
    # the worker's own HTTP port is fixed and is the port its probes use
    worker_ports = {p["name"]: p["containerPort"] for p in worker["ports"]}
    assert env["SABOT_WORKER_PORT"]["value"] == str(worker_ports["http"])
    assert env["SABOT_ADVERTISE_HOST"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    # every pod is known by its pod name (logs, metrics' node label, /nodes)
    for c in (worker, coord_container):
        assert env_of(c)["SABOT_NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_every_container_sets_its_mode(scenario: Any) -> None:
    _, rendered = scenario
    for component, dep in _deployments(rendered).items():
        for c in containers(dep):
            assert env_of(c)["SABOT_MODE"]["value"] == component


def test_container_env_is_accepted_by_sabot_config(scenario: Any, tmp_path: Path) -> None:
    """The ConfigMap plus each container's env, as the pod sees them, pass Sabot's own
    validation, and resolve to the intended mode and ports."""
    config = pytest.importorskip("sabot.config")
    name, rendered = scenario
    (cm,) = rendered.of_kind("ConfigMap")
    known = set(config.ENVIRONMENT_VARIABLES.values())
    assert set(cm["data"]) <= known, set(cm["data"]) - known
    chart_owned = {"SABOT_MODE", "SABOT_HOST", "SABOT_PORT", "SABOT_ZMQ_PORT", "SABOT_DATA_PORT",
                   "COORDINATOR_HOST", "COORDINATOR_PORT", "SABOT_WORKER_PORT", "SABOT_ADVERTISE_HOST",
                   "SABOT_DATA_DIR", "SABOT_CLUSTER_KEY_FILE", "SABOT_CLUSTER_KEY",
                   "SABOT_AUTH_TOKEN", "SABOT_AUTH_TOKEN_FILE", "SABOT_NODE_NAME"}
    assert not set(cm["data"]) & chart_owned
    token_file = tmp_path / "token"  # what the mounted Secret holds
    token_file.write_text(TOKEN + "\n")
    for component, dep in _deployments(rendered).items():
        (c,) = containers(dep)
        assert c["envFrom"] == [{"configMapRef": {"name": cm["metadata"]["name"]}}]
        env = dict(cm["data"])
        for entry in c["env"]:
            if entry["name"] == "SABOT_AUTH_TOKEN_FILE":
                env[entry["name"]] = str(token_file)
            elif "value" in entry:
                env[entry["name"]] = entry["value"]
            else:
                assert "fieldRef" in entry["valueFrom"], entry  # no secret as an env var
                env[entry["name"]] = "10.1.2.3"  # the pod IP
        cfg = config.load_config(env=env)
        assert cfg.resolved_mode == component, name
        if component == "coordinator":  # the port it binds is the one the pod declares
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            assert cfg.effective_data_port == ports["data"], name
        if "SABOT_AUTH_TOKEN_FILE" in env:
            assert cfg.auth_token == TOKEN
        assert cfg.cluster_key_file.is_absolute() and cfg.data_dir.is_absolute()


def test_configmap_numbers_survive_helm(chart: Any) -> None:
    # Helm reads numbers as floats; large whole numbers must not become "1e+06".
    rendered = chart.render({"config": {"MORSEL_SIZE_KB": 1048576, "SABOT_RESULT_TTL_S": 2592000,
                                        "TARGET_UTILIZATION": 0.65, "SABOT_DISABLE_NATIVE": True}})
    data = rendered.of_kind("ConfigMap")[0]["data"]
    assert data["MORSEL_SIZE_KB"] == "1048576"
    assert data["SABOT_RESULT_TTL_S"] == "2592000"
    assert data["TARGET_UTILIZATION"] == "0.65"
    config = pytest.importorskip("sabot.config")
    cfg = config.load_config(env=data)
    assert cfg.morsel_size_kb == 1048576 and cfg.disable_native is True


def test_config_change_restarts_pods(chart: Any) -> None:
    a = _deployments(chart.render())
    b = _deployments(chart.render({"config": {"LOG_LEVEL": "DEBUG"}}))
    for component in ("coordinator", "worker"):
        ann_a = a[component]["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        ann_b = b[component]["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        assert ann_a != ann_b


# -- scaling -------------------------------------------------------------------------------------
def test_hpa_targets_the_worker_deployment(chart: Any) -> None:
    rendered = chart.render()
    (hpa,) = rendered.of_kind("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": "sabot-worker"}
    assert hpa["spec"]["maxReplicas"] >= 10
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    resources = [m["resource"]["name"] for m in hpa["spec"]["metrics"]]
    assert resources == ["cpu"]
    # the HPA owns the count: the Deployment must not reset it on every upgrade
    assert "replicas" not in rendered.get("Deployment", "sabot-worker")["spec"]
    # CPU utilization is measured against requests: the worker must request CPU
    (worker,) = containers(rendered.get("Deployment", "sabot-worker"))
    assert worker["resources"]["requests"]["cpu"]


def test_hpa_on_memory_too(chart: Any) -> None:
    (hpa,) = chart.render(SCENARIOS["memory-autoscaling"]).of_kind("HorizontalPodAutoscaler")
    targets = {m["resource"]["name"]: m["resource"]["target"] for m in hpa["spec"]["metrics"]}
    assert targets["memory"] == {"type": "Utilization", "averageUtilization": 80}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 40)


def test_autoscaling_off_gives_fixed_replicas(chart: Any) -> None:
    rendered = chart.render(SCENARIOS["ten-workers-no-autoscaling"])
    assert rendered.of_kind("HorizontalPodAutoscaler") == []
    assert rendered.get("Deployment", "sabot-worker")["spec"]["replicas"] == 10


def _allowed_disruptions(pdb: dict[str, Any], replicas: int) -> int:
    """What the disruption controller allows with ``replicas`` healthy pods (percentages of
    maxUnavailable round up, of minAvailable round up too)."""
    spec = pdb["spec"]
    if "minAvailable" in spec:
        value = spec["minAvailable"]
        need = math.ceil(replicas * int(value[:-1]) / 100) if isinstance(value, str) else value
        return max(0, replicas - need)
    value = spec["maxUnavailable"]
    if isinstance(value, str):
        return math.ceil(replicas * int(value.rstrip("%")) / 100)
    return int(value)


@pytest.mark.parametrize("name", ["defaults", "percent-pdb", "ten-workers-no-autoscaling"])
def test_pdb_never_blocks_a_drain(chart: Any, name: str) -> None:
    (pdb,) = chart.render(SCENARIOS[name]).of_kind("PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert "minAvailable" not in pdb["spec"]
    for replicas in (1, 2, 3, 10):
        assert _allowed_disruptions(pdb, replicas) >= 1, (name, replicas)


# -- persistence --------------------------------------------------------------------------------
def test_persistence_gives_the_data_dir_a_claim(chart: Any) -> None:
    rendered = chart.render(SCENARIOS["persistence"])
    (pvc,) = rendered.of_kind("PersistentVolumeClaim")
    assert pvc["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert pvc["spec"]["storageClassName"] == "fast"
    coord = rendered.get("Deployment", "sabot-coordinator")
    assert coord["spec"]["strategy"] == {"type": "Recreate"}
    volumes = {v["name"]: v for v in coord["spec"]["template"]["spec"]["volumes"]}
    (c,) = containers(coord)
    data_mount = next(m for m in c["volumeMounts"]
                      if m["mountPath"] == env_of(c)["SABOT_DATA_DIR"]["value"])
    assert volumes[data_mount["name"]]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert coord["spec"]["replicas"] == 1


def test_without_persistence_the_data_dir_is_an_empty_dir(chart: Any) -> None:
    rendered = chart.render()
    assert rendered.of_kind("PersistentVolumeClaim") == []
    coord = rendered.get("Deployment", "sabot-coordinator")
    volumes = {v["name"]: v for v in coord["spec"]["template"]["spec"]["volumes"]}
    (c,) = containers(coord)
    mount = next(m for m in c["volumeMounts"]
                 if m["mountPath"] == env_of(c)["SABOT_DATA_DIR"]["value"])
    assert "emptyDir" in volumes[mount["name"]]


def test_existing_claim_is_used(chart: Any) -> None:
    rendered = chart.render({"coordinator": {"persistence": {"enabled": True,
                                                             "existingClaim": "journal"}}})
    assert rendered.of_kind("PersistentVolumeClaim") == []
    coord = rendered.get("Deployment", "sabot-coordinator")
    claims = [v["persistentVolumeClaim"]["claimName"]
              for v in coord["spec"]["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v]
    assert claims == ["journal"]


# -- secrets --------------------------------------------------------------------------------------
def _secret_value(rendered: Any, name: str, key: str) -> str:
    import base64
    return base64.b64decode(rendered.get("Secret", name)["data"][key]).decode()


def test_cluster_key_is_generated_and_mounted(chart: Any) -> None:
    first, second = chart.render(), chart.render()
    key1 = _secret_value(first, "sabot-cluster-key", "cluster.key")
    key2 = _secret_value(second, "sabot-cluster-key", "cluster.key")
    assert HEX64.match(key1) and HEX64.match(key2)
    assert key1 != key2  # random at install (an upgrade reuses the stored one through lookup)
    config = pytest.importorskip("sabot.config")
    for dep in _deployments(first).values():
        pod = dep["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        (c,) = pod["containers"]
        key_file = env_of(c)["SABOT_CLUSTER_KEY_FILE"]["value"]
        mount = next(m for m in c["volumeMounts"] if key_file.startswith(m["mountPath"] + "/"))
        assert mount.get("readOnly") is True
        secret = volumes[mount["name"]]["secret"]
        assert secret["secretName"] == "sabot-cluster-key"
        item = key_file[len(mount["mountPath"]) + 1:]
        assert {"key": "cluster.key", "path": item} in secret["items"]
        # group-readable for fsGroup (the pod's non-root user), nobody else
        assert secret["defaultMode"] & 0o007 == 0 and secret["defaultMode"] & 0o040
        assert config.load_config(env={"SABOT_CLUSTER_KEY_FILE": key_file}).cluster_key_file \
            .as_posix() == key_file


def test_cluster_key_given_is_used_verbatim(chart: Any) -> None:
    key = "ab" * 32
    rendered = chart.render({"clusterKey": {"value": key}})
    assert _secret_value(rendered, "sabot-cluster-key", "cluster.key") == key


def test_existing_secrets_are_referenced_not_created(chart: Any) -> None:
    rendered = chart.render(SCENARIOS["existing-secrets"])
    assert rendered.of_kind("Secret") == []
    for dep in _deployments(rendered).values():
        pod = dep["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        secret_volumes = [v["secret"] for v in pod["volumes"] if "secret" in v]
        assert secret_volumes[0]["secretName"] == "my-key"
        assert env_of(c)["SABOT_CLUSTER_KEY_FILE"]["value"].endswith("/k")
        assert _token_secret(pod, c) == ("my-token", "token")


def test_no_token_by_default(chart: Any) -> None:
    rendered = chart.render()
    assert [s["metadata"]["name"] for s in rendered.of_kind("Secret")] == ["sabot-cluster-key"]
    for dep in _deployments(rendered).values():
        for c in containers(dep):
            assert "SABOT_AUTH_TOKEN" not in env_of(c)
            assert "SABOT_AUTH_TOKEN_FILE" not in env_of(c)
        assert "auth-token" not in {v["name"] for v in dep["spec"]["template"]["spec"]["volumes"]}


def _token_secret(pod: dict[str, Any], c: dict[str, Any]) -> tuple[str, str]:
    """(Secret name, key) of the file SABOT_AUTH_TOKEN_FILE names in container ``c``: a
    read-only mount of a Secret volume, owner and group only."""
    token_file = env_of(c)["SABOT_AUTH_TOKEN_FILE"]["value"]
    mount = next(m for m in c["volumeMounts"] if token_file.startswith(m["mountPath"] + "/"))
    assert mount.get("readOnly") is True
    secret = {v["name"]: v for v in pod["volumes"]}[mount["name"]]["secret"]
    assert secret["defaultMode"] & 0o007 == 0
    item = token_file[len(mount["mountPath"]) + 1:]
    (entry,) = [i for i in secret["items"] if i["path"] == item]
    return secret["secretName"], entry["key"]


def test_token_reaches_every_node_as_a_mounted_secret_file(chart: Any) -> None:
    rendered = chart.render(SCENARIOS["token"])
    assert _secret_value(rendered, "sabot-auth", "token") == TOKEN
    for dep in _deployments(rendered).values():
        pod = dep["spec"]["template"]["spec"]
        for c in containers(dep):
            # Never in the environment (/proc/<pid>/environ, kubectl describe): a file.
            assert "SABOT_AUTH_TOKEN" not in env_of(c)
            assert _token_secret(pod, c) == ("sabot-auth", "token")
    # NOTES tell how to read the token, and never print it
    assert TOKEN not in rendered.notes and "TOKEN=$(kubectl" in rendered.notes


# -- security ------------------------------------------------------------------------------------
def test_pods_run_locked_down(scenario: Any) -> None:
    name, rendered = scenario
    assert rendered.of_kind("Role") == rendered.of_kind("RoleBinding") == []
    assert rendered.of_kind("ClusterRole") == rendered.of_kind("ClusterRoleBinding") == []
    for sa in rendered.of_kind("ServiceAccount"):
        assert sa["automountServiceAccountToken"] is False
    for dep in _deployments(rendered).values():
        pod = dep["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] > 0
        volumes = {v["name"]: v for v in pod["volumes"]}
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"]
            # the paths a node writes are writable volumes, not the read-only root
            writable = {m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")}
            assert {"/tmp", env_of(c)["SABOT_DATA_DIR"]["value"]} <= writable
            for m in c["volumeMounts"]:
                assert m["name"] in volumes
            # shared-memory morsels need more than a container's own 64 MiB /dev/shm
            shm = next(m for m in c["volumeMounts"] if m["mountPath"] == "/dev/shm")
            assert volumes[shm["name"]]["emptyDir"]["medium"] == "Memory"
            assert volumes[shm["name"]]["emptyDir"]["sizeLimit"]
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]


def test_chart_agrees_with_the_image(chart: Any) -> None:
    df = parse_dockerfile()
    runtime = df.runtime
    user = runtime.last("USER")
    assert user is not None
    uid, _, gid = user.rest.partition(":")
    image_env = df.env(runtime)
    exposed = {int(p.split("/")[0]) for e in runtime.all("EXPOSE") for p in e.rest.split()}
    rendered = chart.render()
    for dep in _deployments(rendered).values():
        pod = dep["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] == int(uid)
        assert pod["securityContext"]["fsGroup"] == int(gid)
        for c in pod["containers"]:
            # no command override: the pods run the image's CMD (sabot-node)
            assert "command" not in c and "args" not in c
            assert env_of(c)["SABOT_DATA_DIR"]["value"] == image_env["SABOT_DATA_DIR"]
            assert {p["containerPort"] for p in c["ports"]} <= exposed


# -- probes and scraping --------------------------------------------------------------------------
def test_probes_hit_open_routes_on_the_pods_own_port(scenario: Any) -> None:
    server = pytest.importorskip("sabot.http.server")
    openapi = pytest.importorskip("sabot.http.openapi")
    routes = set(openapi.openapi_document(auth=True)["paths"])
    name, rendered = scenario
    for component, dep in _deployments(rendered).items():
        for c in containers(dep):
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            env = env_of(c)
            own_port = env["SABOT_WORKER_PORT" if component == "worker" else "SABOT_PORT"]["value"]
            probes = {k: c[k] for k in ("startupProbe", "livenessProbe", "readinessProbe")}
            assert probes["livenessProbe"]["httpGet"]["path"] == "/health"
            assert probes["readinessProbe"]["httpGet"]["path"] == "/ready"
            for kind, probe in probes.items():
                get = probe["httpGet"]
                assert get["path"] in routes, (name, component, kind, get["path"])
                # kubelet sends no bearer token: the path must be served without one
                assert get["path"] in server.OPEN_PATHS, (component, kind)
                assert str(ports[get["port"]]) == own_port, (component, kind)
            annotations = dep["spec"]["template"]["metadata"]["annotations"]
            assert annotations["prometheus.io/scrape"] == "true"
            assert annotations["prometheus.io/port"] == own_port
            assert annotations["prometheus.io/path"] in routes & server.OPEN_PATHS


# -- values.schema.json -----------------------------------------------------------------------
INVALID: list[tuple[dict[str, Any], str]] = [
    ({"worker": {"podDisruptionBudget": {"maxUnavailable": 0}}}, "maxUnavailable"),
    ({"worker": {"podDisruptionBudget": {"maxUnavailable": "0%"}}}, "maxUnavailable"),
    ({"worker": {"podDisruptionBudget": {"minAvailable": 1}}}, "minAvailable"),
    ({"worker": {"autoscaling": {"maxReplicas": 0}}}, "maxReplicas"),
    ({"worker": {"autoscaling": {"targetCPUUtilizationPercentage": 150}}}, "targetCPU"),
    ({"worker": {"replicas": -1}}, "replicas"),
    ({"worker": {"port": 70000}}, "port"),
    ({"coordinator": {"port": "http"}}, "port"),
    ({"coordinator": {"dataPort": 70000}}, "dataPort"),
    ({"coordinator": {"dataPort": "data"}}, "dataPort"),
    ({"config": {"SABOT_DATA_PORT": 9092}}, "SABOT_DATA_PORT"),
    ({"config": {"SABOT_MODE": "worker"}}, "SABOT_MODE"),
    ({"config": {"SABOT_AUTH_TOKEN": "x"}}, "SABOT_AUTH_TOKEN"),
    ({"config": {"SABOT_AUTH_TOKEN_FILE": "/x"}}, "SABOT_AUTH_TOKEN_FILE"),
    ({"config": {"MORSEL_SIZE_KB": 0}}, "MORSEL_SIZE_KB"),
    ({"config": {"TARGET_UTILIZATION": 1.5}}, "TARGET_UTILIZATION"),
    ({"config": {"TARGET_UTILIZATION": "lots"}}, "TARGET_UTILIZATION"),
    ({"config": {"LOG_LEVEL": "LOUD"}}, "LOG_LEVEL"),
    ({"config": {"MAX_WORKERS": "many"}}, "MAX_WORKERS"),
    ({"config": {"SABOT_JOURNAL_SYNC": "sometimes"}}, "SABOT_JOURNAL_SYNC"),
    ({"config": {"SABOT_PROCESSORS": "my-module"}}, "SABOT_PROCESSORS"),
    ({"config": {"CLUSTER_NAME": "has space"}}, "CLUSTER_NAME"),
    ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
    ({"image": {"repository": ""}}, "repository"),
    ({"clusterKey": {"value": "too-short"}}, "value"),
    ({"auth": {"token": "short"}}, "token"),
    ({"coordinator": {"persistence": {"accessModes": ["ReadSometimes"]}}}, "accessModes"),
    ({"podSecurityContext": {"runAsNonRoot": False}}, "runAsNonRoot"),
    ({"securityContext": {"allowPrivilegeEscalation": True}}, "allowPrivilegeEscalation"),
    ({"dataDir": "relative/path"}, "dataDir"),
    ({"replicaCount": 3}, "replicaCount"),
]


@pytest.mark.parametrize(("values", "where"), INVALID, ids=[w for _, w in INVALID])
def test_schema_rejects_invalid_values(chart: Any, values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm_python.HelmValuesError) as info:
        chart.render(values)
    assert where in str(info.value)


def test_lint_reports_bad_values() -> None:
    report = helm_python.lint(CHART_DIR, {"worker": {"port": "http"}}, strict=True)
    assert any(m["severity"] == 3 and "/worker/port" in m["error"] for m in report["messages"])


def test_min_replicas_above_max_is_refused(chart: Any) -> None:
    with pytest.raises(helm_python.HelmRenderError, match="minReplicas"):
        chart.render({"worker": {"autoscaling": {"minReplicas": 20, "maxReplicas": 10}}})


def test_schema_accepts_every_scenario(chart: Any) -> None:
    with helm_python.Chart.load(CHART_DIR) as loaded:
        for values in SCENARIOS.values():
            loaded.validate_schema(loaded.merge_values(values))  # raises on a violation


def test_notes_tell_how_to_reach_the_api(chart: Any) -> None:
    notes = chart.render().notes
    assert "port-forward service/sabot-coordinator 8080:8080" in notes
    assert "/submit_job" in notes and "helm upgrade" in notes
    fixed = chart.render(SCENARIOS["ten-workers-no-autoscaling"]).notes
    assert "kubectl --namespace default scale deployment sabot-worker --replicas=10" in fixed
