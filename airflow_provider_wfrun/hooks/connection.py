"""
A connection, validated: where the platform is, how to authenticate, and how to reach it (TLS, proxy).

Everything here is checked when the connection is resolved, before any request, so a bad key or extra is
an :class:`~airflow_provider_wfrun.exceptions.InvalidInputError` naming what to fix, never a transport
error half-way through a run. The API key is registered with Airflow's secrets masker and never printed.
"""

from __future__ import annotations

import functools
import os
import ssl
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from airflow.providers.common.compat.sdk import AirflowNotFoundException

from airflow_provider_wfrun import __version__
from airflow_provider_wfrun._compat import mask_secret
from airflow_provider_wfrun.exceptions import ConnectionNotFoundError, InvalidInputError
from airflow_provider_wfrun.platforms import adapter_classes

if TYPE_CHECKING:
    from airflow.sdk import Connection

USER_AGENT = f"airflow-provider-wfrun/{__version__}"
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


@dataclass(frozen=True)
class HttpSettings:
    """
    How to reach the platform, from the connection's extras (the names the HTTP provider uses).

    ``verify`` is True, False or a CA bundle path (self-hosted Dify behind a private CA); ``cert`` and
    ``cert_key`` a client certificate; ``proxy`` an explicit proxy URL; ``trust_env`` whether the
    environment's ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` and ``SSL_CERT_FILE`` apply. Both the sync
    and the async path derive their TLS context and proxy from here, so they behave the same.
    """

    verify: bool | str = True
    cert: str | None = None
    cert_key: str | None = None
    proxy: str | None = None
    trust_env: bool = True

    def ssl_context(self) -> ssl.SSLContext:
        return _ssl_context(self)

    def proxy_for(self, url: str) -> str | None:
        """The proxy a request to ``url`` goes through: the explicit one, else the environment's."""
        if self.proxy:
            return self.proxy
        if not self.trust_env:
            return None
        proxies = urllib.request.getproxies_environment()
        parts = urlsplit(url)
        # The standard library's NO_PROXY rules, for both paths alike (typeshed does not list the function).
        bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
        if not parts.hostname or bypass(parts.hostname, proxies):
            return None
        return proxies.get(parts.scheme) or proxies.get("all") or None


@functools.lru_cache(maxsize=16)
def _ssl_context(settings: HttpSettings) -> ssl.SSLContext:
    """
    One TLS context per distinct setting, shared by every client of the process: building one loads a CA
    bundle (tens of ms of CPU), which a deferred task would otherwise pay on each hook.
    """
    if isinstance(settings.verify, str):
        context = ssl.create_default_context(cafile=settings.verify)
    else:
        context = httpx.create_ssl_context(verify=settings.verify, trust_env=settings.trust_env)
    if settings.cert:
        context.load_cert_chain(settings.cert, settings.cert_key)
    return context


@dataclass(frozen=True)
class PlatformConnection:
    """A validated connection. The key is never printed (not in repr, not in any message)."""

    conn_id: str
    platform: str
    base_url: str
    api_key: str | None = field(repr=False)
    extra: Mapping[str, Any] = field(default_factory=dict)
    http: HttpSettings = field(default_factory=HttpSettings)
    #: Sent with every request: User-Agent and the platform's authentication header.
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)

    def redact(self, text: str) -> str:
        """``text`` with the API key replaced, for platform text quoted in errors (a 401 may echo it)."""
        if self.api_key and self.api_key in text:
            return text.replace(self.api_key, "***")
        return text


def platform_connection(conn: Connection) -> PlatformConnection:
    """Validate a connection before anything is sent; every problem is an :class:`InvalidInputError`."""
    adapter_class = adapter_classes().get(conn.conn_type or "")
    if adapter_class is None:
        raise InvalidInputError(
            f"connection {conn.conn_id!r} has type {conn.conn_type!r}; "
            f"use one of: {', '.join(adapter_classes())}"
        )
    api_key = _api_key(conn, adapter_class.display_name, required=adapter_class.requires_api_key)
    extra = conn.extra_dejson or {}
    base_url = _base_url(conn.conn_id, (conn.host or "").strip() or adapter_class.default_host)
    headers = {"User-Agent": USER_AGENT}
    if api_key:
        headers.update(adapter_class.auth_headers(api_key))
    return PlatformConnection(
        conn_id=conn.conn_id,
        platform=adapter_class.name,
        base_url=base_url,
        api_key=api_key,
        extra=extra,
        http=http_settings(conn.conn_id, extra),
        headers=headers,
    )


def _api_key(conn: Connection, display_name: str, *, required: bool) -> str | None:
    api_key = (conn.password or "").strip()
    if not api_key:
        if required:
            raise InvalidInputError(
                f"connection {conn.conn_id!r} has no API key: put the {display_name} API key in the "
                "connection's password field"
            )
        return None
    # A header value must be visible ASCII: anything else (a pasted line break, a non-breaking space)
    # would fail inside the HTTP client, whose message would quote the value.
    if not all(33 <= ord(char) <= 126 for char in api_key):
        raise InvalidInputError(
            f"connection {conn.conn_id!r} has an API key with characters an HTTP header cannot carry "
            "(spaces, line breaks, non-ASCII); copy the key again from the platform"
        )
    mask_secret(api_key)
    return api_key


def _base_url(conn_id: str, host: str) -> str:
    parts = urlsplit(host)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInputError(
            f"connection {conn_id!r} host {host!r} is not an API root URL; write it with its scheme and "
            "version segment, e.g. https://api.dify.ai/v1"
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise InvalidInputError(
            f"connection {conn_id!r} host must be a plain URL (no credentials, query or fragment); "
            "put the API key in the password field"
        )
    return host.rstrip("/")


def http_settings(conn_id: str, extra: Mapping[str, Any]) -> HttpSettings:
    """TLS and proxy settings from a connection's extras, checked (files exist, URLs are URLs)."""
    verify: bool | str = True
    raw_verify = extra.get("verify")
    if raw_verify is not None and raw_verify != "":
        as_bool = _flag(raw_verify)
        verify = as_bool if as_bool is not None else _existing_file(conn_id, "verify", raw_verify)
    cert = _optional_file(conn_id, "cert", extra.get("cert"))
    cert_key = _optional_file(conn_id, "cert_key", extra.get("cert_key"))
    if cert_key and not cert:
        raise InvalidInputError(f"connection {conn_id!r} extra cert_key is set without cert")
    trust_env = True
    if extra.get("trust_env") not in (None, ""):
        flag = _flag(extra["trust_env"])
        if flag is None:
            raise InvalidInputError(
                f"connection {conn_id!r} extra trust_env must be true or false, got {extra['trust_env']!r}"
            )
        trust_env = flag
    return HttpSettings(
        verify=verify,
        cert=cert,
        cert_key=cert_key,
        proxy=_proxy(conn_id, extra.get("proxy")),
        trust_env=trust_env,
    )


def _flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return True if text in _TRUE else False if text in _FALSE else None


def _optional_file(conn_id: str, name: str, value: Any) -> str | None:
    return None if value in (None, "") else _existing_file(conn_id, name, value)


def _existing_file(conn_id: str, name: str, value: Any) -> str:
    path = str(value)
    if not os.path.isfile(path):
        raise InvalidInputError(
            f"connection {conn_id!r} extra {name} names {path!r}, which is not a readable file on this "
            "machine (it must exist on every worker and triggerer)"
        )
    return path


def _proxy(conn_id: str, value: Any) -> str | None:
    if value in (None, ""):
        return None
    parts = urlsplit(str(value))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInputError(
            f"connection {conn_id!r} extra proxy must be an http:// or https:// proxy URL, got a "
            f"{parts.scheme or 'schemeless'} value"
        )
    return str(value)


@contextmanager
def connection_lookup(conn_id: str) -> Iterator[None]:
    """A missing connection is bad input: say which id and how to define it."""
    try:
        yield
    except AirflowNotFoundException:
        types = ", ".join(adapter_classes())
        raise ConnectionNotFoundError(
            f"connection {conn_id!r} is not defined: create it with one of the types {types} "
            f'(e.g. AIRFLOW_CONN_{conn_id.upper()}=\'{{"conn_type": "dify", "password": "..."}}\')'
        ) from None
