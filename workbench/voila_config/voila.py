"""Voilà configuration loaded by ``workbench serve`` (a traitlets config file, not a module).

Voilà's page shuts its kernel down on ``beforeunload`` with a beacon to
``/voila/api/shutdown/<kernel>`` that carries the ``_xsrf`` cookie's value; Voilà never issues
that cookie on the app page, so the beacon got 403 ("'_xsrf' argument missing") and every
closed tab kept its kernel until culled. The hook below issues it the way every Jupyter page
does: reading ``handler.xsrf_token`` sets the cookie on the page's response (the hook runs
before the first byte is sent). XSRF checks stay on for every request; a cross-site page cannot
read the cookie, so it still cannot forge a shutdown.

Defined here rather than imported from ``workbench``: the server process must not import torch.
"""


def issue_xsrf_cookie(handler, notebook, cwd) -> None:
    """Voilà's ``prelaunch_hook``: set the ``_xsrf`` cookie on the app page's response (and
    return None: the notebook is used as it is)."""
    _ = handler.xsrf_token  # reading it makes tornado set the cookie


c = get_config()  # noqa: F821 - provided by traitlets when it loads this file
c.VoilaConfiguration.prelaunch_hook = issue_xsrf_cookie
