"""Repository-wide pytest set-up: notebooks collected by nbval run with their smoke settings;
SIGTERM and SIGHUP end a run as Ctrl-C does."""
import os
import signal
import threading

os.environ.setdefault("WORKBENCH_SMOKE", "1")


def pytest_configure(config):
    """SIGTERM and SIGHUP raise KeyboardInterrupt, so the fixtures' teardown (and nbval's) still
    stops the servers, clusters and kernels they started."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    if threading.current_thread() is threading.main_thread():
        for stop in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(stop, interrupt)
