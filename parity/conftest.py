"""Options of the `pytest parity/` certification suite (each also an environment
variable), their fixtures, and the skip helper that names the option a test needs.

    pytest parity/ --genet-weights GENet_large.pth
    GENET_IMAGENET_DIR=/data/val pytest parity/

Without options the suite runs every variant on seeded random weights.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import pytest


@dataclass(frozen=True)
class Option:
    flag: str
    env: str
    metavar: str
    help: str

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    def how(self) -> str:
        return f"{self.flag} {self.metavar} (or {self.env}={self.metavar})"


OPTIONS = {o.dest: o for o in (
    Option("--genet-weights", "GENET_WEIGHTS", "PATH",
           "your GENet checkpoint (.pth/.safetensors in the official or timm layout, or a .pdparams)"),
    Option("--genet-arch", "GENET_ARCH", "ARCH",
           "small|normal|large (default: identified from --genet-weights, else all three)"),
    Option("--imagenet-dir", "GENET_IMAGENET_DIR", "DIR", "ImageNet validation images"),
    Option("--imagenet-list", "GENET_IMAGENET_LIST", "FILE",
           "'<relative image path> <label>' per line (the Paddle reproduction's val_list.txt)"),
    Option("--imagenet-limit", "GENET_IMAGENET_LIMIT", "N", "use only the first N images"),
)}


def pytest_addoption(parser):
    group = parser.getgroup("genet", "GENet parity certification (pytest parity/)")
    for o in OPTIONS.values():
        group.addoption(o.flag, dest=o.dest, default=None, metavar=o.metavar, help=f"{o.help}; env {o.env}")


def option_value(config, name: str) -> Optional[str]:
    """The command-line value of option `name`, else its environment variable, else None."""
    o = OPTIONS[name]
    value = config.getoption(o.dest, default=None)
    if value in (None, ""):
        value = os.environ.get(o.env) or None
    return value


def skip_without(value, name: str, what: str = "this test"):
    """`value`, or skip with a message naming the option that provides it."""
    if value is None:
        pytest.skip(f"{what} needs {OPTIONS[name].how()}")
    return value


def _path(config, name):
    value = option_value(config, name)
    if value is not None and not os.path.exists(value):
        raise pytest.UsageError(f"{OPTIONS[name].flag} {value}: no such file or directory")
    return value


@pytest.fixture(scope="session")
def genet_weights(pytestconfig) -> Optional[str]:
    return _path(pytestconfig, "genet_weights")


@pytest.fixture(scope="session")
def genet_arch(pytestconfig) -> Optional[str]:
    value = option_value(pytestconfig, "genet_arch")
    if value is None:
        return None
    from genet_arch import canonical_arch

    try:
        return canonical_arch(value)
    except ValueError as e:
        raise pytest.UsageError(f"--genet-arch {value}: {e}") from None


@pytest.fixture(scope="session")
def imagenet_dir(pytestconfig) -> Optional[str]:
    return _path(pytestconfig, "imagenet_dir")


@pytest.fixture(scope="session")
def imagenet_list(pytestconfig) -> Optional[str]:
    return _path(pytestconfig, "imagenet_list")


@pytest.fixture(scope="session")
def imagenet_limit(pytestconfig) -> Optional[int]:
    value = option_value(pytestconfig, "imagenet_limit")
    if value is None:
        return None
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise pytest.UsageError(f"--imagenet-limit {value}: expected a positive integer")
    return n


@pytest.fixture
def needs():
    """needs(value, 'imagenet_dir') -> value, or skip naming --imagenet-dir."""
    return skip_without


@pytest.fixture(scope="session")
def user_weights(genet_weights, genet_arch):
    """The user's checkpoint loaded and identified (converters.load_weights), or None."""
    if genet_weights is None:
        return None
    from converters.load import load_weights

    return load_weights(genet_weights, arch=genet_arch)


def pytest_generate_tests(metafunc):
    """`certified_arch`: the variant of --genet-weights/--genet-arch, else all three."""
    if "certified_arch" in metafunc.fixturenames:
        arch = option_value(metafunc.config, "genet_arch")
        if arch is None and option_value(metafunc.config, "genet_weights"):
            archs = ["from-weights"]
        else:
            archs = [arch] if arch else ["small", "normal", "large"]
        metafunc.parametrize("certified_arch", archs)
