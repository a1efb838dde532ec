"""Which browser origins may talk socket.io to the server.

Browsers send `Origin` with every cross-site request, and with every websocket handshake,
where no CORS check protects the server: without this policy any page a LAN user visits
could drive socket.io through their browser (token guessing included). Allowed are the
server's own origin (as the browser sees it: `Host`, or a reverse proxy's
`X-Forwarded-Proto`/`X-Forwarded-Host`), the configured extra origins, or with `*` any.
Clients that send no `Origin` (cameras, controllers, scripts) are not browsers and pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

ANY = "*"


class OriginPolicy:
    """A `cors_allowed_origins` callable for python-engineio: `policy(origin, environ)`."""

    def __init__(self, extra: Iterable[str]) -> None:
        origins = tuple(origin.rstrip("/") for origin in extra)
        self.any = ANY in origins
        self._extra = frozenset(origins)

    def __call__(self, origin: str | None, environ: Mapping[str, str]) -> bool:
        if origin is None or self.any or origin in self._extra:
            return True
        return origin in own_origins(environ)


def own_origins(environ: Mapping[str, str]) -> set[str]:
    """The origins the request's page would have if the server (or its proxy) served it."""
    host = environ.get("HTTP_HOST", "")
    if not host:
        return set()
    scheme = environ.get("wsgi.url_scheme", "http")
    origins = {f"{scheme}://{host}"}
    forwarded_host = _first(environ.get("HTTP_X_FORWARDED_HOST", "")) or host
    forwarded_proto = _first(environ.get("HTTP_X_FORWARDED_PROTO", "")) or scheme
    origins.add(f"{forwarded_proto}://{forwarded_host}")
    return origins


def _first(header: str) -> str:
    return header.split(",")[0].strip()
