"""CDS Hooks "Trusting CDS Clients": every request carries a JWT the EHR signed with its private key.

The service checks the signature against the configured JSON Web Key Set (RS384 or ES384, the
algorithms CDS Hooks 2.0 requires), that `iss` is an allowed EHR, that `aud` is this service (its
discovery URL, or the URL of the endpoint called), that `exp` has not passed (and is at most
`MAX_LIFETIME` away: the spec asks for short-lived tokens), and that the `jti` was never seen while
its token could still be valid. The seen-`jti` store lives in the worker's memory and is bounded:
entries go when their token expires. With `--workers N` each worker has its own store, so a token
replayed to another worker within its (at most 5-minute) life is not caught: run one worker, or put
a shared replay cache in front, where that matters. Each failure is a `Refused` with a short reason
for the 401.
"""

from __future__ import annotations

import time
from pathlib import Path

import jwt

from leader.errors import LeaderError
from leader.safejson import JSONError, loads

ALGORITHMS = ("RS384", "ES384")
MAX_LIFETIME = 300
"""Seconds a token may still have before `exp`; longer-lived tokens are refused (CDS Hooks: 5 minutes)."""
LEEWAY = 5
"""Seconds of clock skew allowed on `exp` and `iat`."""
MAX_SEEN = 1_000_000
"""Most live `jti` values kept; beyond that new tokens are refused until old ones expire."""
MAX_HEADERS = 64
"""Distinct JWT headers whose parse is remembered (an EHR signs every token with the same one)."""


class Refused(Exception):
    """A request whose token does not pass; str() is the short reason returned with the 401."""


def load_jwks(path: Path) -> jwt.PyJWKSet:
    """The key set of --jwks; LeaderError naming the problem when the file cannot serve."""
    try:
        document = loads(Path(path).read_bytes())
    except (OSError, JSONError) as err:
        raise LeaderError(
            f"--jwks {path} is not a readable JSON Web Key Set ({err}); give the EHR's JWKS file"
        ) from None
    try:
        keys = jwt.PyJWKSet.from_dict(document)
    except (jwt.PyJWKSetError, jwt.InvalidKeyError, TypeError, KeyError) as err:
        raise LeaderError(
            f"--jwks {path} holds no usable key ({err}); give RS384/ES384 public keys as a JWKS"
        ) from None
    if any(not hasattr(k.key, "public_bytes") or hasattr(k.key, "private_bytes") for k in keys.keys):
        raise LeaderError(f"--jwks {path} holds a private or symmetric key; give only the EHR's public keys")
    return keys


class Verifier:
    """Checks CDS Hooks bearer tokens; see the module docstring."""

    def __init__(self, keys: jwt.PyJWKSet, issuers: list[str], audience: str) -> None:
        self.keys = keys
        self.issuers = frozenset(issuers)
        self.audience = audience.rstrip("/")
        self.root = self.audience.removesuffix("/cds-services")
        self.seen: dict[str, float] = {}
        self._next_purge = 0.0
        self._headers: dict[str, dict] = {}

    def _header(self, token: str) -> dict:
        """The token's header, unverified (it picks the key and algorithm). Parsed once per distinct
        header segment: PyJWT's parse checks every character of the whole token in Python, which
        costs about as much as the RS384 signature check, and `jwt.decode` parses it again anyway."""
        segment = token.partition(".")[0]
        header = self._headers.get(segment)
        if header is None:
            try:
                header = jwt.get_unverified_header(token)
            except jwt.PyJWTError:
                raise Refused("malformed token") from None
            if len(self._headers) < MAX_HEADERS:
                self._headers[segment] = header
        return header

    def _key(self, header: dict):
        kid = header.get("kid")
        matches = [k for k in self.keys.keys if kid is None or k.key_id == kid]
        if len(matches) != 1:
            raise Refused("unknown signing key (kid)" if kid is not None else "token has no kid")
        return matches[0]

    def verify(self, authorization: str | None, path: str, now: float | None = None) -> dict:
        """The token's claims, or Refused. `path` is the endpoint called (its URL is also a valid `aud`)."""
        if not authorization:
            raise Refused("missing bearer token")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Refused("authorization is not a bearer token")
        token = token.strip()
        header = self._header(token)
        if header.get("alg") not in ALGORITHMS:
            raise Refused(f"algorithm must be one of {', '.join(ALGORITHMS)}")
        key = self._key(header)
        now = time.time() if now is None else now
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[header["alg"]],
                leeway=LEEWAY,
                options={"require": ["iss", "aud", "exp", "iat", "jti"], "verify_aud": False, "verify_iat": False},
            )
        except jwt.InvalidSignatureError:
            raise Refused("bad signature") from None
        except jwt.ExpiredSignatureError:
            raise Refused("token expired") from None
        except jwt.MissingRequiredClaimError as err:
            raise Refused(f"token lacks '{err.claim}'") from None
        except jwt.DecodeError:  # the header was known: is the rest of the token malformed?
            try:
                jwt.get_unverified_header(token)
            except jwt.PyJWTError:
                raise Refused("malformed token") from None
            raise Refused("invalid token") from None
        except jwt.PyJWTError:
            raise Refused("invalid token") from None
        if claims["iss"] not in self.issuers:
            raise Refused("issuer not allowed")
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if not {str(a).rstrip("/") for a in audiences} & {self.audience, self.root + path}:
            raise Refused("wrong audience")
        exp = claims["exp"]
        if not isinstance(exp, (int, float)) or exp > now + MAX_LIFETIME + LEEWAY:
            raise Refused(f"token lives longer than {MAX_LIFETIME} s")
        self._remember(str(claims["jti"]), float(exp), now)
        return claims

    def _remember(self, jti: str, exp: float, now: float) -> None:
        """Refuse a `jti` seen before (while its token could be valid); remember this one until it expires."""
        if now >= self._next_purge or len(self.seen) >= MAX_SEEN:
            self.seen = {j: e for j, e in self.seen.items() if e + LEEWAY >= now}
            self._next_purge = now + 10
        if jti in self.seen:
            raise Refused("token replayed (jti already used)")
        if len(self.seen) >= MAX_SEEN:
            raise Refused("too many live tokens; retry shortly")
        self.seen[jti] = exp
