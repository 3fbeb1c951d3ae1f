"""pytest fixtures for the tact end-to-end tests. The machinery lives in harness.py."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    InputProducer,
    Tansu,
    TactProcess,
    tact_bin_path,
)

try:  # pytest-timeout is in requirements.txt; keep a minimal fallback so nothing can hang CI
    import pytest_timeout  # noqa: F401

    HAVE_PYTEST_TIMEOUT = True
except ImportError:  # pragma: no cover
    HAVE_PYTEST_TIMEOUT = False


def pytest_addoption(parser):
    if not HAVE_PYTEST_TIMEOUT:
        parser.addini("timeout", "per-test timeout in seconds (fallback for pytest-timeout)", default="300")
        parser.addini("timeout_method", "ignored (fallback for pytest-timeout)", default="signal")


def pytest_configure(config):
    if not HAVE_PYTEST_TIMEOUT:
        config.addinivalue_line("markers", "timeout(seconds): per-test timeout")


@pytest.fixture(autouse=True)
def _fallback_timeout(request):
    if HAVE_PYTEST_TIMEOUT:
        yield
        return
    marker = request.node.get_closest_marker("timeout")
    seconds = int(marker.args[0]) if marker else int(request.config.getini("timeout"))

    def on_alarm(signum, frame):
        pytest.fail(f"test timed out after {seconds}s", pytrace=True)

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, append tact/tansu logs (anything with a diagnostics() method) to the report."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when in ("setup", "call") and rep.failed:
        for name, value in getattr(item, "funcargs", {}).items():
            diag = getattr(value, "diagnostics", None)
            if callable(diag):
                try:
                    rep.sections.append((f"diagnostics: {name}", diag()))
                except Exception as exc:  # noqa: BLE001
                    rep.sections.append((f"diagnostics: {name}", f"<failed: {exc!r}>"))


@pytest.fixture(scope="session")
def tact_bin() -> Path:
    path = tact_bin_path()
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.skip(f"tact binary not found at {path}: build it (cargo build -p tact) or set TACT_BIN")
    return path


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """A tansu broker for the tests of one module (each test uses its own topics)."""
    b = Tansu(tmp_path_factory.mktemp("tansu")).start()
    yield b
    b.stop()


@pytest.fixture
def producer(broker):
    return InputProducer(broker.bootstrap)


class TactFactory:
    """Creates TactProcess instances for one test and kills whatever is left at teardown."""

    def __init__(self, tact_bin: Path, broker: Tansu, workdir: Path):
        self.tact_bin = tact_bin
        self.broker = broker
        self.workdir = workdir
        self.processes: list[TactProcess] = []

    def __call__(self, topics: dict[str, str], **kwargs) -> TactProcess:
        kwargs.setdefault("name", f"tact{len(self.processes) + 1}")
        proc = TactProcess(self.workdir, self.broker.bootstrap, topics, tact_bin=self.tact_bin, **kwargs)
        self.processes.append(proc)
        return proc

    def close(self) -> None:
        for p in self.processes:
            p.close()

    def diagnostics(self) -> str:
        parts = [p.diagnostics() for p in self.processes] or ["<no tact process started>"]
        return "\n\n".join(parts + [self.broker.diagnostics()])


@pytest.fixture
def tact(tact_bin, broker, tmp_path):
    factory = TactFactory(tact_bin, broker, tmp_path)
    yield factory
    factory.close()
