"""Who may look at and who may change gates: bcrypt-hashed users with ``operator``/``viewer`` roles.

The embedded default ships two demo users (passwords in the README of the gate control app):
``operator`` / ``operator-demo`` may act, ``viewer`` / ``viewer-demo`` may only look. Point
``SPARK_GATE_USERS`` at a JSON file of the same shape for real users::

    {"users": {"alice": {"role": "operator", "bcrypt": "$2b$12$..."}}}

Create a hash with :func:`hash_password`. Passwords are never stored in clear. With Panel's
OAuth (``panel serve --oauth-provider ...``) list the OAuth user names with a role and no
``bcrypt`` field: they get their role, and cannot sign in with a password.

Example::

    >>> users = UserDirectory.default()
    >>> users.authenticate("operator", "operator-demo"), users.authenticate("operator", "wrong")
    (True, False)
    >>> users.is_operator("viewer"), users.role("nobody")
    (False, None)
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import bcrypt

ROLES = ("operator", "viewer")

DEMO_USERS: dict[str, dict[str, str]] = {
    "operator": {"role": "operator", "bcrypt": "$2b$10$sXUFXiCRdX0z4mFA2iUN6ed6XryZYmOQZXrUdY1AM/9xJXZpryEd."},
    "viewer": {"role": "viewer", "bcrypt": "$2b$10$jlXzdWxqvS79eROrvWOPnul0swjf8DqdQYHDh8rrKYlM7SFEr40/O"},
}


def hash_password(password: str, rounds: int = 12) -> str:
    """A bcrypt hash of ``password`` for a users file.

    Example::

        >>> h = hash_password("s3cret", rounds=4)
        >>> bcrypt.checkpw(b"s3cret", h.encode())
        True
    """
    if not password:
        raise ValueError("password must not be empty")
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=rounds)).decode()


@dataclass(frozen=True)
class UserDirectory:
    """Users, their roles and bcrypt hashes."""

    users: dict[str, dict[str, str]]

    def __post_init__(self) -> None:
        for name, rec in self.users.items():
            if rec.get("role") not in ROLES:
                raise ValueError(f"user {name!r}: role must be one of {ROLES}, got {rec.get('role')!r}")
            if "bcrypt" in rec and not str(rec["bcrypt"]).startswith("$2"):
                raise ValueError(f"user {name!r}: field 'bcrypt' must be a bcrypt hash, got {str(rec['bcrypt'])[:8]!r}...")

    @classmethod
    def default(cls) -> "UserDirectory":
        """``SPARK_GATE_USERS`` (a JSON file) if set, else the demo users."""
        path = os.environ.get("SPARK_GATE_USERS")
        return cls.load(path) if path else cls(DEMO_USERS)

    @classmethod
    def load(cls, path: str | Path) -> "UserDirectory":
        """Read a users JSON file (``{"users": {name: {"role", "bcrypt"}}}``)."""
        data = json.loads(Path(path).read_text())
        if not isinstance(data, dict) or not isinstance(data.get("users"), dict):
            raise ValueError(f"{path}: expected an object with a 'users' mapping")
        return cls(data["users"])

    def authenticate(self, username: str, password: str) -> bool:
        """True when ``password`` matches the user's hash (constant-time compare by bcrypt)."""
        rec = self.users.get(username or "")
        if rec is None or not password or "bcrypt" not in rec:
            return False
        return bcrypt.checkpw(password.encode(), rec["bcrypt"].encode())

    def role(self, username: str | None) -> str | None:
        """``"operator"``, ``"viewer"`` or None for an unknown/anonymous user."""
        rec = self.users.get(username or "")
        return None if rec is None else rec["role"]

    def is_operator(self, username: str | None) -> bool:
        """May ``username`` change gates?"""
        return self.role(username) == "operator"
