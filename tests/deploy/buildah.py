"""Buildah, driven as a user would drive Docker: build an image, start containers from it, run
its commands, stop them as `docker stop` does.

Our machines have no container engine, and podman/crun cannot start containers on them
(setrlimit is refused, cgroup v1), so containers run with ``--isolation chroot``: the image's
own file system, user, working directory and environment, in the host's network and PID
namespaces. So every container shares the machine's loopback (each node gets its own free
ports), and a container's process is a host process that can be signalled directly.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil

#: Host CA bundle (Debian's path). Where the network goes through a TLS-inspecting proxy, its CA
#: is in this file and not in the image; a build-time bind mount lends it to the build's RUN
#: steps without writing it into any layer.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


class BuildahError(RuntimeError):
    """A buildah command failed; the message carries its output."""


def available() -> str | None:
    """None when buildah can be used here, else why not."""
    if shutil.which("buildah") is None:
        return "buildah is not installed (apt-get install buildah)"
    if os.geteuid() != 0:
        return "buildah with --isolation chroot needs root here"
    return None


def _run(args: Sequence[str], *, timeout: float, log: IO[str] | None = None) -> str:
    proc = subprocess.run(["buildah", *args], capture_output=log is None, text=True,
                          stdout=log, stderr=subprocess.STDOUT if log is not None else None,
                          timeout=timeout, check=False)
    if proc.returncode != 0:
        out = (proc.stdout or "") + (proc.stderr or "")
        raise BuildahError(f"buildah {' '.join(args[:3])} ... exited {proc.returncode}\n"
                           f"{out[-6000:]}")
    return proc.stdout or ""


def image_exists(ref: str) -> bool:
    return subprocess.run(["buildah", "inspect", "--type", "image", ref],
                          capture_output=True, timeout=60, check=False).returncode == 0


def build(context: Path, dockerfile: Path, tag: str, *, build_args: dict[str, str],
          log_path: Path, timeout: float) -> None:
    """``docker build`` with buildah: the Docker image format (an OCI image would drop the
    HEALTHCHECK) and the layer cache (a rebuild of unchanged steps is free)."""
    args = ["build", "--isolation", "chroot", "--format", "docker", "--layers",
            "--force-rm", "-f", str(dockerfile), "-t", tag]
    for key, value in build_args.items():
        args += ["--build-arg", f"{key}={value}"]
    if HOST_CA_BUNDLE.is_file():
        args += ["-v", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"]
    with open(log_path, "w", encoding="utf-8") as log:
        try:
            _run([*args, str(context)], timeout=timeout, log=log)
        except BuildahError:
            raise BuildahError(f"building {tag} failed:\n{log_path.read_text()[-8000:]}") from None


def import_rootfs(tarball: Path, tag: str, *, env: dict[str, str], cmd: list[str]) -> None:
    """An image from a root file system tarball (``docker import``)."""
    ctr = _run(["from", "scratch"], timeout=120).strip()
    try:
        _run(["add", ctr, str(tarball), "/"], timeout=600)
        config = ["config", "--cmd", json.dumps(cmd)]
        for key, value in env.items():
            config += ["--env", f"{key}={value}"]
        _run([*config, ctr], timeout=60)
        _run(["commit", "--quiet", "--format", "docker", ctr, tag], timeout=600)
    finally:
        subprocess.run(["buildah", "rm", ctr], capture_output=True, timeout=120, check=False)


@dataclass(frozen=True)
class ImageInfo:
    """What ``docker inspect`` shows of an image: its config, its history, its size."""

    ref: str
    config: dict[str, Any]
    history: list[dict[str, Any]]
    size: str  #: as `buildah images` shows it ("503 MB": the layers, uncompressed)

    @property
    def layers(self) -> list[str]:
        """The steps that added a file system layer, oldest first."""
        return [h.get("created_by", "") for h in self.history if not h.get("empty_layer")]

    @property
    def command(self) -> list[str]:
        return list(self.config.get("Entrypoint") or []) + list(self.config.get("Cmd") or [])

    @property
    def env(self) -> dict[str, str]:
        return dict(e.split("=", 1) for e in self.config.get("Env") or [])


def inspect(ref: str) -> ImageInfo:
    data = json.loads(_run(["inspect", "--type", "image", ref], timeout=60))
    docker = data["Docker"]
    listing = json.loads(_run(["images", "--json", ref], timeout=60))
    return ImageInfo(ref, docker["config"], docker.get("history", []), str(listing[0]["size"]))


@dataclass
class Container:
    """A working container of an image (``buildah from``): its own copy-on-write file system."""

    name: str
    image: str
    started: list[RunningCommand] = field(default_factory=list)

    @classmethod
    def create(cls, image: str, name: str) -> Container:
        _run(["from", "--name", name, "--pull=never", image], timeout=120)
        return cls(name, image)

    def _argv(self, command: Sequence[str], env: dict[str, str],
              user: str | None = None) -> list[str]:
        argv = ["buildah", "run", "--isolation", "chroot"]
        if user is not None:
            argv += ["--user", user]
        for key, value in env.items():
            argv += ["--env", f"{key}={value}"]
        return [*argv, self.name, "--", *command]

    def run(self, command: Sequence[str], env: dict[str, str] | None = None, *,
            user: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a command to its end (``docker exec``), as the image's user unless ``user``."""
        return subprocess.run(self._argv(command, env or {}, user), capture_output=True,
                              text=True, timeout=timeout, check=False)

    def start(self, command: Sequence[str], env: dict[str, str], log_path: Path) -> RunningCommand:
        """Start a long-running command (``docker run -d``), output to ``log_path``."""
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(self._argv(command, env), stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        running = RunningCommand(proc, log_path, Path(command[0]).name)
        self.started.append(running)
        return running

    def remove(self) -> None:
        for running in self.started:
            running.kill()
        subprocess.run(["buildah", "rm", self.name], capture_output=True, timeout=120,
                       check=False)


@dataclass
class RunningCommand:
    """A command started in a container: the buildah process and, inside it, the command's."""

    buildah: subprocess.Popen[bytes]
    log_path: Path
    program: str  # the command's executable's name, as its cmdline shows it

    def poll(self) -> int | None:
        return self.buildah.poll()

    def process(self, timeout: float = 30.0) -> psutil.Process:
        """The container's main process (the image's CMD): the descendant of buildah's process
        that runs the command's program. While the container starts, buildah's helpers come and
        go under it (a CI run once picked one that had exited a moment later), so a process
        counts only once its cmdline names the program. buildah kills, rather than forwards, a
        SIGTERM sent to it, so `docker stop` is a SIGTERM to this process."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                children = psutil.Process(self.buildah.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                break
            for child in children:
                if self._runs_program(child):
                    return child
            if self.buildah.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no process running {self.program!r} under buildah pid "
                             f"{self.buildah.pid}\n{self.tail()}")

    def _runs_program(self, proc: psutil.Process) -> bool:
        try:
            return (not _is_buildah(proc)
                    and any(Path(arg).name == self.program for arg in proc.cmdline()[:2]))
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            return False

    def stop(self, grace_s: float) -> int | None:
        """SIGTERM the container's process and wait; the exit status (None: it had to be
        killed after ``grace_s``, as Docker does)."""
        if self.buildah.poll() is None:
            try:
                self.process(timeout=5).send_signal(signal.SIGTERM)
            except (AssertionError, psutil.NoSuchProcess):
                pass
        try:
            return self.buildah.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        """SIGKILL the command, everything it started, and buildah."""
        if self.buildah.poll() is None:
            try:
                tree = psutil.Process(self.buildah.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                tree = []
            for proc in tree:
                try:
                    proc.kill()
                except psutil.NoSuchProcess:
                    pass
            try:
                os.killpg(self.buildah.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.buildah.wait(timeout=60)

    def tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except FileNotFoundError:
            return ""


def _is_buildah(proc: psutil.Process) -> bool:
    """buildah itself, or one of its re-executions (``exe``, ``memfd:buildah-chroot-*``), which
    come and go while a container starts."""
    try:
        # the executable's own name: a container's files live under buildah's mount path
        return "buildah" in Path(proc.exe()).name or "buildah" in proc.name()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
