"""Login for the gate control app: a Bokeh/Panel ``--auth-module`` with bcrypt-hashed users.

Panel's built-in ``--basic-auth`` compares clear-text passwords from a JSON file; this module
keeps Panel's cookie contract (a signed ``user`` cookie, so ``pn.state.user`` works) but checks
passwords against bcrypt hashes (:class:`~spark_research.gates.auth.UserDirectory`) and serves a
self-contained login page (no CDN assets). Serve with::

    panel serve apps/gate_control.py --auth-module spark_research/gates/webauth.py \\
        --cookie-secret "$(python -c 'import secrets; print(secrets.token_hex(32))')"

For OAuth use Panel's ``--oauth-provider`` instead; the app only needs ``pn.state.user`` and
the users' roles. Failed logins are logged (``spark_research.gates.webauth``) without the password.
"""
from __future__ import annotations

import html
import logging
from urllib.parse import quote

from tornado.web import RequestHandler

from spark_research.gates.auth import UserDirectory

log = logging.getLogger("spark_research.gates.webauth")

login_url = "/login"
logout_url = "/logout"
COOKIE = "user"  # the name Panel's ``pn.state.user`` decodes

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Gate control: sign in</title>
<style>
body {{ font-family: sans-serif; background: #f4f5f7; display: flex; justify-content: center; margin-top: 12vh; }}
form {{ background: white; padding: 2em 2.5em; border-radius: 8px; box-shadow: 0 2px 8px #0002; min-width: 280px; }}
input {{ display: block; width: 100%; margin: .4em 0 1em; padding: .5em; box-sizing: border-box; }}
.error {{ color: #b00020; }}
</style></head>
<body><form method="post" action="{action}">
<h2>Gate control</h2>
<p class="error" id="login-error">{error}</p>
<label for="username">User</label><input id="username" name="username" autocomplete="username" required>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<input type="hidden" name="next" value="{next}">
<button id="login-submit" type="submit">Sign in</button>
</form></body></html>"""


def _safe_next(value: str | None) -> str:
    # only local absolute paths: no open redirect to another host
    if not value or not value.startswith("/") or value.startswith("//"):
        return "/"
    return value


def get_user(request_handler: RequestHandler) -> str | None:
    """The signed-in user from the signed ``user`` cookie, if the user still exists."""
    raw = request_handler.get_secure_cookie(COOKIE, max_age_days=1)
    if not raw:
        return None
    user = raw.decode("utf-8")
    return user if UserDirectory.default().role(user) is not None else None


class LoginHandler(RequestHandler):
    """GET: the sign-in form. POST: check the bcrypt hash, set the signed cookie, redirect."""

    def get(self) -> None:
        error = "Invalid user or password." if self.get_argument("error", "") else ""
        self.write(_PAGE.format(action=html.escape(login_url), error=error,
                                next=html.escape(_safe_next(self.get_argument("next", "/")))))

    def post(self) -> None:
        username = self.get_argument("username", "").strip()
        password = self.get_argument("password", "")
        nxt = _safe_next(self.get_argument("next", "/"))
        if UserDirectory.default().authenticate(username, password):
            self.set_secure_cookie(COOKIE, username, expires_days=1, httponly=True, samesite="Strict")
            log.info("login ok: %s from %s", username, self.request.remote_ip)
            self.redirect(nxt)
        else:
            log.warning("login refused: user %r from %s", username, self.request.remote_ip)
            self.redirect(f"{login_url}?error=1&next={quote(nxt)}")


class LogoutHandler(RequestHandler):
    """Clear the cookie and go back to the sign-in form."""

    def get(self) -> None:
        self.clear_cookie(COOKIE)
        self.redirect(login_url)
