"""Run what the rendered chart would run, as local processes.

Every Deployment of a default render becomes its pods (the HPA's minReplicas for the workers),
each pod a process running the container's command (the image's CMD, as the chart sets none)
with the environment Kubernetes would give it: the image's ENV, then the ConfigMap (envFrom),
then the container's env with Secrets and the downward API resolved. What a cluster provides
and a single machine does not is mapped, and only that:

- the pod IP and the Service names are 127.0.0.1;
- every pod gets its own free local port for each containerPort (pods share one loopback here),
  and a Service's port leads to the local port of the pod it selects;
- every pod gets its own file system root: volumes (the Secret's files, emptyDirs) are
  materialized under it and absolute paths in the env point into it; after the run, no file
  may exist outside the volumes (the chart's read-only root file system would refuse it).

Then, as a kubelet and a user would: each container's startup, liveness and readiness probes
answer 200, the workers register with the coordinator, the prometheus.io scrape target serves
metrics, the image's HEALTHCHECK passes in each pod, the README's job runs through the
coordinator Service, and SIGTERM stops every pod cleanly.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from deploy_support import Dockerfile, free_port

pytest.importorskip("helm_python", reason="pip install helm-python-sdk")

TOKEN = "rendered-token-0123456789abcdef"
LISTEN_PORT_SUFFIX = "_PORT"
#: Bounds on waiting (hang guards, not timing assertions).
REGISTER_DEADLINE_S = 90.0
JOB_DEADLINE_S = 120.0


@dataclass
class Pod:
    name: str
    component: str
    container: dict[str, Any]
    annotations: dict[str, str]
    grace_s: float
    root: Path
    ports: dict[int, int] = field(default_factory=dict)  # containerPort -> local port
    env: dict[str, str] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)
    cwd: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    written: set[Path] = field(default_factory=set)  # files the test put into volumes

    @property
    def log(self) -> Path:
        return self.root.parent / f"{self.name}.log"

    def writable_dirs(self) -> list[Path]:
        return [self.root / m["mountPath"].lstrip("/")
                for m in self.container.get("volumeMounts", []) if not m.get("readOnly")]

    def files_outside_volumes(self) -> list[Path]:
        """Files the process wrote where the pod's read-only root file system would refuse."""
        writable = self.writable_dirs()
        return sorted(f for f in self.root.rglob("*")
                      if not f.is_dir() and f not in self.written
                      and not any(f.is_relative_to(w) for w in writable))

    def named_port(self, port: int | str) -> int:
        """A probe's or Service's port (a name or a number) as this pod's local port."""
        if isinstance(port, str):
            port = next(p["containerPort"] for p in self.container["ports"] if p["name"] == port)
        return self.ports[int(port)]

    def tail(self) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} (exit {self.proc and self.proc.poll()}) ---\n{text[-3000:]}"


class Cluster:
    """The rendered objects, turned into local processes."""

    def __init__(self, rendered: Any, dockerfile: Dockerfile, root: Path, bin_dir: Path) -> None:
        self.rendered = rendered
        self.df = dockerfile
        self.root = root
        self.bin_dir = bin_dir
        self.secrets = {s["metadata"]["name"]: {k: base64.b64decode(v).decode()
                                                for k, v in s.get("data", {}).items()}
                        for s in rendered.of_kind("Secret")}
        self.configmaps = {c["metadata"]["name"]: dict(c.get("data", {}))
                           for c in rendered.of_kind("ConfigMap")}
        self.services = {s["metadata"]["name"]: s for s in rendered.of_kind("Service")}
        self.pods: list[Pod] = []
        for dep in rendered.of_kind("Deployment"):
            for i in range(self._replicas(dep)):
                self.pods.append(self._make_pod(dep, i))
        for pod in self.pods:
            self._resolve_env(pod)

    # -- building pods ------------------------------------------------------------------------
    def _replicas(self, dep: dict[str, Any]) -> int:
        for hpa in self.rendered.of_kind("HorizontalPodAutoscaler"):
            if hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]:
                return int(hpa["spec"].get("minReplicas", 1))
        return int(dep["spec"].get("replicas", 1))

    def _make_pod(self, dep: dict[str, Any], index: int) -> Pod:
        template = dep["spec"]["template"]
        spec = template["spec"]
        (container,) = spec["containers"]
        name = f"{dep['metadata']['name']}-{index}"
        pod = Pod(name=name, component=template["metadata"]["labels"]["app.kubernetes.io/component"],
                  container=container, annotations=dict(template["metadata"].get("annotations", {})),
                  grace_s=float(spec.get("terminationGracePeriodSeconds", 30)),
                  root=self.root / name)
        pod.root.mkdir(parents=True)
        pod.ports = {p["containerPort"]: free_port() for p in container.get("ports", [])}
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for mount in container.get("volumeMounts", []):
            pod.written |= self._materialize(volumes[mount["name"]],
                                             pod.root / mount["mountPath"].lstrip("/"))
        runtime = self.df.runtime
        workdir = runtime.last("WORKDIR")
        pod.cwd = pod.root / (workdir.rest.lstrip("/") if workdir else "")
        pod.cwd.mkdir(parents=True, exist_ok=True)
        entrypoint = container.get("command") or self.df.exec_form(runtime, "ENTRYPOINT")
        args = container.get("args") or ([] if container.get("command")
                                         else self.df.exec_form(runtime, "CMD"))
        pod.argv = [*entrypoint, *args]
        return pod

    def _materialize(self, volume: dict[str, Any], path: Path) -> set[Path]:
        path.mkdir(parents=True, exist_ok=True)
        written: set[Path] = set()
        if "secret" in volume:
            data = self.secrets[volume["secret"]["secretName"]]
            mode = volume["secret"].get("defaultMode", 0o644)
            items = volume["secret"].get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                target = path / item["path"]
                target.write_text(data[item["key"]])
                target.chmod(item.get("mode", mode))
                written.add(target)
        elif "configMap" in volume:
            for key, value in self.configmaps[volume["configMap"]["name"]].items():
                (path / key).write_text(value)
                written.add(path / key)
        else:
            assert "emptyDir" in volume or "persistentVolumeClaim" in volume, volume
        return written

    def _resolve_env(self, pod: Pod) -> None:
        c = pod.container
        env: dict[str, str] = dict(self.df.env(self.df.runtime))  # the image's ENV
        for source in c.get("envFrom", []):
            env.update(self.configmaps[source["configMapRef"]["name"]])
        for entry in c.get("env", []):
            if "value" in entry:
                env[entry["name"]] = str(entry["value"])
                continue
            ref = entry["valueFrom"]
            if "fieldRef" in ref:
                path = ref["fieldRef"]["fieldPath"]
                env[entry["name"]] = {"status.podIP": "127.0.0.1", "metadata.name": pod.name}[path]
            elif "secretKeyRef" in ref:
                env[entry["name"]] = self.secrets[ref["secretKeyRef"]["name"]][ref["secretKeyRef"]["key"]]
            else:
                cm = ref["configMapKeyRef"]
                env[entry["name"]] = self.configmaps[cm["name"]][cm["key"]]
        # Service names -> 127.0.0.1, and the matching *_PORT through the Service's ports.
        remapped: set[str] = set()
        for key, value in list(env.items()):
            svc = self._service_named(value)
            if svc is None:
                continue
            env[key] = "127.0.0.1"
            if key.endswith("_HOST"):
                port_var = key[: -len("_HOST")] + "_PORT"
                if port_var in env:
                    env[port_var] = str(self.service_port(svc, int(env[port_var])))
                    remapped.add(port_var)
        # A pod's own listen ports -> its local ports.
        for key, value in list(env.items()):
            if key.endswith(LISTEN_PORT_SUFFIX) and key not in remapped and value.isdigit() \
                    and int(value) in pod.ports:
                env[key] = str(pod.ports[int(value)])
        # Absolute paths -> into the pod's own file system.
        for key, value in list(env.items()):
            if value.startswith("/"):
                env[key] = str(pod.root / value.lstrip("/"))
        # the image's PATH: this interpreter's scripts (where pip put sabot-node) come first
        env["PATH"] = os.pathsep.join([str(self.bin_dir), sysconfig.get_path("scripts"),
                                       os.environ.get("PATH", "/usr/bin:/bin")])
        # the image user's home, on the (read-only) root file system
        home = re.search(r"--home-dir (\S+)", " ".join(
            i.rest for i in self.df.runtime.all("RUN")))
        env["HOME"] = str(pod.root / (home.group(1).lstrip("/") if home else "root"))
        env["TMPDIR"] = str(pod.root / "tmp")
        Path(env["HOME"]).mkdir(parents=True, exist_ok=True)
        Path(env["TMPDIR"]).mkdir(exist_ok=True)
        if "PYTHONPATH" in os.environ:  # the image's Python sees the same sabot as this one
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        pod.env = env

    def _service_named(self, host: str) -> dict[str, Any] | None:
        name = host.split(".")[0]
        svc = self.services.get(name)
        if svc is None or not (host == name or host.startswith(name + ".")):
            return None
        return svc

    def pods_of(self, svc: dict[str, Any]) -> list[Pod]:
        sel = svc["spec"]["selector"]
        return [p for p in self.pods if all(
            self._pod_labels(p).get(k) == v for k, v in sel.items())]

    def _pod_labels(self, pod: Pod) -> dict[str, str]:
        for dep in self.rendered.of_kind("Deployment"):
            if pod.name.startswith(dep["metadata"]["name"] + "-"):
                return dict(dep["spec"]["template"]["metadata"]["labels"])
        raise KeyError(pod.name)

    def service_port(self, svc: dict[str, Any], port: int) -> int:
        """The local port a connection to ``svc:port`` reaches (its single backing pod)."""
        (backend,) = self.pods_of(svc)
        spec_port = next(p for p in svc["spec"]["ports"] if p["port"] == port)
        return backend.named_port(spec_port.get("targetPort", port))

    # -- running --------------------------------------------------------------------------------
    def start(self, component: str) -> None:
        for pod in self.pods:
            if pod.component != component:
                continue
            exe = shutil.which(pod.argv[0], path=pod.env["PATH"])
            assert exe, f"{pod.name}: command {pod.argv[0]!r} not found on PATH (pip install -e .)"
            with open(pod.log, "wb") as log:
                pod.proc = subprocess.Popen([exe, *pod.argv[1:]], env=pod.env, cwd=pod.cwd,
                                            stdout=log, stderr=subprocess.STDOUT)

    def stop(self) -> dict[str, int | None]:
        """SIGTERM every pod (workers first, as a scale-down or drain would) and wait up to its
        terminationGracePeriodSeconds; returns the exit codes (None: had to be killed)."""
        codes: dict[str, int | None] = {}
        for pod in sorted(self.pods, key=lambda p: p.component == "coordinator"):
            if pod.proc is None:
                continue
            if pod.proc.poll() is None:
                pod.proc.send_signal(signal.SIGTERM)
            try:
                codes[pod.name] = pod.proc.wait(timeout=pod.grace_s)
            except subprocess.TimeoutExpired:
                pod.proc.kill()
                pod.proc.wait()
                codes[pod.name] = None
        return codes

    def logs(self) -> str:
        return "\n".join(p.tail() for p in self.pods)

    def assert_running(self) -> None:
        dead = [p for p in self.pods if p.proc is not None and p.proc.poll() is not None]
        assert not dead, "a pod exited:\n" + "\n".join(p.tail() for p in dead)


def _http(url: str, *, token: str | None = None, body: Any = None,
          timeout: float = 10.0) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        return 0, str(exc).encode()


def _wait_for(cluster: Cluster, what: str, check: Any, deadline_s: float,
              interval_s: float = 0.25) -> Any:
    deadline = time.monotonic() + deadline_s
    last: Any = None
    while time.monotonic() < deadline:
        cluster.assert_running()
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"{what} did not happen within {deadline_s:.0f} s (last: {last!r})\n"
                         + cluster.logs())


def _probe_ok(cluster: Cluster, pod: Pod, probe: dict[str, Any]) -> bool:
    get = probe["httpGet"]
    status, _ = _http(f"http://127.0.0.1:{pod.named_port(get['port'])}{get['path']}",
                      timeout=float(probe.get("timeoutSeconds", 1)))
    return status == 200


@pytest.mark.parametrize("values", [{}, {"auth": {"token": TOKEN}}], ids=["defaults", "token"])
def test_rendered_pods_form_a_cluster_and_run_a_job(chart: Any, dockerfile: Dockerfile,
                                                    tmp_path: Path, values: dict[str, Any]) -> None:
    rendered = chart.render(values)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # the image's `python` (its HEALTHCHECK runs it) is this interpreter
    (bin_dir / "python").symlink_to(sys.executable)
    cluster = Cluster(rendered, dockerfile, tmp_path / "pods", bin_dir)
    token = values.get("auth", {}).get("token")
    workers = [p for p in cluster.pods if p.component == "worker"]
    coordinators = [p for p in cluster.pods if p.component == "coordinator"]
    assert len(coordinators) == 1 and len(workers) >= 2
    svc = cluster.services["sabot-coordinator"]
    api = f"http://127.0.0.1:{cluster.service_port(svc, 8080)}"
    try:
        cluster.start("coordinator")
        cluster.start("worker")
        # kubelet: startup probe first (within its own failure budget), then liveness/readiness
        for pod in cluster.pods:
            c = pod.container
            startup = c["startupProbe"]
            budget = startup["periodSeconds"] * startup["failureThreshold"]
            _wait_for(cluster, f"{pod.name} startupProbe {startup['httpGet']['path']}",
                      lambda pod=pod, probe=startup: _probe_ok(cluster, pod, probe), budget)
            assert _probe_ok(cluster, pod, c["livenessProbe"]), pod.tail()
        # the workers register with the coordinator, through its Service
        def registered() -> list[dict[str, Any]] | None:
            status, body = _http(f"{api}/nodes", token=token)
            if status != 200:
                return None
            nodes = json.loads(body)["nodes"]  # docs/http.md: {"count", "nodes": [...]}
            found = [n for n in nodes
                     if n.get("role", "worker") == "worker" and n.get("status") == "alive"]
            return found if len(found) == len(workers) else None
        nodes = _wait_for(cluster, f"{len(workers)} workers registering", registered,
                          REGISTER_DEADLINE_S)
        text = json.dumps(nodes)
        for pod in workers:  # each worker reports its own (advertised) HTTP port
            assert str(pod.named_port("http")) in text, (pod.name, text)
        # GET /cluster names the data port the coordinator bound (SABOT_DATA_PORT, its
        # containerPort "data"), and the Service's data port leads to it: workers dial that
        # number on COORDINATOR_HOST.
        status, body = _http(f"{api}/cluster", token=token)
        assert status == 200, (status, body)
        (coordinator,) = coordinators
        data_port = json.loads(body)["data_port"]
        assert data_port == coordinator.named_port("data"), (body, cluster.logs())
        svc_data = next(p for p in svc["spec"]["ports"] if p["name"] == "data")
        assert cluster.service_port(svc, svc_data["port"]) == data_port
        for pod in cluster.pods:
            readiness = pod.container["readinessProbe"]
            _wait_for(cluster, f"{pod.name} readinessProbe",
                      lambda pod=pod, probe=readiness: _probe_ok(cluster, pod, probe),
                      REGISTER_DEADLINE_S)
            # Prometheus, following the pod's scrape annotations
            port = pod.ports[int(pod.annotations["prometheus.io/port"])]
            status, body = _http(f"http://127.0.0.1:{port}{pod.annotations['prometheus.io/path']}")
            assert status == 200 and b"sabot_" in body, (pod.name, status, body[:300])
            # the image's HEALTHCHECK, run in the pod's environment
            _, health_cmd = dockerfile.healthcheck(dockerfile.runtime)
            check = subprocess.run(health_cmd, env=pod.env, cwd=pod.cwd, capture_output=True,
                                   text=True, timeout=60, check=False)
            assert check.returncode == 0, (pod.name, check.stderr[-2000:])
        job = {"data": [1, 2, 3, 4, 5], "processor_func": "square"}
        if token:
            status, body = _http(f"{api}/submit_job", body=job)
            assert status == 401, (status, body)  # the rendered token is really enforced
        status, body = _http(f"{api}/submit_job", token=token, body=job)
        assert status in (200, 201, 202), (status, body, cluster.logs())
        job_id = json.loads(body)["job_id"]

        def finished() -> dict[str, Any] | None:
            code, raw = _http(f"{api}/job/{job_id}", token=token)
            if code != 200:
                return None
            state = json.loads(raw)
            return state if state["status"] in ("completed", "failed", "cancelled") else None
        state = _wait_for(cluster, f"job {job_id} finishing", finished, JOB_DEADLINE_S)
        assert state["status"] == "completed", (state, cluster.logs())
        assert state["result"] == [1, 4, 9, 16, 25]
    finally:
        codes = cluster.stop()
    assert all(code == 0 for code in codes.values()), (codes, cluster.logs())
    for pod in cluster.pods:  # readOnlyRootFilesystem: nothing written outside the volumes
        assert pod.files_outside_volumes() == [], pod.name
