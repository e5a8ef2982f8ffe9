"""Load test of the apps served by Voilà: concurrent browser sessions on one server.

Run from the repository root::

    python -m benchmarks.load                      # Explorer cold at N = 1, 4, 8; every app
                                                   # preheated at N = 1, 8
    python -m benchmarks.load --sessions "" --apps 00_explorer,01_patternnet --app-sessions 1,8
    python -m benchmarks.load --quick              # Explorer cold at N = 1, 2, preheated at 1

Writes ``benchmarks/results/load.json`` and ``benchmarks/results/load.md`` (see
benchmarks/LOAD.md for what is measured). Two parts, each with ``WORKBENCH_SMOKE=1`` and
culling off (``cull_idle_timeout=0``: kernels end when their page unloads, Voilà's
``beforeunload`` beacon, which is waited for between rounds); one headless Chromium per round
with one browser context per session, driven concurrently with Playwright's async API.

- Every app (``--apps``, ``--app-sessions``): per session count N and app, a fresh server whose
  preheated pool holds N kernels (``workbench serve APP --preheat N``), opened by N pages once
  those kernels have run the notebook; first paint p95 against 2 s at 1 session and 10 s at 8,
  and the Explorer's update p95 against 1 s.
- The Explorer cold (``--sessions``): one server without a pool; time to the first heat map and
  update latency at each N (target: p95 update under 1 s at 8 sessions).

Nothing here asserts; the targets are reported as PASS/FAIL.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench import processes

try:
    import psutil
except ImportError:  # pragma: no cover - the /proc fallback below
    psutil = None

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NOTEBOOK = ROOT / "notebooks" / "00_explorer.ipynb"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
#: the picker edits column 1 (initially "gradient"); the two first are not among the initial
#: columns (gradient, integrated_gradients, lrp_epsilon, guided_backprop), so they are computed
#: afresh; the others hit the Explorer's per-kernel cache of heat maps.
METHOD_CYCLE = ("deconvnet", "gradient_x_input", "lrp_epsilon", "guided_backprop", "gradient")
TARGET_SESSIONS = 8
TARGET_P95_S = 1.0
#: every app: the notebooks' stems (00_explorer, the paper notebooks, the study app)
APPS = tuple(path.stem for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")))
#: first paint p95 targets by concurrent sessions, s
PAINT_TARGET_S = {1: 2.0, 8: 10.0}
#: the page counts as painted once its drawn content has not changed for this long, s
PAINT_QUIET_S = 2.0

# Runs in every page before its scripts: records (performance.now(), what the page shows)
# whenever that changes. What it shows: plotly figures laid out (.main-svg), decoded images in
# cell outputs, rendered widget views, plotly figures still pending, the document's ready state
# and Voila's cell error notice. "Painted" is the first moment the page showed everything it
# shows once quiet (see first_paint_s).
PAINT_JS = r"""
(() => {
  if (window.__paint) return;
  const rec = {events: [], key: null};
  window.__paint = rec;
  const scan = () => {
    const plots = [...document.querySelectorAll('.js-plotly-plot')];
    const drawn = plots.filter(p => p.querySelector('.main-svg')).length;
    const images = [...document.querySelectorAll('.jp-OutputArea img')]
      .filter(i => i.complete && i.naturalWidth > 0).length;
    const widgets = document.querySelectorAll('.jp-OutputArea .jupyter-widgets').length;
    const text = document.body ? document.body.innerText : '';
    const failed = text.includes('There was an error when executing cell');
    const state = {plots: drawn, images, widgets, pending: plots.length - drawn,
                   ready: document.readyState, failed};
    const key = JSON.stringify(state);
    if (key === rec.key) return;
    rec.key = key;
    rec.events.push({t: performance.now(), ...state});
  };
  const start = () => {
    new MutationObserver(scan).observe(document.documentElement,
      {subtree: true, childList: true, characterData: true, attributes: true});
    document.addEventListener('load', scan, true);
    document.addEventListener('readystatechange', scan);
    scan();
  };
  if (document.documentElement) start();
  else document.addEventListener('readystatechange', start, {once: true});
})();
"""

# Runs in every page before its scripts: records (performance.now(), status text, title of
# heat-map column 1, its image's URL) whenever one of them changes. performance.now() counts
# from navigation start, so the first "ready" time is the time to the first heat map. The heat
# maps are PNG tiles (.wb-heatmap-tile: a .wb-heatmap-title and an img.wb-heatmap-image, the
# input first); "drawn" (firstTitle) is when every tile's image is decoded and column 1 has a
# title.
OBSERVER_JS = r"""
(() => {
  if (window.__wb) return;
  const rec = {events: [], firstReady: null, firstTitle: null, status: null, title: null,
               src: null};
  window.__wb = rec;
  const scan = () => {
    const s = document.querySelector('.wb-status');
    const status = s ? s.textContent.trim() : null;
    const tiles = document.querySelectorAll('.wb-heatmaps .wb-heatmap-tile');
    const column = tiles.length > 1 ? tiles[1] : null;
    const heading = column && column.querySelector('.wb-heatmap-title');
    const title = heading ? heading.textContent.trim() : null;
    const image = column && column.querySelector('img.wb-heatmap-image');
    const src = image ? image.src : null;
    const t = performance.now();
    if (rec.firstTitle === null && title && tiles.length > 1 && [...tiles].every(tile => {
          const i = tile.querySelector('img.wb-heatmap-image');
          return i && i.src && i.complete && i.naturalWidth > 0; }))
      rec.firstTitle = t;
    if (status === rec.status && title === rec.title && src === rec.src) return;
    rec.status = status; rec.title = title; rec.src = src;
    rec.events.push({t, status, title, src});
    if (rec.firstReady === null && status && status.startsWith('ready')) rec.firstReady = t;
  };
  const start = () => {
    new MutationObserver(scan).observe(document.documentElement,
      {subtree: true, childList: true, characterData: true, attributes: true,
       attributeFilter: ['src']});
    document.addEventListener('load', scan, true);  // an image decoded (load does not bubble)
    scan();
  };
  if (document.documentElement) start();
  else document.addEventListener('readystatechange', start, {once: true});
})();
"""

# Selects `method` in the picker's dropdown the way a user does (input + change events);
# returns the time of the change and the number of events recorded so far.
SELECT_JS = r"""
(method) => {
  const select = document.querySelector('.wb-method-picker .wb-method-dropdown select');
  if (!select) throw new Error('no method dropdown');
  if (![...select.options].some(o => o.value === method || o.textContent === method))
    throw new Error('no option ' + method);
  const t = performance.now();
  const option = [...select.options].find(o => o.value === method || o.textContent === method);
  select.value = option.value;
  select.dispatchEvent(new Event('input', {bubbles: true}));
  select.dispatchEvent(new Event('change', {bubbles: true}));
  return {t, n: window.__wb.events.length};
}
"""

# Progress of one change: the first event after it where column 1's title turns into `method`
# (the heat map redrawn: the tile's image is sent before its title), the first whose status is
# a "ready: ..." line other than the one before (the kernel's update done), and the first where
# both hold (the change is complete). Also: when column 1's image URL changed (an identical
# picture, e.g. two methods that agree, leaves it as it was, so this is reported, not needed).
DONE_JS = r"""
({n, method, old}) => {
  const ev = window.__wb.events;
  let titled = null, status = null, image = null;
  let previous = n > 0 ? ev[n - 1].title : null;  // column 1's title when the change was made
  const oldSrc = n > 0 ? ev[n - 1].src : null;
  for (let i = n; i < ev.length; i++) {
    const e = ev[i];
    // a redraw: the title turns into the method (a tile that keeps showing the method it
    // showed before the change has not redrawn)
    if (titled === null && e.title === method && previous !== method) titled = e;
    previous = e.title;
    if (image === null && e.src !== oldSrc) image = e;
    if (status === null && e.status && e.status.startsWith('ready') && e.status !== old)
      status = e;
    if (titled !== null && status !== null)
      return {done: true, t: Math.max(titled.t, status.t), titled: titled.t, statusT: status.t,
              status: status.status, imageT: image && image.t};
  }
  return {done: false, titled: titled && titled.t, statusT: status && status.t,
          status: status && status.status, imageT: image && image.t, now: performance.now()};
}
"""

# Diagnostic, off by default (--stretch-anywidget-timeout): anywidget 0.11 gives a model 2 s to
# load its ES module (plotly's FigureWidget bundle is ~5 MB, imported once per figure) before
# it rejects with "[anywidget] Failed to initialize model."; this stretches that timeout to
# 60 s in the page. It mattered while the heat maps were a FigureWidget; the default Explorer
# page now holds no anywidget model (the layer inspector creates its figure when opened).
STRETCH_JS = r"""
(() => {
  const timeout = AbortSignal.timeout.bind(AbortSignal);
  AbortSignal.timeout = (ms) => timeout(ms === 2000 ? 60000 : ms);
})();
"""

PAGE_STATE_JS = r"""
() => ({readyState: document.readyState,
        status: (document.querySelector('.wb-status') || {}).textContent || null,
        tiles: document.querySelectorAll('.wb-heatmaps .wb-heatmap-tile').length,
        widgets: document.querySelectorAll('.jupyter-widgets').length,
        events: window.__wb ? window.__wb.events.length : null,
        text: (document.body ? document.body.innerText : '').slice(-200)})
"""

ERRORS_JS = r"""
() => [...document.querySelectorAll('.wb-error')].map(e => e.textContent.trim()).filter(t => t)
"""


# ----------------------------------------------------------------------------------------------
# Processes: RSS and CPU of the server's process tree (psutil, else /proc)


def _proc_children(pid: int) -> list[int]:
    """All descendants of ``pid`` (the /proc fallback)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _proc_rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _proc_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _proc_cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return [p.decode(errors="replace") for p in handle.read().split(b"\0") if p]
    except OSError:
        return []


def descendants(pid: int) -> list[int]:
    if psutil is not None:
        try:
            return [p.pid for p in psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            return []
    return _proc_children(pid)


def rss(pid: int) -> int:
    if psutil is not None:
        try:
            return psutil.Process(pid).memory_info().rss
        except psutil.Error:
            return 0
    return _proc_rss(pid)


def pss(pid: int) -> int | None:
    """Proportional set size (shared pages split between their users); None if unreadable."""
    if psutil is None:
        return None
    try:
        return psutil.Process(pid).memory_full_info().pss
    except (psutil.Error, AttributeError):
        return None


def cpu_seconds(pid: int) -> float:
    if psutil is not None:
        try:
            times = psutil.Process(pid).cpu_times()
            return times.user + times.system
        except psutil.Error:
            return 0.0
    return _proc_cpu(pid)


def cmdline(pid: int) -> list[str]:
    if psutil is not None:
        try:
            return psutil.Process(pid).cmdline()
        except psutil.Error:
            return []
    return _proc_cmdline(pid)


def system_busy_seconds() -> tuple[float, float]:
    """(busy CPU seconds, all CPU seconds) of the whole machine so far, from /proc/stat."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values) - idle) / tick, sum(values) / tick


def wait_preheated(server: subprocess.Popen, kernels: int, timeout: float,
                   quiet_s: float = 3.0) -> float | None:
    """Seconds until a preheating Voilà ``server`` has ``kernels`` kernels that have run their
    notebook: Voilà starts a pool kernel and runs the notebook in it at once, so a kernel is
    done when its CPU time and its children's stand still (the kernels' total grows under
    0.05 s per kernel for ``quiet_s``); None if not within ``timeout``. Voilà's "Kernel pool
    ... is filled" log line comes when the kernels have started, before they have run
    anything."""
    start = time.monotonic()
    last: tuple[float, float] | None = None  # (when, kernels' CPU seconds)
    while time.monotonic() - start < timeout:
        if server.poll() is not None:
            raise RuntimeError(f"voila exited with {server.returncode}")
        pids = [pid for pid in descendants(server.pid)
                if any("ipykernel" in a for a in cmdline(pid))]
        if len(pids) >= kernels:
            # with their children: a kernel waiting for the browser that draws its figures'
            # snapshots (workbench.snapshots) is still running its notebook
            used = sum(cpu_seconds(pid) + sum(cpu_seconds(child) for child in descendants(pid))
                       for pid in pids)
            now = time.monotonic()
            if last is None or used - last[1] > 0.05 * len(pids):
                last = (now, used)
            elif now - last[0] >= quiet_s:
                return last[0] - start
        time.sleep(0.5)
    return None


class Server:
    """A Voilà server on a free loopback port, with the process-tree measurements."""

    def __init__(self, log_path: Path, notebook: Path = NOTEBOOK, preheat: int = 0,
                 fill_delay: float | None = None) -> None:
        from workbench.serve import REFILL_DELAY_S, voila_command

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        # the pool's refill delay is `workbench serve`'s unless the diagnostic sets one
        command, token = voila_command(
            str(notebook), ip="127.0.0.1", port=self.port, cull_idle_timeout=0, preheat=preheat,
            refill_delay=REFILL_DELAY_S if fill_delay is None else fill_delay)
        assert token is None, "a loopback server needs no token"
        self.command = command
        self.preheat = preheat
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = log_path
        self._log = open(log_path, "wb")
        env = {**os.environ, "WORKBENCH_SMOKE": "1"}
        self.process = processes.start(command, cwd=notebook.parent, env=env, stdout=self._log,
                                       stderr=subprocess.STDOUT)

    def wait_up(self, timeout: float = 90.0) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"voila exited with {self.process.returncode}:\n"
                                   f"{self.log_tail()}")
            try:
                # a HEAD-less probe of a static path: GET / would start a kernel
                urllib.request.urlopen(self.url + "voila/static/", timeout=2).close()
                return time.monotonic() - start
            except urllib.error.HTTPError:
                return time.monotonic() - start  # answered (e.g. 404/403): it is up
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"voila did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def wait_pool(self, timeout: float) -> float | None:
        """Seconds until the preheated pool is ready (``wait_preheated``), None if not within
        ``timeout`` (pages then wait for a kernel still running the notebook)."""
        return wait_preheated(self.process, self.preheat, timeout)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            if not self._log.closed:
                self._log.flush()
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def kernels(self) -> dict[int, str]:
        """Kernel processes under the server: pid -> kernel id (from its connection file)."""
        found = {}
        for pid in descendants(self.process.pid):
            args = cmdline(pid)
            if any("ipykernel" in a for a in args):
                match = next((re.search(r"kernel-([0-9a-f-]+)\.json", a) for a in args
                              if re.search(r"kernel-([0-9a-f-]+)\.json", a)), None)
                found[pid] = match.group(1) if match else ""
        return found

    def memory(self, with_pss: bool = True) -> dict[str, Any]:
        """RSS (and PSS) of the server process and of its descendants (the kernels)."""
        server_pid = self.process.pid
        children = descendants(server_pid)
        result = {"server_rss": rss(server_pid), "children_rss": sum(rss(p) for p in children),
                  "children": len(children), "kernels": len(self.kernels())}
        result["tree_rss"] = result["server_rss"] + result["children_rss"]
        if with_pss:
            values = [pss(p) for p in [server_pid, *children]]
            result["tree_pss"] = None if any(v is None for v in values) else sum(values)
        return result

    def cpu(self) -> dict[str, float]:
        """Cumulative CPU seconds: server process, its descendants, and our other descendants
        (Playwright's driver and Chromium), plus the machine's busy and total seconds."""
        server_pid = self.process.pid
        server_tree = set(descendants(server_pid))
        mine = set(descendants(os.getpid())) - server_tree - {server_pid}
        busy, total = system_busy_seconds()
        return {"server": cpu_seconds(server_pid),
                "kernels": sum(cpu_seconds(p) for p in server_tree),
                "browser": sum(cpu_seconds(p) for p in mine),
                "bench": cpu_seconds(os.getpid()),
                "machine_busy": busy, "machine_total": total, "wall": time.monotonic()}

    def shutdown_kernel(self, kernel_id: str) -> bool:
        """Voilà's own endpoint (what the page's beforeunload beacon posts to)."""
        xsrf = os.urandom(16).hex()
        request = urllib.request.Request(
            f"{self.url}voila/api/shutdown/{kernel_id}",
            data=urllib.parse.urlencode({"_xsrf": xsrf}).encode(), method="POST",
            headers={"Cookie": f"_xsrf={xsrf}", "X-XSRFToken": xsrf,
                     "Content-Type": "application/x-www-form-urlencoded"})
        try:
            urllib.request.urlopen(request, timeout=10).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM (Voilà shuts its kernels down), then SIGKILL to whatever is left of the
        server's process tree."""
        processes.stop(self.process, grace=20)
        self._log.close()


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    delta = {k: round(after[k] - before[k], 2) for k in before}
    wall = max(delta.pop("wall"), 1e-9)
    total = delta.pop("machine_total")
    cores = total / wall if total else (os.cpu_count() or 1)
    delta["wall_s"] = round(wall, 2)
    delta["cores"] = round(cores, 2)
    delta["machine_busy_fraction"] = round(delta["machine_busy"] / max(total, 1e-9), 3)
    delta["other_processes"] = round(delta["machine_busy"] - delta["server"] - delta["kernels"]
                                     - delta["browser"] - delta["bench"], 2)
    return delta


class PeakSampler(threading.Thread):
    """Samples the server tree's RSS every ``interval`` s until stopped; keeps the maximum."""

    def __init__(self, server: Server, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.server, self.interval = server, interval
        self.peak = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.peak = max(self.peak, self.server.memory(with_pss=False)["tree_rss"])
            except Exception:  # noqa: BLE001 - a process vanished mid-read
                pass
            self._stop_event.wait(self.interval)

    def stop(self) -> int:
        self._stop_event.set()
        self.join(timeout=5)
        return self.peak


# ----------------------------------------------------------------------------------------------
# Sessions


@dataclass
class Session:
    index: int
    first_ready_s: float | None = None
    first_title_s: float | None = None
    paint_s: float | None = None  # what the page shows once quiet, all shown (PAINT_JS)
    painted: dict[str, Any] = field(default_factory=dict)
    updates: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    ws_received: int = 0
    ws_sent: int = 0
    ws_frames_received: int = 0
    ws_changes_received: int = 0  # bytes received during the change phase
    ws_changes_sent: int = 0
    xsrf_cookie: bool | None = None
    stale: int = 0  # updates the kernel finished whose heat map never changed in the page
    context: Any = None
    page: Any = None


def kernel_seconds(status: str | None) -> float | None:
    """The kernel's own update time from the status line ("ready: 4 methods in 0.12 s")."""
    match = re.search(r"in ([0-9.]+) s", status or "")
    return float(match.group(1)) if match else None


#: what a page shows, counted by PAINT_JS
SHOWN = ("plots", "images", "widgets")


def first_paint_s(events: list[dict[str, Any]], expect: dict[str, int] | None = None
                  ) -> tuple[float | None, dict[str, Any]]:
    """The first moment the page showed as much as its last state shows (every plotly figure
    laid out, at least as many figures, images and widget views, the document loaded), in s
    from navigation start; None if its last state is not loaded, still draws a figure, shows
    nothing, or shows Voilà's cell error notice.

    ``expect``: counts the page is known to reach (the same app's page at 1 session); until its
    last state shows that much, it is not painted. Under load a page can rest for seconds with
    its figures drawn before its widget views arrive; without the reference that rest would
    count as the first paint."""
    if not events:
        return None, {}
    last = events[-1]
    shown = last["plots"] + last["images"] + last["widgets"]
    if last["ready"] != "complete" or last["pending"] or not shown or last["failed"]:
        return None, last
    if expect and any(last[k] < expect.get(k, 0) for k in SHOWN):
        return None, last
    for event in events:
        if (event["ready"] == "complete" and not event["pending"]
                and all(event[k] >= last[k] for k in SHOWN)):
            return event["t"] / 1000, last
    return None, last


async def wait_painted(page, session: Session, timeout_s: float,
                       expect: dict[str, int] | None = None) -> None:
    """Wait until what the page shows has not changed for PAINT_QUIET_S and it is painted (see
    first_paint_s, with ``expect``), or ``timeout_s``; record the first paint."""
    deadline = time.monotonic() + timeout_s
    while True:
        events = await page.evaluate("() => window.__paint ? window.__paint.events : []")
        now = await page.evaluate("() => performance.now()")
        session.paint_s, session.painted = first_paint_s(events, expect)
        quiet = events and now - events[-1]["t"] > PAINT_QUIET_S * 1000
        if (quiet and session.paint_s is not None) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    if session.paint_s is None:
        session.errors.append(f"first paint: not painted within {timeout_s:.0f} s; page shows "
                              f"{json.dumps(session.painted)}")


async def open_session(browser, url: str, session: Session, timeout_s: float,
                       stretch: bool = False, explorer: bool = True,
                       expect: dict[str, int] | None = None) -> None:
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    session.context = context
    await context.add_init_script(OBSERVER_JS)
    await context.add_init_script(PAINT_JS)
    if stretch:
        await context.add_init_script(STRETCH_JS)
    page = await context.new_page()
    session.page = page

    def on_websocket(ws) -> None:
        def received(payload) -> None:
            session.ws_received += len(payload)
            session.ws_frames_received += 1

        def sent(payload) -> None:
            session.ws_sent += len(payload)

        ws.on("framereceived", received)
        ws.on("framesent", sent)

    page.on("websocket", on_websocket)
    page.on("pageerror", lambda error: session.page_errors.append(str(error)[:300]))

    def on_console(message) -> None:
        # "Failed to load resource": the page asks for a CDN the sandbox cannot reach
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            session.page_errors.append(f"console: {message.text[:300]}")

    page.on("console", on_console)
    start = time.monotonic()
    try:
        await page.goto(url, wait_until="commit", timeout=timeout_s * 1000)
        if not explorer:
            await wait_painted(page, session, timeout_s, expect)
            session.errors.extend(await _page_errors(page))
            return
        await page.wait_for_function(
            "() => window.__wb && window.__wb.firstReady !== null",
            timeout=max(1.0, timeout_s - (time.monotonic() - start)) * 1000, polling=100)
        session.first_ready_s = await page.evaluate("() => window.__wb.firstReady") / 1000
        # the status can turn "ready" before the browser has decoded every tile's image;
        # changes start once the heat maps are on screen
        await page.wait_for_function(
            "() => window.__wb.firstTitle !== null",
            timeout=max(1.0, timeout_s - (time.monotonic() - start)) * 1000,
            polling=100)
        session.first_title_s = await page.evaluate("() => window.__wb.firstTitle") / 1000
        await wait_painted(page, session, max(1.0, timeout_s - (time.monotonic() - start)),
                           expect)
    except Exception as error:  # noqa: BLE001 - reported, the other sessions go on
        session.errors.append(f"first heat map: {type(error).__name__}: {str(error)[:200]}; "
                              f"page: {await _page_state(page)}")
    session.errors.extend(await _page_errors(page))


async def _page_state(page) -> str:
    """What a page shows when it did not get ready: status line, tiles, widgets, loading."""
    try:
        return json.dumps(await page.evaluate(PAGE_STATE_JS))
    except Exception as error:  # noqa: BLE001
        return f"unreadable ({type(error).__name__})"


async def _page_errors(page) -> list[str]:
    try:
        return [f".wb-error: {text[:300]}" for text in await page.evaluate(ERRORS_JS)]
    except Exception as error:  # noqa: BLE001
        return [f"reading .wb-error: {type(error).__name__}"]


async def change_methods(session: Session, methods: list[str], pause_s: float,
                         timeout_s: float, stale_s: float, rng: random.Random,
                         stop_at: float = float("inf")) -> None:
    """Select each method in turn; time each change until its heat map is shown."""
    page = session.page
    if session.first_ready_s is None:
        return
    await asyncio.sleep(rng.uniform(0, pause_s))  # desynchronise the sessions' first change
    received0, sent0 = session.ws_received, session.ws_sent
    for method in methods:
        if time.monotonic() > stop_at:
            session.errors.append(f"change to {method}: not made (run deadline)")
            continue
        old = await page.evaluate("() => window.__wb.status")
        record: dict[str, Any] = {"method": method}
        try:
            change = await page.evaluate(SELECT_JS, method)
            deadline = time.monotonic() + timeout_s
            result: dict[str, Any] = {}
            while time.monotonic() < deadline:
                result = await page.evaluate(DONE_JS, {"n": change["n"], "method": method,
                                                       "old": old})
                if result["done"]:
                    break
                now = result["now"]
                if result["titled"] is not None and now - result["titled"] > 2000:
                    # the heat map shows the method but the status line did not change: an
                    # identical "ready: ... in 0.05 s" line leaves the DOM as it was
                    result.update(done=True, t=result["titled"], status=old,
                                  status_unchanged=True)
                    break
                if result["statusT"] is not None and now - result["statusT"] > stale_s * 1000:
                    break  # the kernel has answered, the heat map never followed
                await asyncio.sleep(0.05)
            if result.get("statusT") is not None:
                record["status_s"] = (result["statusT"] - change["t"]) / 1000
                record["kernel_s"] = kernel_seconds(result["status"])
            if not result.get("done"):
                if result.get("statusT") is not None:
                    session.stale += 1
                    raise RuntimeError(
                        f"heat map not redrawn: the status said \"{result['status']}\" after "
                        f"{record['status_s']:.2f} s but column 1 still showed the previous "
                        f"method {stale_s:g} s later")
                raise TimeoutError(f"no update for {method} within {timeout_s:g} s")
            record.update(latency_s=(result["t"] - change["t"]) / 1000,
                          title_s=(result["titled"] - change["t"]) / 1000,
                          image_changed=result.get("imageT") is not None,
                          status_unchanged=bool(result.get("status_unchanged")))
        except Exception as error:  # noqa: BLE001 - reported, the next change goes on
            record["error"] = f"{type(error).__name__}: {str(error)[:240]}"
            session.errors.append(f"change to {method}: {record['error']}")
        errors = await _page_errors(page)
        if errors:
            record["wb_error"] = errors
            session.errors.extend(errors)
        session.updates.append(record)
        await asyncio.sleep(pause_s * rng.uniform(0.5, 1.5))
    session.ws_changes_received = session.ws_received - received0
    session.ws_changes_sent = session.ws_sent - sent0


async def close_sessions(sessions: list[Session]) -> None:
    """Unload each page (Voilà's beforeunload beacon shuts its kernel down), then close."""
    async def close(session: Session) -> None:
        if session.context is not None:
            try:  # the beacon posts the page's _xsrf cookie; without one Voilà answers 403
                session.xsrf_cookie = any(c["name"] == "_xsrf"
                                          for c in await session.context.cookies())
            except Exception:  # noqa: BLE001
                pass
        if session.page is not None:
            try:
                await session.page.goto("about:blank", timeout=15_000)
            except Exception:  # noqa: BLE001
                pass
        if session.context is not None:
            try:
                await session.context.close()
            except Exception:  # noqa: BLE001
                pass
        session.page = session.context = None

    await asyncio.gather(*(close(s) for s in sessions))


def wait_kernels_gone(server: Server, timeout_s: float,
                      among: set[str] | None = None) -> dict[str, Any]:
    """Wait for the server's kernels (those in ``among`` if given: the pages' preheated ones,
    not the pool's refills) to end; shut down leftovers through Voilà's endpoint."""
    def alive() -> dict[int, str]:
        return {pid: k for pid, k in server.kernels().items() if among is None or k in among}

    start = time.monotonic()
    while time.monotonic() - start < timeout_s and alive():
        time.sleep(0.25)
    left = alive()
    result = {"wait_s": round(time.monotonic() - start, 2), "left_after_unload": len(left)}
    if left:
        result["shut_down_by_api"] = sum(server.shutdown_kernel(k) for k in left.values() if k)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and alive():
            time.sleep(0.25)
        result["left_at_end"] = len(alive())
    return result


# ----------------------------------------------------------------------------------------------
# Rounds


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolation percentile (numpy's default); None for no values."""
    values = sorted(values)
    if not values:
        return None
    position = (len(values) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


def _stats(values: list[float]) -> dict[str, Any]:
    return {"n": len(values),
            "median": None if not values else round(statistics.median(values), 3),
            "p95": None if not values else round(percentile(values, 95), 3),
            "max": None if not values else round(max(values), 3)}


async def run_round(playwright, server: Server, n: int, methods: list[str], args,
                    rng: random.Random, label: str, explorer: bool = True,
                    expect: dict[str, int] | None = None) -> dict[str, Any]:
    print(f"[{label}] {n} session(s) ...", flush=True)
    idle = server.memory()
    browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                               args=BROWSER_ARGS)
    sessions = [Session(i) for i in range(n)]
    # a preheated server's running kernels are its pool: the ones these pages will take
    pool = set(server.kernels().values()) if server.preheat else None
    sampler = PeakSampler(server)
    sampler.start()
    round_start = time.monotonic()
    result: dict[str, Any] = {"sessions": n, "label": label}
    try:
        cpu0 = server.cpu()
        open_timeout = min(args.open_timeout,
                           max(30.0, args.deadline_at - time.monotonic() - 70))
        result["open_timeout_s"] = round(open_timeout, 1)
        await asyncio.gather(*(open_session(browser, server.url, s, open_timeout,
                                            args.stretch_anywidget_timeout, explorer, expect)
                               for s in sessions))
        cpu1 = server.cpu()
        open_memory = server.memory()
        result["open_s"] = round(time.monotonic() - round_start, 2)
        await asyncio.sleep(args.settle)
        await asyncio.gather(*(change_methods(s, methods, args.pause, args.change_timeout,
                                              args.stale_after, random.Random(rng.random()),
                                              args.deadline_at - 25) for s in sessions))
        cpu2 = server.cpu()
        after_memory = server.memory()
    finally:
        peak = sampler.stop()
        try:
            await close_sessions(sessions)
        finally:
            await browser.close()
    result["close"] = wait_kernels_gone(server, args.close_timeout, pool)
    result["close"]["pages_with_xsrf_cookie"] = sum(bool(s.xsrf_cookie) for s in sessions)

    first = [s.first_ready_s for s in sessions if s.first_ready_s is not None]
    updates = [u for s in sessions for u in s.updates if "latency_s" in u]
    result["first_heatmap_s"] = _stats(first)
    result["first_title_s"] = _stats([s.first_title_s for s in sessions
                                      if s.first_title_s is not None])
    result["paint_s"] = _stats([s.paint_s for s in sessions if s.paint_s is not None])
    result["not_painted"] = sum(s.paint_s is None for s in sessions)
    result["update_s"] = _stats([u["latency_s"] for u in updates])
    result["update_title_s"] = _stats([u["title_s"] for u in updates])
    answered = [u for s in sessions for u in s.updates if "status_s" in u]
    result["update_status_s"] = _stats([u["status_s"] for u in answered])
    result["update_kernel_s"] = _stats([u["kernel_s"] for u in answered
                                        if u.get("kernel_s") is not None])
    result["stale_updates"] = sum(s.stale for s in sessions)
    result["sessions_with_frozen_heatmap"] = sum(
        1 for s in sessions if s.updates and all("error" in u for u in s.updates)
        and s.stale)
    result["updates_attempted"] = sum(len(s.updates) for s in sessions)
    result["updates_by_method"] = {
        m: _stats([u["latency_s"] for u in updates if u["method"] == m]) for m in methods}
    result["status_unchanged"] = sum(u.get("status_unchanged", False) for u in updates)
    result["image_unchanged"] = sum(not u.get("image_changed", True) for u in updates)
    result["failed_updates"] = sum(1 for s in sessions for u in s.updates if "error" in u)
    result["sessions_without_heatmap"] = n - len(first)
    extra = lambda key: max(0, open_memory[key] - idle[key])  # noqa: E731
    result["memory"] = {
        "idle_tree_rss_mb": round(idle["tree_rss"] / 2**20, 1),
        "open_tree_rss_mb": round(open_memory["tree_rss"] / 2**20, 1),
        "after_changes_tree_rss_mb": round(after_memory["tree_rss"] / 2**20, 1),
        "peak_tree_rss_mb": round(max(peak, open_memory["tree_rss"]) / 2**20, 1),
        "kernels_open": open_memory["kernels"],
        "rss_per_session_mb": round(extra("tree_rss") / n / 2**20, 1),
        "server_process_rss_per_session_mb": round(extra("server_rss") / n / 2**20, 1),
        "kernel_rss_per_session_mb": round(extra("children_rss") / n / 2**20, 1),
        "pss_per_session_mb": (None if open_memory.get("tree_pss") is None
                               or idle.get("tree_pss") is None else
                               round(max(0, open_memory["tree_pss"] - idle["tree_pss"])
                                     / n / 2**20, 1)),
    }
    result["cpu_open"] = cpu_delta(cpu0, cpu1)
    result["cpu_changes"] = cpu_delta(cpu1, cpu2)
    n_updates = max(1, sum(len(s.updates) for s in sessions))
    result["websocket"] = {
        "received_per_update_kb": round(sum(s.ws_changes_received for s in sessions)
                                        / n_updates / 1024, 1),
        "sent_per_update_kb": round(sum(s.ws_changes_sent for s in sessions)
                                    / n_updates / 1024, 1),
        "received_per_session_total_kb": round(sum(s.ws_received for s in sessions)
                                               / n / 1024, 1),
        "frames_received_per_session": round(sum(s.ws_frames_received for s in sessions)
                                             / n, 1),
    }
    result["errors"] = [f"session {s.index}: {e}" for s in sessions for e in s.errors]
    result["page_errors"] = [f"session {s.index}: {e}" for s in sessions
                             for e in s.page_errors]
    result["raw"] = [{"session": s.index, "first_ready_s": s.first_ready_s,
                      "first_title_s": s.first_title_s, "paint_s": s.paint_s,
                      "painted": s.painted, "updates": s.updates}
                     for s in sessions]
    result["wall_s"] = round(time.monotonic() - round_start, 2)
    print(f"[{label}] first paint p95 {result['paint_s']['p95']} s, "
          f"first heat map median {result['first_heatmap_s']['median']} s, "
          f"update p95 {result['update_s']['p95']} s, "
          f"{result['memory']['rss_per_session_mb']} MB/session, "
          f"{len(result['errors'])} errors ({result['wall_s']} s)", flush=True)
    for error in result["errors"][:5]:
        print(f"[{label}]   {error}", flush=True)
    return result


class _NoColdRounds(Exception):
    """``--sessions`` is empty: no rounds on the cold (not preheated) Explorer server."""


async def run_all(args) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    methods = [METHOD_CYCLE[i % len(METHOD_CYCLE)] for i in range(args.changes)]
    rng = random.Random(args.seed)
    log_path = Path(tempfile.mkstemp(prefix="voila-load-", suffix=".log")[1])
    started = time.monotonic()
    args.deadline_at = started + args.deadline
    report: dict[str, Any] = {
        "settings": {"sessions": args.sessions, "changes": args.changes, "methods": methods,
                     "pause_s": args.pause, "open_timeout_s": args.open_timeout,
                     "stale_after_s": args.stale_after, "settle_s": args.settle,
                     "deadline_s": args.deadline,
                     "stretch_anywidget_timeout": args.stretch_anywidget_timeout,
                     "change_timeout_s": args.change_timeout, "seed": args.seed,
                     "notebook": str(NOTEBOOK.relative_to(ROOT)), "env": "WORKBENCH_SMOKE=1",
                     "cull_idle_timeout": 0},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(),
                    "loadavg_start": [round(v, 2) for v in os.getloadavg()]},
        "rounds": [], "skipped": [], "apps": [], "apps_skipped": [],
    }
    report["settings"].update(apps=list(args.apps), app_sessions=args.app_sessions,
                              preheat="off" if args.no_preheat else "pool = sessions",
                              pool_timeout_s=args.pool_timeout, fill_delay_s=args.fill_delay)
    server = Server(log_path) if args.sessions else None
    try:
        if server is None:
            raise _NoColdRounds
        report["server_start_s"] = round(server.wait_up(), 2)
        report["memory_idle_at_start_mb"] = round(server.memory()["tree_rss"] / 2**20, 1)
        async with async_playwright() as playwright:
            if not args.no_warmup:
                warm = await run_round(playwright, server, 1, methods[:1], argparse.Namespace(
                    **{**vars(args), "open_timeout": max(args.open_timeout, 180)}), rng,
                    "warm-up")
                report["warmup"] = {k: warm[k] for k in ("first_heatmap_s", "update_s",
                                                         "errors", "close", "wall_s")}
            for n in args.sessions:
                elapsed = time.monotonic() - started
                if args.deadline_at - time.monotonic() < 100:
                    report["skipped"].append({"sessions": n, "reason": f"under 100 s left of "
                                              f"the {args.deadline:.0f} s deadline ({elapsed:.0f}"
                                              " s spent)"})
                    continue
                try:
                    report["rounds"].append(await run_round(playwright, server, n, methods,
                                                            args, rng, f"N={n}"))
                except Exception as error:  # noqa: BLE001 - reported; the next round goes on
                    report["skipped"].append({"sessions": n, "reason": f"{type(error).__name__}"
                                              f": {str(error)[:300]}"})
                    wait_kernels_gone(server, args.close_timeout)
    except _NoColdRounds:
        pass
    finally:
        if server is not None:
            server.stop()
            report["server_log_tail"] = server.log_tail(1500)
        try:
            log_path.unlink()
        except OSError:
            pass
    if args.apps and args.app_sessions:
        async with async_playwright() as playwright:
            await run_apps(playwright, args, methods, rng, report)
    report["wall_s"] = round(time.monotonic() - started, 1)
    report["machine"]["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    report["target"] = _target(report)
    return report


async def run_apps(playwright, args, methods: list[str], rng: random.Random,
                   report: dict[str, Any]) -> None:
    """Every app in ``args.apps`` at each of ``args.app_sessions`` concurrent sessions, each
    round on a fresh server whose preheated pool holds as many kernels as there are sessions
    (``--no-preheat``: none), opened once the pool is ready (Server.wait_pool). The Explorer's pages
    also make the method changes; the other pages are timed to their first paint. A page at N > 1
    sessions is painted once it shows at least what the app's page showed at the smallest N
    (``first_paint_s``'s ``expect``)."""
    reference: dict[str, dict[str, int]] = {}  # per app: what its page shows, fewest sessions
    for n in args.app_sessions:  # every app at 1 session first, then at the next count
        for app in args.apps:
            label = f"{app} N={n}"
            if args.deadline_at - time.monotonic() < 60:
                report["apps_skipped"].append({"app": app, "sessions": n,
                                               "reason": "run deadline"})
                continue
            explorer = app == NOTEBOOK.stem
            preheat = 0 if args.no_preheat else n
            log_path = Path(tempfile.mkstemp(prefix="voila-app-", suffix=".log")[1])
            server = Server(log_path, ROOT / "notebooks" / f"{app}.ipynb", preheat,
                            args.fill_delay)
            try:
                up = server.wait_up()
                fill = server.wait_pool(args.pool_timeout) if preheat else None
                await asyncio.sleep(args.settle)
                loadavg = [round(v, 2) for v in os.getloadavg()]
                result = await run_round(playwright, server, n, methods if explorer else [],
                                         args, rng, label, explorer, reference.get(app))
                painted = [r["painted"] for r in result["raw"] if r.get("paint_s") is not None]
                if app not in reference and painted:
                    reference[app] = {k: min(p[k] for p in painted) for k in SHOWN}
                result.update(app=app, preheat=preheat, server_start_s=round(up, 2),
                              pool_fill_s=None if fill is None else round(fill, 1),
                              pool_filled=bool(fill is not None or not preheat),
                              loadavg_at_start=loadavg)
                result["verdicts"] = _app_verdicts(result, explorer)
                report["apps"].append(result)
            except Exception as error:  # noqa: BLE001 - reported; the next round goes on
                report["apps_skipped"].append({"app": app, "sessions": n, "reason":
                                               f"{type(error).__name__}: {str(error)[:300]}"})
            finally:
                server.stop()
                try:
                    log_path.unlink()
                except OSError:
                    pass


def _app_verdicts(r: dict[str, Any], explorer: bool) -> dict[str, Any]:
    """First paint p95 against PAINT_TARGET_S and (the Explorer) update p95 against
    TARGET_P95_S; a page never painted or a failed update counts as infinitely late."""
    n = r["sessions"]
    paints = [s["paint_s"] for s in r["raw"] if s["paint_s"] is not None]
    paint = _p95_counting_failures(paints, r["not_painted"])
    limit = PAINT_TARGET_S.get(n)
    verdicts = {"paint_p95_s": paint, "paint_target_s": limit,
                "paint": "-" if limit is None or paint is None else
                         "PASS" if paint <= limit else "FAIL"}
    if explorer:
        latencies = [u["latency_s"] for s in r["raw"] for u in s["updates"] if "latency_s" in u]
        update = _p95_counting_failures(latencies, r["failed_updates"])
        verdicts.update(update_p95_s=update, update=(
            "-" if update is None else "PASS" if update < TARGET_P95_S else "FAIL"))
    for key in ("paint_p95_s", "update_p95_s"):
        if verdicts.get(key) == float("inf"):
            verdicts[key] = "never"
        elif isinstance(verdicts.get(key), float):
            verdicts[key] = round(verdicts[key], 3)
    return verdicts


def _p95_counting_failures(latencies: list[float], failed: int) -> float | None:
    """p95 with each failed update counted as never finishing (infinitely late)."""
    values = sorted(latencies) + [float("inf")] * failed
    if not values:
        return None
    position = (len(values) - 1) * 0.95
    low, high = int(position), min(int(position) + 1, len(values) - 1)
    if values[high] == float("inf"):
        return float("inf") if position > low or values[low] == float("inf") else values[low]
    return values[low] + (values[high] - values[low]) * (position - low)


def _target(report: dict[str, Any]) -> dict[str, Any]:
    rounds = [r for r in report["rounds"] if r["sessions"] == TARGET_SESSIONS]
    target = {"rule": f"p95 update latency < {TARGET_P95_S:g} s at {TARGET_SESSIONS} sessions "
                      "(default digits model), a failed update counting as infinitely late"}
    if not rounds:
        target.update(verdict="NOT RUN", p95_s=None)
        return target
    r = rounds[0]
    latencies = [u["latency_s"] for s in r["raw"] for u in s["updates"] if "latency_s" in u]
    p95 = _p95_counting_failures(latencies, r["failed_updates"] + r["sessions_without_heatmap"]
                                 * len(report["settings"]["methods"]))
    ok = p95 is not None and p95 < TARGET_P95_S
    target.update(verdict="PASS" if ok else "FAIL",
                  p95_s=None if p95 is None or p95 == float("inf") else round(p95, 3),
                  p95_completed_updates_s=r["update_s"]["p95"],
                  p95_kernel_answer_s=r["update_status_s"]["p95"],
                  failed_updates=r["failed_updates"], updates=r["updates_attempted"])
    if p95 == float("inf"):
        target["p95_s"] = "never (over 5% of the updates failed)"
    return target


# ----------------------------------------------------------------------------------------------
# Report


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}{unit}"
    return f"{value}{unit}"


def apps_markdown(report: dict[str, Any]) -> list[str]:
    """The every-app section: first paint and update p95 per app and session count."""
    s = report["settings"]
    if not report.get("apps") and not report.get("apps_skipped"):
        return []
    sessions = ",".join(map(str, s["app_sessions"]))
    lines = [
        "# Every app: first paint and updates",
        "",
        f"`python -m benchmarks.load --apps {','.join(s['apps'])} --app-sessions {sessions}`"
        f"{' --no-preheat' if s['preheat'] == 'off' else ''}: per app and session count N, a "
        "fresh Voilà server (`workbench serve APP --preheat N`: Voilà's preheated pool holds "
        "N kernels that have run the notebook; `WORKBENCH_SMOKE=1`: the smoke parameters), "
        "opened by N concurrent headless Chromium pages once the pool is ready. "
        f"Preheat: {s['preheat']}. Everything (server, kernels, the pool's refills, Chromium) "
        f"runs on the same {report['machine']['cpus']}-CPU machine. Machine load average "
        f"(1, 5, 15 min) {report['machine']['loadavg_start']} at start, "
        f"{report['machine'].get('loadavg_end')} at end of the whole run ({report['wall_s']:.0f}"
        " s): other jobs share the cores, and every number below is slower by about the share "
        "of them these jobs took.",
        "",
        "**Targets**: first paint p95 <= "
        + ", ".join(f"{v:g} s at {k} session{'s' if k > 1 else ''}"
                    for k, v in PAINT_TARGET_S.items())
        + f"; update p95 < {TARGET_P95_S:g} s (the Explorer's method changes). A page never "
        "painted or a failed update counts as infinitely late.",
        "",
        "| app | N | pool filled in | load avg (1 min) | first paint: median / p95 | target | "
        "paint | update: median / p95 | update | shown (plots / images / widgets) | "
        "errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["apps"]:
        v = r["verdicts"]
        shown = r["raw"][0]["painted"] if r["raw"] else {}
        pool = ("no pool" if not r["preheat"] else
                f"{r['pool_fill_s']:.0f} s" if r["pool_fill_s"] is not None else
                "not within the timeout")
        update = ("-" if "update" not in v else
                  f"{_fmt(r['update_s']['median'], ' s')} / {_fmt(v['update_p95_s'], ' s')}")
        lines.append(
            f"| {r['app']} | {r['sessions']} | {pool} | {r['loadavg_at_start'][0]:.1f} | "
            f"{_fmt(r['paint_s']['median'], ' s')} / {_fmt(v['paint_p95_s'], ' s')} | "
            f"{_fmt(v['paint_target_s'], ' s')} | **{v['paint']}** | {update} | "
            f"{('**' + v['update'] + '**') if 'update' in v else '-'} | "
            f"{shown.get('plots', '-')} / {shown.get('images', '-')} / "
            f"{shown.get('widgets', '-')} | {len(r['errors'])} |")
    lines += [f"- skipped {k['app']} N={k['sessions']}: {k['reason']}"
              for k in report.get("apps_skipped", [])]
    lines += [
        "",
        "- *first paint*: navigation start to the first moment the page showed everything it "
        f"shows once nothing has changed for {PAINT_QUIET_S:g} s: every plotly figure laid out "
        "(`.main-svg`), as many decoded images in cell outputs and rendered widget views, the "
        "document loaded, and no Voilà cell error notice. A preheated kernel attaches a PNG "
        "snapshot to each notebook figure (`workbench.snapshots`): the page shows it as an "
        "image (counted with the images) and builds the interactive figure when the pointer "
        "enters it; a figure without one (a live widget's) is laid out at once. *update*: the "
        "Explorer's method changes, timed as in the Explorer section below. *pool filled in*: "
        "server start to the pool ready (N kernels that have run the notebook and idle, "
        "`wait_preheated`); the pages are opened after it.",
        "- The paper apps' pages take no update here: their controls are timed once they have "
        "some (`-`).",
    ]
    errors = [(r["app"], r["sessions"], e) for r in report["apps"] for e in r["errors"]]
    if errors:
        lines += ["", f"Errors ({len(errors)}):", ""]
        lines += [f"- {a} N={n}: {e}" for a, n, e in errors[:20]]
    return lines + ["", ""]


def markdown(report: dict[str, Any]) -> str:
    return "\n".join(apps_markdown(report)) + (explorer_markdown(report) if report["rounds"]
                                               else "")


def explorer_markdown(report: dict[str, Any]) -> str:
    s, t = report["settings"], report["target"]
    verdict = f"**{t['verdict']}**"
    if t.get("p95_s") is not None:
        p95 = t["p95_s"]
        verdict += f": p95 {p95 if isinstance(p95, str) else f'{p95:.2f} s'}"
        verdict += (f" ({t['failed_updates']} of {t['updates']} updates failed; p95 of the "
                    f"completed updates {_fmt(t['p95_completed_updates_s'], ' s')}; p95 of the "
                    f"kernel's answer (status line) {_fmt(t['p95_kernel_answer_s'], ' s')})")
    lines = [
        "# Explorer under load (Voilà, concurrent browser sessions)",
        "",
        f"`python -m benchmarks.load --sessions {','.join(map(str, s['sessions']))} "
        f"--changes {s['changes']}`: one Voilà server (`{s['env']}`: default digits model "
        f"only), one headless Chromium with one browser context per session, all on the same "
        f"{report['machine']['cpus']}-CPU machine. Per session, after its heat map is shown: "
        f"{len(s['methods'])} method changes in the picker ({', '.join(s['methods'])}), "
        f"{s['pause_s']:g} s x U(0.5, 1.5) apart. Load average "
        f"{report['machine']['loadavg_start']} at start, {report['machine']['loadavg_end']} at "
        f"end (other jobs share the machine: see *other processes* below). Whole run "
        f"{report['wall_s']:.0f} s.",
        "",
        *(["**Diagnostic run**: anywidget's 2 s model-initialisation timeout stretched to "
           "60 s in the pages (`--stretch-anywidget-timeout`); not the app as served.", ""]
          if s.get("stretch_anywidget_timeout") else []),
        f"**Target** ({t['rule']}): {verdict}",
        "",
        "| N | first ready: median / p95 | heat map drawn: median | update: median / p95 "
        "(completed) | failed updates | kernel answer: median / p95 | kernel time (median) | "
        "RSS / session | PSS / session | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rounds"]:
        m = r["memory"]
        lines.append(
            f"| {r['sessions']} | {_fmt(r['first_heatmap_s']['median'], ' s')} / "
            f"{_fmt(r['first_heatmap_s']['p95'], ' s')} | "
            f"{_fmt(r['first_title_s']['median'], ' s')} | "
            f"{_fmt(r['update_s']['median'], ' s')} / {_fmt(r['update_s']['p95'], ' s')} | "
            f"{r['failed_updates']} of {r['updates_attempted']} | "
            f"{_fmt(r['update_status_s']['median'], ' s')} / "
            f"{_fmt(r['update_status_s']['p95'], ' s')} | "
            f"{_fmt(r['update_kernel_s']['median'], ' s')} | "
            f"{_fmt(m['rss_per_session_mb'], ' MB')} | {_fmt(m['pss_per_session_mb'], ' MB')} | "
            f"{len(r['errors'])} |")
    for skipped in report["skipped"]:
        lines.append(f"| {skipped['sessions']} | skipped: {skipped['reason']} |||||||||")
    lines += [
        "",
        "- *first ready*: navigation start to the first \"ready: ...\" status line; *heat map "
        "drawn*: to every heat-map tile's PNG decoded in the page, with column 1 titled.",
        "- *update*: selecting a method in the picker to the status line changing to a new "
        "\"ready: ...\" while column 1 of the heat maps is titled with the new method (its tile's "
        "image is sent before its title). *Failed*: "
        "no such state within the timeout, or the status changed and the heat map did not "
        f"follow within {s.get('stale_after_s', 5):g} s. *Kernel answer*: selecting to the new "
        "status line alone (the round trip browser - Voilà - kernel - Voilà - browser, also for "
        "failed updates). *Kernel time*: the kernel's own update time, from the status line.",
        "- *RSS / session*: (RSS of the Voilà process and its kernel processes with the N "
        "sessions open - the idle server's RSS) / N. *PSS* counts pages shared between the "
        "kernels (torch's libraries) once.",
        "",
        "## Where the time goes",
        "",
        "CPU seconds used in each phase (*open*: all N pages to their first heat map; *changes*: "
        "all method changes), and the websocket traffic each update causes.",
        "",
        "| N | phase | wall | Voilà server | kernels | browser | other processes | "
        "machine busy | received / update | sent / update |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rounds"]:
        for phase in ("open", "changes"):
            c = r[f"cpu_{phase}"]
            ws = r["websocket"]
            traffic = (f"{ws['received_per_update_kb']:.0f} kB | {ws['sent_per_update_kb']:.0f} kB"
                       if phase == "changes" else
                       f"{ws['received_per_session_total_kb'] / 1024:.1f} MB per page load | ")
            lines.append(
                f"| {r['sessions']} | {phase} | {c['wall_s']:.1f} s | {c['server']:.1f} s | "
                f"{c['kernels']:.1f} s | {c['browser']:.1f} s | {c['other_processes']:.1f} s | "
                f"{100 * c['machine_busy_fraction']:.0f}% of {c['cores']:g} cores | {traffic} |")
    unique = list(dict.fromkeys(s["methods"]))
    lines += ["", "Completed update latency by method (median / p95, s; failed ones excluded):",
              "", "| N | " + " | ".join(unique) + " |", "|---|" + "---|" * len(unique)]
    for r in report["rounds"]:
        cells = [f"{_fmt(r['updates_by_method'][m]['median'])} / "
                 f"{_fmt(r['updates_by_method'][m]['p95'])}" for m in unique]
        lines.append(f"| {r['sessions']} | " + " | ".join(cells) + " |")
    lines += ["", "Memory (MB):", "",
              "| N | idle tree RSS | open tree RSS | after changes | peak | Voilà process "
              "RSS / session | kernel RSS / session | kernels open | kernels left after the "
              "pages unloaded |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in report["rounds"]:
        m, c = r["memory"], r["close"]
        lines.append(f"| {r['sessions']} | {m['idle_tree_rss_mb']} | {m['open_tree_rss_mb']} | "
                     f"{m['after_changes_tree_rss_mb']} | {m['peak_tree_rss_mb']} | "
                     f"{m['server_process_rss_per_session_mb']} | "
                     f"{m['kernel_rss_per_session_mb']} | {m['kernels_open']} | "
                     f"{c['left_after_unload']} of {r['sessions']} (waited {c['wait_s']} s; "
                     f"pages with the _xsrf cookie: {c.get('pages_with_xsrf_cookie', '-')}; "
                     f"shut down through the API: {c.get('shut_down_by_api', 0)}) |")
    errors = [(r["sessions"], e) for r in report["rounds"] for e in r["errors"]]
    page_errors = [e for r in report["rounds"] for e in r["page_errors"]]
    wb_errors = [e for _, e in errors if ".wb-error" in e]
    lines += ["", f"## Errors ({len(errors)}; `.wb-error` texts: {len(wb_errors)})", ""]
    lines += [f"- N={n}: {e}" for n, e in errors[:30]]
    if len(errors) > 30:
        lines.append(f"- ... {len(errors) - 30} more in load.json")
    if not errors:
        lines.append("None: no `.wb-error` text, no failed update.")
    frozen = [f"N={r['sessions']}: {r['sessions_with_frozen_heatmap']} of {r['sessions']}"
              for r in report["rounds"]]
    init_failures = sum("Failed to initialize model" in e for e in page_errors)
    lines += ["", "Sessions whose heat map never redrew after a change (the kernel answered, the "
              f"heat maps kept their first state): {'; '.join(frozen) or '-'}. Page errors "
              f"\"[anywidget] Failed to initialize model.\": {init_failures}."]
    same_picture = sum(r.get("image_unchanged", 0) for r in report["rounds"])
    if same_picture:
        lines += ["", f"{same_picture} completed update(s) left column 1's image as it was (the "
                  "new method's map gave the same picture as the previous one)."]
    if page_errors:
        lines += ["", f"JavaScript page errors ({len(page_errors)}):", ""]
        lines += [f"- {e}" for e in page_errors[:10]]
    unchanged = sum(r["status_unchanged"] for r in report["rounds"])
    if unchanged:
        lines += ["", f"{unchanged} update(s) left the status text unchanged (same \"ready: ... "
                  "in x s\" line): timed to the heat map's new title instead."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", default=None,
                        help="comma-separated session counts (default 1,4,8; quick: 1,2)")
    parser.add_argument("--changes", type=int, default=None,
                        help="method changes per session (default 5; quick: 2)")
    parser.add_argument("--quick", action="store_true", help="smoke run: N = 1, 2; 2 changes")
    parser.add_argument("--pause", type=float, default=1.0,
                        help="mean pause between one session's changes, s (default 1)")
    parser.add_argument("--open-timeout", type=float, default=150.0,
                        help="per session, navigation to the first heat map, s")
    parser.add_argument("--change-timeout", type=float, default=10.0,
                        help="per change, s (default 10; the kernel answers in well under 1 s)")
    parser.add_argument("--stale-after", type=float, default=3.0,
                        help="a change whose status line is ready but whose heat map has not "
                             "changed this many seconds later counts as failed (default 3)")
    parser.add_argument("--settle", type=float, default=1.0,
                        help="pause after all sessions show their heat map, s (default 1)")
    parser.add_argument("--close-timeout", type=float, default=10.0,
                        help="wait for the kernels to end after the pages unload, then shut "
                             "the rest down through Voilà's endpoint, s (default 10)")
    parser.add_argument("--deadline", type=float, default=2400.0,
                        help="the run ends within about this many seconds: the open timeout "
                             "and the changes are cut to fit, an Explorer round with under "
                             "100 s left or an every-app round with under 60 s left is skipped "
                             "(default 2400)")
    parser.add_argument("--stretch-anywidget-timeout", action="store_true",
                        help="diagnostic: stretch anywidget's 2 s model-initialisation timeout "
                             "to 60 s in the pages (see STRETCH_JS)")
    parser.add_argument("--apps", default=None,
                        help="comma-separated notebook stems for the every-app rounds (default "
                             "all; quick: 00_explorer; empty: none)")
    parser.add_argument("--app-sessions", default=None,
                        help="comma-separated session counts of the every-app rounds "
                             "(default 1,8; quick: 1)")
    parser.add_argument("--no-preheat", action="store_true",
                        help="every-app rounds without Voilà's preheated kernels")
    parser.add_argument("--fill-delay", type=float, default=None,
                        help="diagnostic: Voilà's wait before it refills the preheated pool "
                             "after a page took a kernel, s (default: workbench serve's "
                             "--refill-delay)")
    parser.add_argument("--pool-timeout", type=float, default=300.0,
                        help="wait for the preheated pool to fill, s (default 300)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the warm-up session")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default benchmarks/results, quick: .../quick)")
    args = parser.parse_args(argv)
    default_sessions = "1,2" if args.quick else "1,4,8"
    args.sessions = [int(v) for v in (default_sessions if args.sessions is None
                                      else args.sessions).split(",") if v.strip()]
    if args.sessions and min(args.sessions) < 1:
        parser.error("--sessions must list positive integers, e.g. 1,4,8")
    args.app_sessions = sorted(int(v) for v in (("1" if args.quick else "1,8")
                                                if args.app_sessions is None
                                                else args.app_sessions).split(",") if v.strip())
    if args.app_sessions and min(args.app_sessions) < 1:
        parser.error("--app-sessions must list positive integers, e.g. 1,8")
    args.apps = [v.strip() for v in ((NOTEBOOK.stem if args.quick else ",".join(APPS))
                                     if args.apps is None else args.apps).split(",")
                 if v.strip()]
    unknown = sorted(set(args.apps) - set(APPS))
    if unknown:
        parser.error(f"--apps: no notebook {', '.join(unknown)} (known: {', '.join(APPS)})")
    args.changes = args.changes if args.changes is not None else (2 if args.quick else 5)
    if args.changes < 1:
        parser.error("--changes must be at least 1")
    if not Path(CHROMIUM).exists():
        parser.error(f"chromium not found at {CHROMIUM}")
    out = args.out or (HERE / "results" / "quick" if args.quick else HERE / "results")

    report = asyncio.run(run_all(args))
    out.mkdir(parents=True, exist_ok=True)
    (out / "load.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "load.md").write_text(markdown(report))
    print(markdown(report))
    print(f"wrote {out / 'load.json'} and {out / 'load.md'}")
    return 0


if __name__ == "__main__":
    # SIGTERM, SIGINT, SIGHUP: the server, its kernels and Chromium are stopped
    sys.exit(processes.run(main, "benchmarks.load"))
