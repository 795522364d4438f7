"""A local stand-in for an OIDC issuer, since none is reachable here.

A real HTTP server on an ephemeral port of 127.0.0.1 (stdlib ThreadingHTTPServer in a thread) that
serves what a resource server reads of an identity provider:
- /.well-known/openid-configuration (issuer, jwks_uri, the usual endpoints' names);
- /jwks.json: the public halves of its signing keys, RSA (RS256) and EC P-256 (ES256), generated
  with `cryptography` at start.
It signs access tokens the way a provider would (`token`), and forges the ones a provider never
would (`forged_hs256`, `unsigned`) for refusal tests. `rotate` adds a key, `drop` withdraws one;
`jwks_requests` counts fetches. Reusable by end-to-end tests:

    with StandInIssuer(audience="huddle-test") as idp:
        server = start Huddle with HUDDLE_AUTH_ISSUER=idp.url, HUDDLE_AUTH_AUDIENCE=idp.audience
        token = idp.token(sub="alice", scope="agent")
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_key(kind: str) -> PrivateKey:
    """A fresh signing key: "rsa" (2048 bits, RS256) or "ec" (P-256, ES256)."""
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"unknown key kind {kind!r}: rsa or ec")


def public_jwk(key: PrivateKey, kid: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
        jwk["alg"] = "RS256"
    else:
        jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
        jwk["alg"] = "ES256"
    return {**jwk, "kid": kid, "use": "sig"}


def public_pem(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


class StandInIssuer:
    """An identity provider on 127.0.0.1:<ephemeral>; `url` is its issuer identifier."""

    def __init__(self, audience: str = "huddle-test", *, clock: Callable[[], float] = time.time):
        self.audience = audience
        self.clock = clock
        self.keys: dict[str, PrivateKey] = {"rsa-1": new_key("rsa"), "ec-1": new_key("ec")}
        self.published: set[str] = set(self.keys)
        self.jwks_requests = 0
        self.metadata_overrides: dict[str, Any] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- the server -----------------------------------------------------------------------------

    def start(self) -> StandInIssuer:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    self._json(issuer.metadata())
                elif self.path == "/jwks.json":
                    issuer.jwks_requests += 1
                    self._json(issuer.jwks())
                else:
                    self.send_error(404)

            def _json(self, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="oidc-stand-in", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> StandInIssuer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start the stand-in issuer first"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/jwks.json"

    def metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "jwks_uri": self.jwks_url,
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "response_types_supported": ["code"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            **self.metadata_overrides,
        }

    def jwks(self) -> dict[str, Any]:
        return {"keys": [public_jwk(key, kid) for kid, key in self.keys.items() if kid in self.published]}

    # -- keys -----------------------------------------------------------------------------------

    def rotate(self, kind: str = "rsa") -> str:
        """Adds and publishes a new key; returns its kid."""
        kid = f"{kind}-{len(self.keys) + 1}"
        self.keys[kid] = new_key(kind)
        self.published.add(kid)
        return kid

    def drop(self, kid: str) -> None:
        """Stops publishing a key (it can still sign: tokens by a withdrawn key)."""
        self.published.discard(kid)

    # -- tokens ---------------------------------------------------------------------------------

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """A provider's usual access-token claims; an override of None removes that claim."""
        now = int(self.clock())
        claims: dict[str, Any] = {
            "iss": self.url,
            "aud": self.audience,
            "sub": "alice",
            "iat": now,
            "exp": now + 3600,
            "jti": "stand-in-jti",
            "scope": "openid agent",
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, *, kid: str = "rsa-1", signer: PrivateKey | None = None, **claims: Any) -> str:
        """A token signed by key `kid` (or by `signer` while naming `kid`), with `claims` overriding."""
        key = signer or self.keys[kid]
        alg = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
        return jwt.encode(self.claims(**claims), key, algorithm=alg, headers={"kid": kid})

    def forged_hs256(self, *, kid: str = "rsa-1", **claims: Any) -> str:
        """The algorithm-confusion attack: HS256 keyed with the issuer's *public* key, which anyone has.
        (PyJWT refuses to make such a token, so it is built by hand.)"""
        return self._compact({"alg": "HS256", "typ": "JWT", "kid": kid}, claims, public_pem(self.keys[kid]))

    def unsigned(self, *, kid: str = "rsa-1", **claims: Any) -> str:
        """alg=none: a token with no signature at all."""
        return self._compact({"alg": "none", "typ": "JWT", "kid": kid}, claims, None)

    def _compact(self, header: dict[str, Any], claims: dict[str, Any], hmac_key: bytes | None) -> str:
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(self.claims(**claims)).encode())}"
        if hmac_key is None:
            return signing_input + "."
        signature = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(signature)}"
