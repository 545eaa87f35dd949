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
    Option("--genet-inconclusive", "GENET_INCONCLUSIVE", "report|fail",
           "an accuracy check the sample is too small to decide: 'report' (default) shows it as its own outcome, "
           "INCONCLUSIVE, in the summary line; 'fail' makes it a failure"),
)}
INCONCLUSIVE_MODES = ("report", "fail")


class Inconclusive(Exception):
    """An accuracy check whose confidence interval straddles its threshold:
    the sample cannot decide it. Never a pass, never a silent skip: reported
    as INCONCLUSIVE (its own outcome) or, with --genet-inconclusive fail, as a failure."""


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


def skip_unless_all(what: str, **values):
    """Skip naming every option still missing (keyword = option name)."""
    missing = [OPTIONS[name].how() for name, value in values.items() if value is None]
    if missing:
        pytest.skip(f"{what} needs {' and '.join(missing)}")


def _path(config, name):
    value = option_value(config, name)
    if value is not None and not os.path.exists(value):
        raise pytest.UsageError(f"{OPTIONS[name].flag} {value}: no such file or directory")
    return value


def inconclusive_mode(config) -> str:
    value = (option_value(config, "genet_inconclusive") or "report").strip().lower()
    if value not in INCONCLUSIVE_MODES:
        raise pytest.UsageError(f"--genet-inconclusive {value}: expected one of {', '.join(INCONCLUSIVE_MODES)}")
    return value


def pytest_configure(config):
    inconclusive_mode(config)  # a wrong value is a usage error before any test runs


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """An Inconclusive check: with 'fail' the failure it already is (its
    message says INCONCLUSIVE); with 'report' an outcome of its own, as pytest
    reports an xfail: not passed, not failed, and shown under its own name."""
    outcome = yield
    report = outcome.get_result()
    if call.excinfo is None or not call.excinfo.errisinstance(Inconclusive):
        return
    if inconclusive_mode(item.config) == "report":
        reason = str(call.excinfo.value)
        report.outcome = "skipped"  # neither passed nor failed; pytest_report_teststatus names it
        report.longrepr = (str(item.path), (item.location[1] or 0) + 1, f"INCONCLUSIVE: {reason}")
        report.genet_inconclusive = reason


def pytest_report_teststatus(report, config):
    if getattr(report, "genet_inconclusive", None) is not None:
        return "inconclusive", "I", ("INCONCLUSIVE", {"yellow": True})
    return None


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
    """The user's checkpoint loaded and identified (converters.files.load.load_weights), or None."""
    if genet_weights is None:
        return None
    from converters.files.load import load_weights

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


HERE = os.path.dirname(os.path.abspath(__file__))


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return reason[len("Skipped: "):] if reason.startswith("Skipped: ") else reason


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """At the end of every run, each INCONCLUSIVE check with the sample that
    would decide it, and each skipped check of this suite with its reason,
    which names the option that enables it (no -rs needed)."""
    undecided = terminalreporter.stats.get("inconclusive", [])
    if undecided:
        terminalreporter.section(f"genet-parity: {len(undecided)} check(s) INCONCLUSIVE: the sample is too small "
                                 "to decide them (neither passed nor failed)", sep="-", yellow=True)
        for report in undecided:
            terminalreporter.write_line(f"INCONCLUSIVE {report.nodeid}: {report.genet_inconclusive}")
        terminalreporter.write_line("(--genet-inconclusive fail, or GENET_INCONCLUSIVE=fail, makes each a failure)")
    skipped = []
    for report in terminalreporter.stats.get("skipped", []):
        path = os.path.abspath(os.path.join(str(config.rootpath), report.nodeid.split("::")[0]))
        if path.startswith(HERE + os.sep):
            skipped.append(report)
    if not skipped:
        return
    terminalreporter.section(f"genet-parity: {len(skipped)} check(s) skipped, and what enables each", sep="-")
    for report in skipped:
        terminalreporter.write_line(f"SKIPPED {report.nodeid}: {_skip_reason(report)}")
    terminalreporter.write_line(f"(options: {', '.join(o.flag for o in OPTIONS.values())}; "
                                "each also an environment variable, see `pytest parity/ --help`)")
