"""Every package folder is listed in pyproject (the package-dir mapping needs an explicit list)."""
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAP = {"rtctl": "rtctl", "policies": "rtctl.policies", "sim": "rtctl.sim", "drivers": "rtctl.drivers",
       "safety": "rtctl.safety"}


def test_all_packages_are_listed():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for top, name in MAP.items():
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top)
            found.add(".".join([name, *rel.parts]) if rel.parts else name)
    assert found <= listed, f"missing from pyproject packages: {sorted(found - listed)}"
