"""API-key authentication of recognition requests (SpeechKit style ``authorization`` metadata).

Clients send ``authorization: Api-Key <key>`` (service-account API key) or ``authorization: Bearer
<token>`` (IAM token); both prefixes are accepted and the secret after them is looked up in the set
of accepted keys. Keys come from the environment variable ``VOICEBOT_STT_API_KEYS``
(comma-separated) and/or a key file (one key per line, ``#`` comments), never from a config file.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from voicebot.errors import ConfigError
from voicebot.stt.errors import Unauthenticated

API_KEYS_ENV = "VOICEBOT_STT_API_KEYS"
_PREFIXES = ("Api-Key", "Bearer")


def load_api_keys(key_file: Path | None = None, environ: Mapping[str, str] | None = None) -> frozenset[str]:
    """The accepted keys from ``VOICEBOT_STT_API_KEYS`` and ``key_file`` (both optional)."""
    env = os.environ if environ is None else environ
    keys = {k.strip() for k in env.get(API_KEYS_ENV, "").split(",") if k.strip()}
    if key_file is not None:
        try:
            text = key_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--api-key-file {key_file}: cannot read it: {exc.strerror}") from exc
        for number, line in enumerate(text.splitlines(), start=1):
            key = line.split("#", 1)[0].strip()
            if not key:
                continue
            if any(c.isspace() for c in key) or "," in key:
                raise ConfigError(f"{key_file}:{number}: an API key may not contain spaces or commas")
            keys.add(key)
    return frozenset(keys)


class Authenticator:
    """Checks the ``authorization`` metadata value against the accepted keys."""

    def __init__(self, keys: Iterable[str], *, required: bool = True) -> None:
        self._keys = tuple(k.encode("utf-8") for k in keys)
        self.required = required

    def check(self, authorization: str | None) -> None:
        """Return if the request may proceed; raise :class:`Unauthenticated` with the reason if not."""
        if not self.required:
            return
        if not authorization:
            raise Unauthenticated(
                "missing 'authorization' metadata; send 'authorization: Api-Key <key>' or 'Bearer <token>'"
            )
        scheme, _, secret = authorization.strip().partition(" ")
        if scheme not in _PREFIXES or not secret.strip():
            raise Unauthenticated(
                "malformed 'authorization' metadata; expected 'Api-Key <key>' or 'Bearer <token>'"
            )
        candidate = secret.strip().encode("utf-8")
        # Compare against every key in constant time so timing does not reveal a prefix match.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(candidate, key)
        if not matched:
            what = "API key" if scheme == "Api-Key" else "token"
            raise Unauthenticated(f"unknown {what} in 'authorization'")
