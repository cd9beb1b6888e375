"""Helpers of the deployment tests: the chart renderer loader, a Dockerfile parser, small utilities.

Imported by the test modules as ``deploy_support`` (conftest.py puts this folder on sys.path).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "docker" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
#: Lines for the end-of-run summary (conftest.py prints them): what the artifact tests built.
SUMMARY: list[str] = []


def _load_render_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sabot_helm_render", REPO / "helm" / "render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def load_render_module() -> ModuleType:
    """helm/render.py as a module (it is a script, not part of the sabot package)."""
    return _load_render_module()


# -- Dockerfile ---------------------------------------------------------------------------------
@dataclass
class Instruction:
    keyword: str  #: upper case: FROM, RUN, COPY, ...
    flags: dict[str, str]  #: --from=builder -> {"from": "builder"}
    rest: str  #: the arguments after the flags, continuation lines joined
    stage: str  #: the stage it belongs to (its AS name, or its index)


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


@dataclass
class Dockerfile:
    args: dict[str, str]  #: global ARG defaults
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        for st in self.stages:
            if st.name == name:
                return st
        raise KeyError(name)

    @property
    def runtime(self) -> Stage:
        """The final stage: what `docker build` produces."""
        return self.stages[-1]

    def env(self, stage: Stage) -> dict[str, str]:
        """The ENV the image sets (KEY=VALUE form)."""
        env: dict[str, str] = {}
        for ins in stage.all("ENV"):
            for token in shlex.split(ins.rest):
                key, sep, value = token.partition("=")
                assert sep, f"ENV {ins.rest!r}: use the KEY=VALUE form"
                env[key] = value
        return env

    def exec_form(self, stage: Stage, keyword: str) -> list[str]:
        """CMD/ENTRYPOINT as an argument list (exec form only, which the image uses)."""
        ins = stage.last(keyword)
        if ins is None:
            return []
        value = json.loads(ins.rest)
        assert isinstance(value, list), f"{keyword} must use the exec (JSON) form"
        return [str(v) for v in value]

    def healthcheck(self, stage: Stage) -> tuple[dict[str, str], list[str]]:
        """HEALTHCHECK options and its command (exec form)."""
        ins = stage.last("HEALTHCHECK")
        assert ins is not None, "the image has no HEALTHCHECK"
        rest = ins.rest
        assert rest.startswith("CMD "), f"HEALTHCHECK needs a CMD: {rest!r}"
        command = json.loads(rest[len("CMD "):])
        return ins.flags, [str(v) for v in command]


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") and not current:
            continue  # comments (and parser directives) between instructions
        if stripped.startswith("#"):
            continue  # comments inside a continued instruction are dropped by Docker too
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
            continue
        current += raw
        if current.strip():
            lines.append(current.strip())
        current = ""
    if current.strip():
        lines.append(current.strip())
    return lines


def _expand(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), text)


def parse_dockerfile(path: Path = DOCKERFILE) -> Dockerfile:
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(path.read_text(encoding="utf-8")):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        flags: dict[str, str] = {}
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            name, _, value = flag[2:].partition("=")
            flags[name] = value
            rest = rest.strip()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = _expand(default, args)  # a default may use the ARGs above it
            continue
        if keyword == "FROM":
            parts = rest.split()
            base = _expand(parts[0], args)
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name, base))
            continue
        assert stages, f"{keyword} before the first FROM"
        stages[-1].instructions.append(Instruction(keyword, flags, rest, stages[-1].name))
    return Dockerfile(args, stages)


# -- helpers ------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    return list(deployment["spec"]["template"]["spec"]["containers"])


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The container's env entries by name."""
    return {e["name"]: e for e in container.get("env", [])}
