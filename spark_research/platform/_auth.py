"""``spark serve``'s Bokeh auth module: the gate control's bcrypt login, and app pages held back while
the platform still imports its heavy modules.

The web server starts first, so the sign-in page and the index answer within a second or two;
an app page asked for while the third-party stack is still being imported on the start-up
thread answers 503 (try again in a few seconds) instead of importing the same modules on
the server's thread at the same time (concurrent first imports of numba can deadlock).
"""
from __future__ import annotations

from tornado.web import HTTPError, RequestHandler

from spark_research.gates.webauth import COOKIE, LoginHandler, LogoutHandler, login_url, logout_url  # noqa: F401
from spark_research.gates.webauth import get_user as _get_user
from spark_research.platform import runtime

#: Paths served before the modules are in: the index and what the sign-in needs.
ALWAYS = ("/", "/index.html", login_url, logout_url)


def get_user(request_handler: RequestHandler) -> str | None:
    """The signed-in user; 503 for an app page while the platform is still importing."""
    user = _get_user(request_handler)
    platform = runtime.current()
    path = request_handler.request.path
    if user and platform is not None and path not in ALWAYS and not platform.apps_ready():
        raise HTTPError(503, reason="spark serve is starting: the apps open in a few seconds")
    return user
