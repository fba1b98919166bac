import pytest

from .harness import Daemon


@pytest.fixture
def daemons():
    """Start daemons through this list; every one is stopped (or killed) at the end."""
    started: list[Daemon] = []

    def start(*args, **kwargs) -> Daemon:
        daemon = Daemon(*args, **kwargs)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        try:
            daemon.stop(timeout=30)
        except Exception:
            daemon.kill()
