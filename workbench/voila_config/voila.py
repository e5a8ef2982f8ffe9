"""Voilà configuration loaded by ``workbench serve`` (a traitlets config file, not a module).

Voilà's page shuts its kernel down on ``beforeunload`` with a beacon to
``/voila/api/shutdown/<kernel>`` that carries the ``_xsrf`` cookie's value; Voilà never issues
that cookie on the app page, so the beacon got 403 ("'_xsrf' argument missing") and every
closed tab kept its kernel until culled. The identity provider below issues it the way every
Jupyter page does: reading ``handler.xsrf_token`` sets the cookie on the response. Jupyter's
handlers ask the identity provider for the user before anything is sent, on every request,
so the app page (and the tree page) gets the cookie; XSRF checks stay on for every request, and
a cross-site page cannot read the cookie, so it still cannot forge a shutdown.

An identity provider rather than Voilà's ``prelaunch_hook``: Voilà refuses preheated kernels
(``workbench serve --preheat``) while a prelaunch hook is configured.

Defined here rather than imported from ``workbench``: the server process must not import torch.
"""
import inspect

from jupyter_server.auth.identity import PasswordIdentityProvider


class XsrfCookieIdentityProvider(PasswordIdentityProvider):
    """Voilà's default identity provider (``PasswordIdentityProvider``: the token, when one is
    set), which also sets the ``_xsrf`` cookie on the response to any page request."""

    async def get_user(self, handler):
        user = super().get_user(handler)
        if inspect.isawaitable(user):
            user = await user
        request = handler.request
        if request.method == "GET" and request.headers.get("Upgrade", "").lower() != "websocket":
            # tornado's token depends on the user: set it as Jupyter's ``prepare`` does next
            handler.current_user = user
            _ = handler.xsrf_token  # reading it makes tornado set the cookie
        return user


c = get_config()  # noqa: F821 - provided by traitlets when it loads this file
c.Voila.identity_provider_class = XsrfCookieIdentityProvider
