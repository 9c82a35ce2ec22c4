"""pyproject.toml describes the package that install.sh and `pip install -e .` install:
the programs of bin/ as console scripts, package data that exists."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_program_in_bin_is_a_console_script_calling_the_same_main() -> None:
    scripts: dict[str, str] = PYPROJECT["project"]["scripts"]
    programs = sorted(p.name for p in (REPO / "bin").iterdir())
    assert sorted(scripts) == programs
    for name in programs:
        module = re.search(r"^from (\S+) import main$", (REPO / "bin" / name).read_text(), re.M)
        assert module is not None, name
        assert scripts[name] == f"{module.group(1)}:main"


def test_every_package_data_pattern_matches_a_file() -> None:
    package_data: dict[str, list[str]] = PYPROJECT["tool"]["setuptools"]["package-data"]
    for package, patterns in package_data.items():
        root = REPO / "lib" / package.replace(".", "/")
        for pattern in patterns:
            assert list(root.glob(pattern)), f"{package}: {pattern!r} matches nothing in {root}"


def test_install_sh_installs_the_package_with_pip_from_pyproject() -> None:
    script = (REPO / "install.sh").read_text()
    assert '"$SRC/pyproject.toml"' in script
    assert 'cp -R "$SRC/lib/ductor"' not in script  # no copy around pip


def test_install_sh_help_names_every_option_it_takes() -> None:
    import subprocess

    script = (REPO / "install.sh").read_text()
    taken = set(re.findall(r"^\s+(--[a-z-]+)(?:\|[^)]*)?\)", script, re.M))
    shown = subprocess.run(
        [str(REPO / "install.sh"), "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert {"--no-hardening", "--force", "--purge"} <= taken
    missing = sorted(o for o in taken if not re.search(re.escape(o) + r"(?![\w-])", shown))
    assert not missing, f"install.sh --help does not mention {missing}"
