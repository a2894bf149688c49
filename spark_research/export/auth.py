"""Export tokens: ``Authorization: Bearer <token>`` mapped to a user name.

Where the token table comes from, first match wins:

1. ``SPARK_EXPORT_TOKENS``: a JSON object ``{"<token>": "<user>"}``, or the path of a file holding one;
2. ``<var>/export_tokens.json``;
3. the embedded demo tokens :data:`DEMO_TOKENS` (for the local, loopback-only default).

Example::

    >>> user_for_token("Bearer demo-token-alice", DEMO_TOKENS)
    'alice'
"""
from __future__ import annotations

import hmac
import os
from pathlib import Path

import orjson

from spark_research.config import settings
from spark_research.export.errors import AuthError

#: Tokens of the embedded demo mode (two users, to show that users only see their own exports).
DEMO_TOKENS: dict[str, str] = {"demo-token-alice": "alice", "demo-token-bob": "bob"}


def _parse(text: str, origin: str) -> dict[str, str]:
    try:
        table = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{origin}: not JSON: {exc}") from exc
    if not isinstance(table, dict) or not all(isinstance(k, str) and isinstance(v, str) and k and v
                                              for k, v in table.items()):
        raise ValueError(f"{origin}: must be a JSON object of non-empty token -> user strings")
    return table


def load_tokens() -> dict[str, str]:
    """The token -> user table (see the module docstring for where it comes from)."""
    env = os.environ.get("SPARK_EXPORT_TOKENS", "").strip()
    if env:
        if env.startswith("{"):
            return _parse(env, "SPARK_EXPORT_TOKENS")
        return _parse(Path(env).expanduser().read_text(), env)
    path = settings().var_dir / "export_tokens.json"
    if path.is_file():
        return _parse(path.read_text(), str(path))
    return dict(DEMO_TOKENS)


def user_for_token(header: str | None, tokens: dict[str, str]) -> str:
    """The user of an ``Authorization`` header value (``Bearer <token>``); :class:`AuthError` if none.

    Tokens are compared in constant time.
    """
    if not header:
        raise AuthError("field 'Authorization' is missing: send 'Authorization: Bearer <token>'")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError(f"field 'Authorization' = {scheme!r}...: expected 'Bearer <token>'")
    token = token.strip().encode()
    user = None
    for known, name in tokens.items():
        if hmac.compare_digest(known.encode(), token):
            user = name
    if user is None:
        raise AuthError("field 'Authorization': unknown token")
    return user
