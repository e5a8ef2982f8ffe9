"""Serving the notebooks as apps with Voilà, safely by default.

Bound to 127.0.0.1 unless told otherwise; any other address requires a token (generated and
printed unless given). Idle kernels are culled. Voilà's defaults that hide source code and
tracebacks from the browser are kept. A closed or reloaded page shuts its kernel down at once:
``voila_config/voila.py`` gives the page the ``_xsrf`` cookie that Voilà's shutdown beacon needs
(XSRF checks stay on). ``preheat`` keeps kernels running ahead with the notebook executed, for
pages that open at once.

The study notebook (``05_interpretability_study``) guards its own researcher's page: its
participants open links that carry their own unguessable ids, and Voilà's token would have to be
in those links too, opening every page to them. Served alone on a non-loopback address, it gets
no Voilà token; the token (generated unless given) becomes the researcher's secret instead
(``workbench.study.RESEARCHER_SECRET_VARIABLE`` for its kernels, ``?researcher=<token>`` in
the researcher's link).

Voilà runs as a child in its own session (``workbench.processes.start``): when ``serve`` ends
(Voilà exited, an error, or a stop signal turned into ``Interrupted`` by
``workbench.processes.supervised``), Voilà gets SIGTERM, on which it shuts its kernels down,
and whatever is left of its process tree after the grace period is killed. On Linux Voilà also
gets SIGTERM if the serving process is killed outright (SIGKILL).
"""
from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from workbench import processes
from workbench.runner import NOTEBOOK_DIR, notebooks

LOCAL_ADDRESSES = {"127.0.0.1", "localhost", "::1"}
#: notebooks whose pages check the token themselves (see the module docstring)
GUARDS_ITS_PAGES = {"05_interpretability_study.ipynb"}
#: holds ``voila.py``: the hook that issues the ``_xsrf`` cookie on each app page
VOILA_CONFIG_DIR = Path(__file__).resolve().parent / "voila_config"


def config_file_paths() -> list[str]:
    """Voilà's config search path: its defaults (the working folder, then Jupyter's config
    folders), then ours, so a user's own ``voila.py`` still takes precedence."""
    from jupyter_core.paths import jupyter_config_path

    return [".", *jupyter_config_path(), str(VOILA_CONFIG_DIR)]


def guards_its_pages(notebook: str | None) -> bool:
    """Whether ``notebook`` checks the token itself (``GUARDS_ITS_PAGES``)."""
    return notebook is not None and notebooks([notebook])[0].name in GUARDS_ITS_PAGES


#: seconds before a preheated pool refills after a page took a kernel (see ``voila_command``)
REFILL_DELAY_S = 60.0


def voila_command(notebook: str | None = None, ip: str = "127.0.0.1", port: int = 8866,
                  token: str | None = None, cull_idle_timeout: int = 600,
                  cull_interval: int = 60, open_browser: bool = False,
                  preheat: int = 0,
                  refill_delay: float = REFILL_DELAY_S) -> tuple[list[str], str | None]:
    """The ``voila`` command line, and the token in force (None on a local address; for a
    notebook that guards its pages, the token it checks, not given to Voilà).

    ``preheat``: kernels per notebook that Voilà keeps running ahead with the notebook already
    executed (its preheated kernel pool), so that opening the app shows the finished page at
    once instead of after the notebook's run time; each one opened is replaced by a new one
    running ahead. 0 (the default) starts a kernel only when a page is opened.

    ``refill_delay``: seconds Voilà waits, after a page took a preheated kernel, before it starts
    the replacement (Voilà's ``fill_delay``, 1 s by default there). A replacement runs the whole
    notebook; started at once it competes for the cores with the pages that are opening, which on
    2 cores held 8 pages of a paper app at 80-90 s to first paint instead of 25-35 s
    (benchmarks/results/load.md). A page opened while the pool is empty starts its own kernel.
    """
    if not 0 < port < 65536:
        raise ValueError(f"port must be in 1..65535, got {port}")
    if isinstance(preheat, bool) or not isinstance(preheat, int) or preheat < 0:
        raise ValueError(f"preheat must be a whole number of kernels >= 0, got {preheat!r}")
    if not refill_delay >= 0:
        raise ValueError(f"refill_delay must be >= 0 seconds, got {refill_delay!r}")
    if cull_idle_timeout < 0 or cull_interval <= 0:
        raise ValueError("cull_idle_timeout must be >= 0 and cull_interval > 0 (seconds)")
    target = str(notebooks([notebook])[0]) if notebook else str(NOTEBOOK_DIR)
    if ip not in LOCAL_ADDRESSES and not token:
        token = secrets.token_urlsafe(24)
    command = [
        sys.executable, "-m", "voila", target, f"--Voila.ip={ip}", f"--port={port}",
        f"--MappingKernelManager.cull_idle_timeout={cull_idle_timeout}",
        f"--MappingKernelManager.cull_interval={cull_interval}",
        "--MappingKernelManager.cull_connected=False",
        f"--Voila.open_browser={open_browser}",
        *(f"--Voila.config_file_paths={path}" for path in config_file_paths()),
    ]
    if preheat:
        command += ["--VoilaConfiguration.preheat_kernel=True",
                    f"--VoilaConfiguration.default_pool_size={preheat}",
                    f"--VoilaKernelManager.fill_delay={float(refill_delay)}"]
    if token and not guards_its_pages(notebook):
        command.append(f"--Voila.token={token}")
    return command, token


def serve(notebook: str | None = None, **options) -> int:
    """Run Voilà in the foreground until it exits or this call is interrupted; return its exit
    status. Voilà and its kernels are stopped whichever way this call ends."""
    command, token = voila_command(notebook, **options)
    environment = None
    if token and guards_its_pages(notebook):
        from workbench.study import RESEARCHER_SECRET_VARIABLE

        environment = {**os.environ, RESEARCHER_SECRET_VARIABLE: token}
        print(f"Researcher's token (open the page with ?researcher=<token>; participant links "
              f"need none): {token}", flush=True)
    elif token:
        print(f"Token (required on {options.get('ip')}): {token}", flush=True)
    voila = processes.start(command, cwd=Path(NOTEBOOK_DIR), env=environment)
    try:
        return voila.wait()
    finally:
        processes.stop(voila)
