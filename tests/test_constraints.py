"""constraints.txt: the pinned set the suite runs with stays complete and agrees with
pyproject.toml, so a fresh machine (CI included) installs versions known to pass."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for number, line in enumerate((REPO / "constraints.txt").read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep, f"constraints.txt line {number}: {line!r} is not a NAME==VERSION pin"
        pins[canonicalize_name(name)] = Version(version)
    return pins


def _requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    own = canonicalize_name(project["name"])
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in ("test", "dev"):
        reqs += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return [r for r in reqs if canonicalize_name(r.name) != own]


def test_every_runtime_and_test_dependency_is_pinned_within_its_range() -> None:
    pins = _pins()
    problems = []
    for req in _requirements():
        name = canonicalize_name(req.name)
        if name not in pins:
            problems.append(f"{req.name} ({req}) has no pin")
        elif not req.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{req.name}=={pins[name]} is outside pyproject's {req}")
    assert not problems, "constraints.txt is out of date: " + "; ".join(problems)


def test_the_ci_script_and_the_readme_install_the_pinned_set() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert "-c constraints.txt" in ci
    readme = (REPO / "README.md").read_text()
    assert "pip install -c constraints.txt -e '.[test]' && pytest" in readme
