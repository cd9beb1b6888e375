"""The README as a test: every ```bash and ```python block of README.md runs, in order, against
fresh nodes on free loopback ports; blocks and commands that need Docker, Kubernetes or Helm are
checked statically (the files, charts and names they use exist).

How blocks run
--------------
* Each shell block (bash, sh, shell, console) runs in a new bash (``set -e -o pipefail``), like
  a new terminal, in a sandbox directory holding links to the repository's top-level entries.
  ``python`` is this interpreter and ``sabot-node`` the CLI of this checkout.
* Every python block runs in one persistent Python process, in order, each in a namespace of
  its own (a reader copies one block at a time, so a block must stand alone: a name it uses
  must be defined or imported in it); top-level ``await`` works (one event loop for all blocks,
  so servers a block started keep serving), ``asyncio.run(...)`` too. A block after
  ``<!-- readme-test: continues -->`` shares the namespace of the block before it.
* Addresses are pointed at loopback: port 8080 becomes a free port P, the host of every URL and
  of ``COORDINATOR_HOST=`` / quoted host arguments becomes 127.0.0.1, ``0.0.0.0`` becomes
  127.0.0.1. ``{job_id}`` and ``<job_id>`` stand for the last job id a ``curl`` printed.
* A daemon command (``python -m sabot.composable_launcher``, ``sabot-node`` without a
  subcommand, a ``launch_sabot`` one-liner) starts in the background and the block goes on when
  it is ready. One that serves port P (single-node, coordinator) first stops the nodes already
  running, so each section gets a fresh node; workers join the running coordinator.
* A block that talks to port P when no node runs gets a fresh coordinator with one worker.
* ``curl`` fails the block on an HTTP error (``--fail-with-body``).
* Static: ``docker build`` (the Dockerfile exists), ``docker run`` (the image was built above),
  ``kubectl apply -f`` (the manifest exists and parses), ``kubectl scale deployment NAME`` and
  ``TYPE/NAME`` arguments (the resource is in an applied manifest), ``helm`` (the chart and values
  files exist), ``pip install -e .[extra]`` (the extra exists), ``pytest`` and ``python setup.py``
  (not run; their files exist), ``git clone``, ``cd``, ``telnet`` (not run). ```dockerfile blocks:
  every ``COPY`` source exists; ```yaml blocks parse; other blocks, and ``sabot_*`` names in
  backticks in the prose: every metric name is one Sabot exports. Every ``VAR`` of the README's
  configuration tables is a setting of ``sabot.config``. ``apt-get`` is not run (CI installs
  system packages); ``a && b; c`` lists are split and each command is treated as above.
* ``<!-- readme-test: skip REASON -->`` on the line before a block skips it (reported).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import textwrap
import tomllib
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

SHELL_LANGS = {"bash", "sh", "shell", "console", "zsh"}
PYTHON_LANGS = {"python", "py", "python3", "pycon"}
BLOCK_TIMEOUT_S = 180
_SETTINGS_PREFIXES = ("SABOT_", "COORDINATOR_")
_SETTINGS = ("CLUSTER_NAME", "MAX_WORKERS", "MORSEL_SIZE_KB", "TARGET_UTILIZATION", "LOG_LEVEL")


# -- parsing -------------------------------------------------------------------------------------
@dataclass
class Block:
    lang: str
    code: str
    line: int  #: line number of the opening fence (1-based)
    skip: str | None = None
    continues: bool = False  #: shares the previous python block's namespace

    @property
    def where(self) -> str:
        return f"README.md:{self.line} ({self.lang or 'no language'})"


_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<lang>[^\n`]*)$")
_SKIP = re.compile(r"<!--\s*readme-test:\s*skip\b\s*(?P<reason>.*?)\s*-->")
_CONTINUES = re.compile(r"<!--\s*readme-test:\s*continues\s*-->")


def parse_blocks(text: str) -> list[Block]:
    """The fenced code blocks of a Markdown text, in order (indented fences included)."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = m.group("indent"), m.group("fence")
        lang = m.group("lang").strip().split()[0].lower() if m.group("lang").strip() else ""
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j].removeprefix(indent))
            j += 1
        prev = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        skip = _SKIP.search(prev)
        blocks.append(Block(lang, "\n".join(body) + "\n", i + 1,
                            (skip.group("reason") or "no reason given") if skip else None,
                            bool(_CONTINUES.search(prev))))
        i = j + 1
    return blocks


def join_continuations(code: str) -> list[str]:
    out: list[str] = []
    buf = ""
    for line in code.splitlines():
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        out.append(buf + line)
        buf = ""
    if buf:
        out.append(buf)
    return out


def split_and_list(line: str) -> list[str]:
    """``a && b; c`` as ``["a", "b", "c"]`` (separators inside quotes are kept); a line with
    ``||`` or a trailing ``&`` stays whole."""
    parts: list[str] = []
    buf: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(line):
        c = line[i]
        if quote:
            if c == quote:
                quote = None
            elif c == "\\" and quote == '"' and i + 1 < len(line):
                buf.append(c)
                i += 1
                c = line[i]
        elif c in ("'", '"'):
            quote = c
        elif c == "#" and (i == 0 or line[i - 1].isspace()):
            buf.append(line[i:])
            break
        elif line.startswith("&&", i) or c == ";":
            parts.append("".join(buf).strip())
            buf = []
            i += 2 if c == "&" else 1
            continue
        elif line.startswith("||", i):
            return [line]
        buf.append(c)
        i += 1
    parts.append("".join(buf).strip())
    return [p for p in parts if p] or [line]


# -- addresses -----------------------------------------------------------------------------------
def rewrite(code: str, port: int) -> str:
    """Point the README's addresses at loopback and its port 8080 at ``port``."""
    code = re.sub(r"\b8080\b", str(port), code)
    code = re.sub(r"(https?://)([A-Za-z0-9_.-]+|\{[^}]*\}|<[^>]*>)(:\d+)", r"\g<1>127.0.0.1\3",
                  code)
    code = re.sub(r"\bCOORDINATOR_HOST=(\"[^\"]*\"|'[^']*'|\S+)", "COORDINATOR_HOST=127.0.0.1",
                  code)
    code = re.sub(r"([\"'])[A-Za-z0-9_.-]+\1(\s*,\s*(?:port\s*=\s*)?%d\b)" % port,
                  r'"127.0.0.1"\2', code)
    code = re.sub(r"\bhost\s*=\s*([\"'])[A-Za-z0-9_.-]+\1", 'host="127.0.0.1"', code)
    code = code.replace("0.0.0.0", "127.0.0.1")
    return code


# -- commands ------------------------------------------------------------------------------------
_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def split_command(line: str) -> tuple[dict[str, str], list[str]]:
    """(leading VAR=value assignments, the command's words) of one shell line."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        return {}, []
    env: dict[str, str] = {}
    while words and _ASSIGN.match(words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    if words and words[0] == "export":
        for word in words[1:]:
            if "=" in word:
                key, _, value = word.partition("=")
                env[key] = value
        return env, ["export"]
    return env, words


def is_daemon(words: list[str], line: str) -> bool:
    if not words:
        return False
    if words[0] in ("python", "python3") and words[1:3] == ["-m", "sabot.composable_launcher"]:
        return True
    if words[0] in ("python", "python3") and len(words) > 2 and words[1] == "-c" \
            and "launch_sabot" in words[2]:
        return True
    if words[0] == "sabot-node":
        return not any(w in ("submit", "status", "demo", "keygen", "--help", "-h", "--version")
                       for w in words[1:])
    return False


def daemon_mode(env: dict[str, str], words: list[str]) -> str:
    mode = env.get("SABOT_MODE", "auto")
    if "--mode" in words and words.index("--mode") + 1 < len(words):
        mode = words[words.index("--mode") + 1]
    if mode == "auto":
        return "worker" if ("COORDINATOR_HOST" in env or "--coordinator" in words) \
            else "single-node"
    return mode


# -- static checks -------------------------------------------------------------------------------
@dataclass
class StaticState:
    images: set[str] = field(default_factory=set)
    resources: set[tuple[str, str]] = field(default_factory=set)  # (kind lower, name)


def _load_manifest(path: Path) -> list[dict[str, Any]]:
    import yaml

    docs = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    assert docs, f"{path} holds no Kubernetes objects"
    return docs


def _resource_known(state: StaticState, kind: str, name: str) -> bool:
    aliases = {"deploy": "deployment", "svc": "service", "hpa": "horizontalpodautoscaler",
               "pdb": "poddisruptionbudget", "cm": "configmap", "sts": "statefulset",
               "deployments": "deployment", "services": "service", "pods": "pod", "po": "pod"}
    kind = aliases.get(kind.lower(), kind.lower())
    if not state.resources:  # nothing applied above: look in the repository's manifests
        for manifest in REPO.glob("helm/*.yaml"):
            for doc in _load_manifest(manifest):
                state.resources.add((doc.get("kind", "").lower(),
                                     (doc.get("metadata") or {}).get("name", "")))
    return kind == "pod" or (kind, name) in state.resources


def check_static_command(words: list[str], state: StaticState, where: str) -> str | None:
    """Check a command that is not run; returns a note, or None when the command is to run."""
    if not words:
        return None
    cmd = words[0]
    if cmd == "docker":
        sub = words[1] if len(words) > 1 else ""
        if sub == "build":
            dockerfile, tag, context, i = None, None, None, 2
            while i < len(words):
                w = words[i]
                if w in ("-f", "--file"):
                    dockerfile, i = words[i + 1], i + 2
                elif w in ("-t", "--tag"):
                    tag, i = words[i + 1], i + 2
                elif w.startswith("--") and "=" in w:
                    i += 1
                elif w.startswith("-"):
                    i += 2 if w in ("--build-arg", "--target", "--platform") else 1
                else:
                    context, i = w, i + 1
            assert context is not None, f"{where}: docker build without a context"
            path = REPO / (dockerfile or str(Path(context) / "Dockerfile"))
            assert path.is_file(), f"{where}: docker build needs {path.relative_to(REPO)}, " \
                                   "which does not exist"
            if tag:
                state.images.add(tag.split(":")[0])
            return f"docker build checked ({path.relative_to(REPO)})"
        if sub == "run" and state.images:
            assert any(w.split(":")[0] in state.images for w in words[2:]), \
                f"{where}: docker run uses an image the README did not build ({state.images})"
        return "docker checked"
    if cmd == "kubectl":
        sub = words[1] if len(words) > 1 else ""
        if sub in ("apply", "create", "delete") and "-f" in words:
            path = REPO / words[words.index("-f") + 1]
            assert path.is_file(), f"{where}: {path.relative_to(REPO)} does not exist"
            for doc in _load_manifest(path):
                state.resources.add((doc.get("kind", "").lower(),
                                     (doc.get("metadata") or {}).get("name", "")))
        elif sub == "scale" and len(words) > 2:
            kind, name = (words[2].split("/", 1) if "/" in words[2]
                          else (words[2], words[3] if len(words) > 3 else ""))
            assert _resource_known(state, kind, name), \
                f"{where}: no {kind} named {name!r} in the manifests"
        else:
            for w in words[2:]:
                if re.fullmatch(r"[a-z]+/[a-z0-9-]+", w):
                    kind, name = w.split("/")
                    assert _resource_known(state, kind, name), \
                        f"{where}: no {kind} named {name!r} in the manifests"
        return "kubectl checked"
    if cmd == "helm":
        positional = [w for w in words[2:] if not w.startswith("-")]
        values = [words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-f", "--values")]
        charts = [p for p in positional if "/" in p or (REPO / p).is_dir()]
        for chart in charts:
            if (REPO / chart).exists() or chart.startswith(("./", "helm/")):
                assert (REPO / chart / "Chart.yaml").is_file(), \
                    f"{where}: {chart} is not a Helm chart (no Chart.yaml)"
        for v in values:
            assert (REPO / v).is_file(), f"{where}: values file {v} does not exist"
        return "helm checked"
    if cmd in ("pip", "pip3") or words[:3] in (["python", "-m", "pip"], ["python3", "-m", "pip"]):
        spec = next((w for w in words if w.startswith(".")), None)
        if spec is not None:
            project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
            extras = re.findall(r"\[([^\]]*)\]", spec)
            for extra in (extras[0].split(",") if extras else []):
                assert extra.strip() in project.get("optional-dependencies", {}), \
                    f"{where}: pip extra [{extra}] is not in pyproject.toml"
        return "pip install checked (the package is installed for the tests)"
    if cmd == "pytest" or words[:3] in (["python", "-m", "pytest"], ["python3", "-m", "pytest"]):
        assert (REPO / "tests").is_dir(), f"{where}: no tests directory"
        return "pytest not run from inside pytest"
    if cmd in ("python", "python3") and len(words) > 1 and words[1] == "setup.py":
        assert (REPO / "setup.py").is_file(), f"{where}: setup.py does not exist"
        return "setup.py checked"
    if cmd in ("apt-get", "apt", "sudo", "brew", "dnf", "yum"):
        return f"{cmd} not run (system packages: CI installs them in .ci/run)"
    if cmd == "git" and words[1:2] == ["clone"]:
        return "git clone not run"
    if cmd == "cd":
        return "cd not run (blocks run in a sandbox of the checkout)"
    if cmd in ("telnet", "nc"):
        return f"{cmd} not run (interactive)"
    return None


def exported_metric_names() -> set[str]:
    from sabot.metrics import Metrics

    names: set[str] = set()
    for family in Metrics("c", "n").registry.collect():
        names.add(family.name)
        names.update(s.name for s in family.samples)
        names.update(family.name + suffix for suffix in ("_total", "_bucket", "_sum", "_count"))
    return names


def check_static_block(block: Block) -> str:
    code = block.code
    if block.lang == "dockerfile":
        for line in code.splitlines():
            words = line.split()
            if words[:1] == ["COPY"]:
                sources = [w for w in words[1:-1] if not w.startswith("--")]
                for src in sources:
                    assert src == "." or (REPO / src).exists(), \
                        f"{block.where}: COPY {src}: no such file in the repository"
        return "Dockerfile sources checked"
    if block.lang in ("yaml", "yml"):
        import yaml

        list(yaml.safe_load_all(code))
        return "YAML parses"
    names = set(re.findall(r"\bsabot_[a-z0-9_]+", code))
    if names:
        missing = names - exported_metric_names()
        assert not missing, f"{block.where}: metrics Sabot does not export: {sorted(missing)}"
        return f"metric names checked ({len(names)})"
    return "not run"


def check_config_tables(text: str) -> list[str]:
    """Every `VAR` in the first column of a README table that lists defaults is a setting."""
    from sabot.config import ENVIRONMENT_VARIABLES

    known = set(ENVIRONMENT_VARIABLES.values())
    found = []
    for line in text.splitlines():
        m = re.match(r"^\|\s*`([A-Z][A-Z0-9_]{2,})`\s*\|", line)
        if m:
            found.append(m.group(1))
    unknown = [v for v in found if v not in known]
    assert not unknown, f"README tables list settings that sabot.config does not know: {unknown}"
    return found


# -- the session: daemons, the Python kernel ------------------------------------------------------
_KERNEL = textwrap.dedent('''
    import ast, asyncio, inspect, json, os, sys, threading, traceback
    # Replies go to the original stdout; whatever the blocks print (and their child processes)
    # goes to stderr, the log file.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    # One event loop runs all the time (as in Jupyter), so servers started by a block keep
    # answering between blocks. Blocks with top-level await run on it; the others run here,
    # where asyncio.run() works.
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="readme-loop", daemon=True).start()
    namespace = {"__name__": "__main__"}

    async def run_async(code):
        await eval(code, namespace)

    for line in sys.stdin:
        request = json.loads(line)
        if not request.get("continues"):
            namespace = {"__name__": "__main__"}
        try:
            code = compile(request["code"], request["name"], "exec",
                           flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            if code.co_flags & inspect.CO_COROUTINE:
                asyncio.run_coroutine_threadsafe(run_async(code), loop).result()
            else:
                exec(code, namespace)
            reply = {"ok": True}
        except BaseException:
            reply = {"ok": False, "error": traceback.format_exc()}
        sys.stdout.flush(); sys.stderr.flush()
        out.write(json.dumps(reply) + "\\n"); out.flush()
    # Servers a block started are not stopped one by one: the process ends with the session.
    os._exit(0)
''')


_BASH_PRELUDE = r'''
set -e -o pipefail
curl() {
  local args=() a last
  last="$(cat "$README_TMP/last_job_id" 2>/dev/null || true)"
  for a in "$@"; do a="${a//\{job_id\}/$last}"; a="${a//<job_id>/$last}"; args+=("$a"); done
  local out
  out="$(command curl -sS --fail-with-body --max-time 60 "${args[@]}")" \
    || { echo "$out"; return 22; }
  printf '%s\n' "$out"
  printf '%s' "$out" | "$README_PYTHON" "$README_HELPER" remember-job "$README_TMP/last_job_id"
}
__readme_daemon() {
  local id="$1" mode="$2"; shift 2
  "$README_PYTHON" "$README_HELPER" before-daemon "$README_TMP" "$mode"
  "$@" > "$README_TMP/daemon-$id.log" 2>&1 &
  echo "$! $mode $README_TMP/daemon-$id.log" >> "$README_TMP/daemons"
  "$README_PYTHON" "$README_HELPER" wait-daemon "$README_TMP" "$!" "$mode"
}
'''

_HELPER = textwrap.dedent('''
    """Helpers the README's bash blocks call (written out by tests/test_readme.py)."""
    import json, os, signal, sys, time, urllib.request

    def get(url):
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read() or b"null")

    def alive_workers(port):
        try:
            nodes = get(f"http://127.0.0.1:{port}/nodes")[1]["nodes"]
        except Exception:
            return -1
        return sum(1 for n in nodes if n.get("role") == "worker"
                   and (n.get("status") or n.get("state")) == "alive")

    def running(pid):
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().split(")")[-1].split()[0] != "Z"
        except OSError:
            return True

    def stop_all(tmp):
        path = os.path.join(tmp, "daemons")
        if not os.path.exists(path):
            return
        entries = [line.split() for line in open(path) if line.strip()]
        for pid, *_ in entries:
            try:
                os.kill(int(pid), signal.SIGTERM)
            except OSError:
                pass
        for pid, *_ in entries:
            deadline = time.time() + 30
            while running(int(pid)) and time.time() < deadline:
                time.sleep(0.05)
            if running(int(pid)):
                os.kill(int(pid), signal.SIGKILL)
        os.remove(path)

    cmd = sys.argv[1]
    port = int(os.environ["README_PORT"])
    if cmd == "remember-job":
        try:
            job = json.loads(sys.stdin.read()).get("job_id")
        except Exception:
            job = None
        if job:
            open(sys.argv[2], "w").write(job)
    elif cmd == "before-daemon":
        tmp, mode = sys.argv[2], sys.argv[3]
        if mode != "worker":
            stop_all(tmp)
        else:
            open(os.path.join(tmp, "workers_before"), "w").write(str(alive_workers(port)))
    elif cmd == "wait-daemon":
        tmp, pid, mode = sys.argv[2], int(sys.argv[3]), sys.argv[4]
        before = int(open(os.path.join(tmp, "workers_before")).read()) if mode == "worker" else 0
        deadline = time.time() + 90
        while time.time() < deadline:
            if not running(pid):
                log = open(os.path.join(tmp, "daemons")).read().splitlines()[-1].split()[2]
                sys.exit(f"the {mode} daemon exited early:\\n" + open(log).read()[-3000:])
            try:
                if mode == "worker":
                    if alive_workers(port) > max(before, 0):
                        sys.exit(0)
                elif get(f"http://127.0.0.1:{port}/ready")[0] == 200:
                    sys.exit(0)
            except Exception:
                pass
            time.sleep(0.1)
        sys.exit(f"the {mode} daemon was not ready after 90 s")
    elif cmd == "stop-all":
        stop_all(sys.argv[2])
''')


class Session:
    """State of one README run: the port, the sandbox, the daemons and the Python kernel."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = _free_port()
        self.sandbox = tmp / "sandbox"
        self.sandbox.mkdir()
        for entry in REPO.iterdir():
            if entry.name not in (".git",):
                (self.sandbox / entry.name).symlink_to(entry)
        self.bin = tmp / "bin"
        self.bin.mkdir()
        # Wrappers, not symlinks: a symlink to a virtual environment's interpreter placed in
        # another directory starts the base interpreter (Python finds pyvenv.cfg next to the
        # path it was started by), which would run another installation's packages.
        for name in ("python", "python3"):
            wrapper = self.bin / name
            wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
            wrapper.chmod(0o755)
        sabot_node = self.bin / "sabot-node"
        sabot_node.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m sabot.cli "$@"\n')
        sabot_node.chmod(0o755)
        self.helper = tmp / "readme_helper.py"
        self.helper.write_text(_HELPER)
        self.prelude = tmp / "prelude.sh"
        self.prelude.write_text(_BASH_PRELUDE)
        (tmp / "home").mkdir()
        self.env = self._env()
        self.kernel: subprocess.Popen | None = None
        self.kernel_out: Any = None
        self.server_owner: str | None = None  # "shell", "kernel" or None
        self.static = StaticState()
        self.daemon_count = 0

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(_SETTINGS_PREFIXES) and k not in _SETTINGS}
        env.update(
            PATH=f"{self.bin}{os.pathsep}{env.get('PATH', '')}",
            PYTHONPATH=os.pathsep.join([str(REPO / "python")] + [
                p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]),
            PYTHONUNBUFFERED="1", HOME=str(self.tmp / "home"),
            SABOT_DATA_DIR=str(self.tmp / "data"),
            SABOT_CLUSTER_KEY_FILE=str(self.tmp / "cluster.key"),
            SABOT_ZMQ_PORT=str(_free_port()), SABOT_ADVERTISE_HOST="127.0.0.1",
            SABOT_HOST="127.0.0.1", SABOT_PORT=str(self.port), COORDINATOR_PORT=str(self.port),
            MAX_WORKERS="2",
            README_PORT=str(self.port), README_TMP=str(self.tmp), README_PYTHON=sys.executable,
            README_HELPER=str(self.helper),
        )
        return env

    # -- nodes -----------------------------------------------------------------------------
    def serving(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def stop_daemons(self) -> None:
        subprocess.run([sys.executable, str(self.helper), "stop-all", str(self.tmp)],
                       env=self.env, timeout=120, check=False)
        if self.server_owner == "shell":
            self.server_owner = None

    def ensure_node(self) -> None:
        """A fresh coordinator with one worker on port P, unless a node serves there."""
        if self.serving():
            return
        self.run_bash(
            "__readme_daemon fresh-coordinator coordinator env SABOT_MODE=coordinator "
            f"SABOT_PORT={self.port} python -m sabot.composable_launcher\n"
            "__readme_daemon fresh-worker worker env SABOT_MODE=worker "
            f"COORDINATOR_HOST=127.0.0.1 COORDINATOR_PORT={self.port} "
            "python -m sabot.composable_launcher\n", "fresh node")
        self.server_owner = "shell"

    # -- shell -----------------------------------------------------------------------------
    def run_bash(self, script: str, where: str) -> str:
        proc = subprocess.run(
            ["bash", "-c", f'source "{self.prelude}"\n{script}'], cwd=self.sandbox,
            env=self.env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"{where} failed (exit {proc.returncode}):\n{script}\n" \
                                     f"--- output ---\n{output[-4000:]}"
        return output

    def shell_block(self, block: Block) -> str:
        code = rewrite(block.code, self.port)
        exports: dict[str, str] = {}
        script: list[str] = []
        notes: list[str] = []
        starts_server = needs_node = False
        lines = [part for line in join_continuations(code) for part in split_and_list(line)]
        for line in lines:
            env, words = split_command(line)
            if words == ["export"]:
                exports.update(env)
                script.append(line)
                continue
            note = check_static_command(words, self.static, block.where)
            if note is not None:
                notes.append(note)
                script.append(f": # {note}")
                continue
            if is_daemon(words, line):
                mode = daemon_mode({**exports, **env}, words)
                if mode != "worker":
                    starts_server = True
                    if self.server_owner == "kernel":
                        self.restart_kernel()
                elif not starts_server:
                    needs_node = True
                self.daemon_count += 1
                script.append(f"__readme_daemon {self.daemon_count} {mode} env {line}")
                continue
            if not starts_server and (f"127.0.0.1:{self.port}" in line or words[:2] in (
                    ["sabot-node", "submit"], ["sabot-node", "status"])):
                needs_node = True
            script.append(line)
        if needs_node:
            self.ensure_node()
        output = self.run_bash("\n".join(script) + "\n", block.where)
        if starts_server:
            self.server_owner = "shell"
        tail = (output.strip().splitlines() or [""])[-1][-200:]
        return "; ".join(notes + ([f"ran: {tail}"] if tail else [])) or "ran"

    # -- python ----------------------------------------------------------------------------
    def start_kernel(self) -> None:
        with open(self.tmp / "kernel.log", "a") as log:
            self.kernel = subprocess.Popen(
                [sys.executable, "-c", _KERNEL], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=log, text=True, cwd=self.sandbox, env=self.env)
        self.kernel_out = self.kernel.stdout

    def restart_kernel(self) -> None:
        self.stop_kernel()
        if self.server_owner == "kernel":
            self.server_owner = None

    def stop_kernel(self) -> None:
        if self.kernel is None:
            return
        self.kernel.stdin.close()
        try:
            self.kernel.wait(30)
        except subprocess.TimeoutExpired:
            self.kernel.kill()
            self.kernel.wait(10)
        self.kernel.stdout.close()
        self.kernel = self.kernel_out = None

    def python_block(self, block: Block) -> str:
        code = rewrite(block.code, self.port)
        starts_server = bool(re.search(r"create_distributed_coordinator\(", code)
                             and re.search(r"\.start\(\)", code)) or "launch_sabot(" in code
        if starts_server:
            self.stop_daemons()
        elif str(self.port) in code or re.search(
                r"create_distributed_coordinator\(|create_worker_node\(|"
                r"submit_distributed_job\(", code):
            self.ensure_node()
        if self.kernel is None:
            self.start_kernel()
        assert self.kernel is not None and self.kernel.stdin is not None
        log_size = (self.tmp / "kernel.log").stat().st_size
        self.kernel.stdin.write(json.dumps({"code": code, "name": block.where,
                                             "continues": block.continues}) + "\n")
        self.kernel.stdin.flush()
        line = _readline_with_timeout(self.kernel_out, BLOCK_TIMEOUT_S)
        with open(self.tmp / "kernel.log") as f:
            f.seek(log_size)
            output = f.read()
        assert line, f"{block.where}: the Python process died:\n{output[-4000:]}"
        reply = json.loads(line)
        assert reply["ok"], f"{block.where} failed:\n{code}\n--- output ---\n{output[-3000:]}" \
                            f"\n--- error ---\n{reply['error'][-4000:]}"
        if starts_server:
            self.server_owner = "kernel"
        return output[-200:]

    # -- all -------------------------------------------------------------------------------
    def run(self, block: Block) -> str:
        if block.lang in SHELL_LANGS:
            return self.shell_block(block)
        if block.lang in PYTHON_LANGS:
            return self.python_block(block)
        return check_static_block(block)

    def close(self) -> None:
        self.stop_kernel()
        self.stop_daemons()


def _readline_with_timeout(stream: Any, timeout: float) -> str:
    import select

    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline() if ready else ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_inline_metrics(text: str) -> set[str]:
    """Every metric name the prose mentions in backticks (`sabot_...`) is one Sabot exports."""
    prose = re.sub(r"^(`{3,}|~{3,}).*?^\1", "", text, flags=re.S | re.M)
    names = {m for m in re.findall(r"`(sabot_[a-z0-9_]+)(?:\{[^`]*\})?`", prose)}
    missing = names - exported_metric_names()
    assert not missing, f"README mentions metrics Sabot does not export: {sorted(missing)}"
    return names


def run_readme(text: str, tmp: Path) -> list[tuple[Block, str]]:
    """Run every block of ``text``; returns (block, note) per block. Raises on the first
    failing block (AssertionError naming it)."""
    check_config_tables(text)
    check_inline_metrics(text)
    session = Session(tmp)
    done: list[tuple[Block, str]] = []
    try:
        for block in parse_blocks(text):
            if block.skip is not None:
                done.append((block, f"skipped: {block.skip}"))
                continue
            done.append((block, session.run(block)))
    finally:
        session.close()
    return done


# -- tests -----------------------------------------------------------------------------------------
def test_readme(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    for block, note in run_readme(text, tmp_path):
        print(f"{block.where}: {note.strip().splitlines()[-1] if note.strip() else 'ok'}")


# The runner itself, on small READMEs: it must pass what works and fail what drifts.
SAMPLE = '''
# Sample

| Variable | Default |
|---|---|
| `SABOT_PORT` | 8080 |
| `CLUSTER_NAME` | sabot-cluster |

```bash
export SABOT_MODE=single-node
python -m sabot.composable_launcher
```

```bash
curl http://localhost:8080/health
curl -X POST http://sabot-coordinator:8080/submit_job \\
  -H "Content-Type: application/json" \\
  -d '{"data": [1,2,3,4,5], "processor_func": "square"}'
sleep 1
curl http://localhost:8080/job/{job_id} \\
  | python -c "import json,sys; assert json.load(sys.stdin)['result'] == [1,4,9,16,25]"
```

```python
import sabot
launcher = sabot.create_composable_launcher()
await launcher.start()
results = await launcher.process_data(list(range(10)), lambda x: x + 1)
assert results == list(range(1, 11))
```

<!-- readme-test: continues -->
```python
stats = launcher.get_stats()
assert "system_resources" in stats
await launcher.stop()
```

```bash
SABOT_MODE=coordinator SABOT_PORT=8080 python -m sabot.composable_launcher
SABOT_MODE=worker COORDINATOR_HOST=localhost COORDINATOR_PORT=8080 \\
  python -m sabot.composable_launcher
```

```python
import sabot
coordinator = sabot.create_distributed_coordinator("coordinator.example.com", 8080)
job_id = await sabot.submit_distributed_job(coordinator, [1, 2, 3], "square")
assert await sabot.get_distributed_job_result(coordinator, job_id, timeout=60) == [1, 4, 9]
```

```bash
kubectl apply -f helm/k8s-deployment.yaml
pip install -e .[dev]
pytest
```

```text
sabot_queue_depth{node="coordinator"}
```

<!-- readme-test: skip needs a real cluster -->
```bash
exit 1
```
'''


@pytest.mark.skipif(not (REPO / "helm" / "k8s-deployment.yaml").is_file(),
                    reason="helm/k8s-deployment.yaml has not landed")
def test_runner_passes_a_working_readme(tmp_path: Path) -> None:
    notes = [note for _, note in run_readme(SAMPLE, tmp_path)]
    assert notes[-1].startswith("skipped: needs a real cluster")
    assert "metric names checked (1)" in notes


@pytest.mark.parametrize("drift, needle", [
    ("```bash\ncurl http://localhost:8080/no-such-endpoint\n```", "failed"),
    ("```python\nimport sabot\nsabot.no_such_function()\n```", "AttributeError"),
    # A block that only works after an earlier one (a name it never imports).
    ("```python\nimport sabot\n```\n\n```python\nprint(sabot.__version__)\n```", "NameError"),
    ("```bash\nkubectl apply -f k8s-nowhere.yaml\n```", "does not exist"),
    ("```bash\ndocker build -t sabot .\n```", "Dockerfile"),
    ("```bash\npip install -e .[nonexistent]\n```", "[nonexistent]"),
    ("```text\nsabot_made_up_metric{node=\"x\"}\n```", "sabot_made_up_metric"),
    ("| `SABOT_NO_SUCH_SETTING` | 1 |\n", "SABOT_NO_SUCH_SETTING"),
    ("Watch `sabot_made_up_total` in Grafana.\n", "sabot_made_up_total"),
    ("```bash\nSABOT_MODE=single-node SABOT_PORT=eighty python -m sabot.composable_launcher\n```",
     "exited early"),
])
def test_runner_fails_a_drifting_readme(tmp_path: Path, drift: str, needle: str) -> None:
    with pytest.raises(AssertionError) as info:
        run_readme(drift, tmp_path)
    assert needle in str(info.value)


def test_rewrite_points_everything_at_loopback() -> None:
    code = ('curl http://sabot-coordinator:8080/stats\nCOORDINATOR_HOST=coordinator.example.com '
            'COORDINATOR_PORT=8080\ncreate_distributed_coordinator("coordinator.example.com", 8080)'
            '\ncreate_distributed_coordinator(host="0.0.0.0", port=8080)\n'
            'curl http://localhost:8080/job/{job_id}\n')
    out = rewrite(code, 5555)
    assert "8080" not in out and "example.com" not in out and "sabot-coordinator" not in out
    assert out.count("127.0.0.1") == 5 and "/job/{job_id}" in out


def test_command_lists_are_split() -> None:
    assert split_and_list("apt-get update && apt-get install -y x && pip install . && "
                          "sabot-node demo") == ["apt-get update", "apt-get install -y x",
                                                 "pip install .", "sabot-node demo"]
    assert split_and_list("echo 'a && b'; echo \"c;d\"") == ["echo 'a && b'", 'echo "c;d"']
    assert split_and_list("curl x || true") == ["curl x || true"]


def test_parse_blocks_reads_indented_fences_and_skips() -> None:
    text = ("1. Start:\n   ```bash\n   SABOT_MODE=single-node python -m x\n   ```\n"
            "<!-- readme-test: skip why not -->\n```python\nprint(1)\n```\n")
    blocks = parse_blocks(text)
    assert [(b.lang, b.line, b.skip) for b in blocks] == [("bash", 2, None),
                                                          ("python", 6, "why not")]
    assert blocks[0].code == "SABOT_MODE=single-node python -m x\n"
