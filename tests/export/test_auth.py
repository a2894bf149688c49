"""Where export tokens come from, and how a token becomes a user."""
from __future__ import annotations

import json

import pytest

from spark_research.export.auth import DEMO_TOKENS, load_tokens, user_for_token
from spark_research.export.errors import AuthError


def test_demo_tokens_when_nothing_is_configured(var_dir, monkeypatch):
    monkeypatch.delenv("SPARK_EXPORT_TOKENS", raising=False)
    assert load_tokens() == DEMO_TOKENS


def test_var_file_then_environment_take_precedence(var_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("SPARK_EXPORT_TOKENS", raising=False)
    (var_dir / "export_tokens.json").write_text(json.dumps({"t-file": "erin"}))
    assert load_tokens() == {"t-file": "erin"}
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"t-path": "frank"}))
    monkeypatch.setenv("SPARK_EXPORT_TOKENS", str(path))
    assert load_tokens() == {"t-path": "frank"}
    monkeypatch.setenv("SPARK_EXPORT_TOKENS", '{"t-env": "grace"}')
    assert load_tokens() == {"t-env": "grace"}


@pytest.mark.parametrize("bad", ['{"t": ""}', '{"t": 5}', "{nope"])
def test_malformed_token_tables_are_refused(var_dir, monkeypatch, bad):
    monkeypatch.setenv("SPARK_EXPORT_TOKENS", bad)
    with pytest.raises(ValueError, match="SPARK_EXPORT_TOKENS"):
        load_tokens()


@pytest.mark.parametrize("header", [None, "", "Basic dXNlcjpwYXNz", "Bearer ", "Bearer demo-token-mallory"])
def test_only_a_known_bearer_token_names_a_user(header):
    with pytest.raises(AuthError, match="Authorization"):
        user_for_token(header, DEMO_TOKENS)
    assert user_for_token("Bearer demo-token-bob", DEMO_TOKENS) == "bob"
