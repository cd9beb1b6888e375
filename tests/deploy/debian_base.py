"""A stand-in for the official Python image, made from Debian's packages.

docker/Dockerfile builds FROM ``python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE}``; our machines
reach Debian's archive and PyPI but no image registry, so the tests build an equivalent base
with mmdebstrap and pass it as the BASE_IMAGE build argument: the Debian release whose own
``python3`` is the Dockerfile's PYTHON_VERSION, with ``python`` and ``pip`` on the PATH and pip
free to install as root (as in the official image), documentation and locales left out (as in
Debian's slim images). It has Python's headers no more than Debian's python3 does: the
Dockerfile's builder stage installs them when they are missing.

The image is tagged with a hash of its recipe, so a machine builds it once per recipe.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import buildah

MIRROR = "http://deb.debian.org"
#: The Debian release whose python3 is that version (the official image's tags name both).
SUITE_OF_PYTHON = {"3.11": "bookworm", "3.13": "trixie"}
PACKAGES = ("python3", "python3-pip", "python-is-python3", "ca-certificates")
#: Left out of every package, as debian:*-slim does.
EXCLUDED_PATHS = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*",
                  "/usr/share/info/*")
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
       "LANG": "C.UTF-8"}


def available() -> str | None:
    """None when the base can be built here, else why not."""
    if shutil.which("mmdebstrap") is None:
        return "mmdebstrap is not installed (apt-get install mmdebstrap)"
    return buildah.available()


@dataclass(frozen=True)
class DebianPythonBase:
    python_version: str

    @property
    def suite(self) -> str:
        try:
            return SUITE_OF_PYTHON[self.python_version]
        except KeyError:
            raise ValueError(
                f"no Debian release ships Python {self.python_version} as python3; "
                f"the image tests can build a base for {sorted(SUITE_OF_PYTHON)}") from None

    def mmdebstrap_args(self, target: Path) -> list[str]:
        suite = self.suite
        args = ["--variant=minbase", f"--include={','.join(PACKAGES)}",
                # merged /usr through usr-is-merged, instead of usrmerge (and the perl it needs)
                "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
                "--dpkgopt=force-unsafe-io",
                "--customize-hook=rm -f \"$1\"/usr/lib/python3*/EXTERNALLY-MANAGED"]
        for path in EXCLUDED_PATHS:
            args.append(f"--dpkgopt=path-exclude={path}")
        args.append("--dpkgopt=path-include=/usr/share/doc/*/copyright")
        sources = [f"deb {MIRROR}/debian {suite} main",
                   f"deb {MIRROR}/debian {suite}-updates main",
                   f"deb {MIRROR}/debian-security {suite}-security main"]
        return [*args, suite, str(target), *sources]

    @property
    def tag(self) -> str:
        recipe = "\n".join([*self.mmdebstrap_args(Path("-")), repr(sorted(ENV.items()))])
        digest = hashlib.sha256(recipe.encode()).hexdigest()[:12]
        return f"localhost/sabot-test-base:{self.suite}-py{self.python_version}-{digest}"

    def ensure(self, workdir: Path, log_path: Path, *, timeout: float) -> tuple[str, bool]:
        """The base's tag, built first when this machine lacks it; and whether it was built."""
        tag = self.tag
        if buildah.image_exists(tag):
            return tag, False
        workdir.mkdir(parents=True, exist_ok=True)
        tarball = workdir / "rootfs.tar"
        with open(log_path, "w", encoding="utf-8") as log:
            proc = subprocess.run(["mmdebstrap", *self.mmdebstrap_args(tarball)], stdout=log,
                                  stderr=subprocess.STDOUT, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"mmdebstrap exited {proc.returncode}:\n"
                               f"{log_path.read_text(errors='replace')[-6000:]}")
        try:
            buildah.import_rootfs(tarball, tag, env=ENV, cmd=["python3"])
        finally:
            tarball.unlink(missing_ok=True)
        return tag, True
