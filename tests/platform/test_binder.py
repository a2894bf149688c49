"""binder/ pins exactly what constraints.txt pins, and covers every pyproject dependency."""
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_binder_requirements_equal_the_constraints_file():
    assert _pins(ROOT / "binder" / "requirements.txt") == _pins(ROOT / "constraints.txt")


def test_every_pyproject_dependency_is_pinned_at_or_above_its_lower_bound():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = list(project["dependencies"]) + [d for extra in project["optional-dependencies"].values() for d in extra]
    pins = _pins(ROOT / "binder" / "requirements.txt")
    for dep in deps:
        req = Requirement(dep)
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name in pins, f"{req.name} is a dependency but binder/requirements.txt does not pin it"
        assert req.specifier.contains(Version(pins[name]), prereleases=True), f"{req.name}=={pins[name]} violates {req.specifier}"


def test_binder_scripts_are_executable_and_panel_apps_are_in_the_launcher():
    for name in ("postBuild", "start"):
        assert (ROOT / "binder" / name).stat().st_mode & 0o111, f"binder/{name} is not executable"
    assert "apps/*.py" in (ROOT / "jupyter-panel-proxy.yml").read_text()
