"""Redaction: URLs and messages with credentials removed, for anything a person or a store sees.

One rule decides where credentials end, and it errs towards removing too much:

- after ``scheme://`` (and in a URI without a scheme, e.g. git's scp-like
  ``user@host:path``), everything up to the **last** ``@`` is the user and
  password. People write passwords unescaped, and a raw ``/``, ``?``, ``#``,
  ``@`` or ``:`` in one would end the userinfo early for an RFC 3986 parser
  (``urllib.parse`` then puts the rest of the password in the path, or fails on
  the "port"). The cost: a ``@`` in a path or query (``https://host/@user``)
  also removes what precedes it;
- ``scheme:///path`` (``sqlite:////abs/mlflow.db``, ``file:///…``) and local paths
  (``/…``, ``./…``, ``~/…``, ``C:\\…``) have no authority: an ``@`` there is part
  of a file name and stays;
- query and fragment parameters whose name carries a secret (``access_token``,
  ``password``, ``X-Amz-Signature``, ``sig``, any ``…key``; see
  `is_secret_parameter`) are dropped, whatever their case.

The functions work on the text alone and never raise: input that is no URL at
all is handled by the same rule, so whatever looks like credentials goes.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from urllib.parse import unquote, unquote_plus

__all__ = [
    "Credentials",
    "RedactingFormatter",
    "is_secret_parameter",
    "redact_text",
    "redact_url",
    "split_credentials",
]

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_WINDOWS_DRIVE = re.compile(r"[A-Za-z]:[\\/]")
# A URL inside free text (an error message): a scheme, "//", then up to whitespace or a quote.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")

# Parameter names (lower case) that carry a secret as a whole, contain one, or start one.
_SECRET_NAMES = frozenset({"key", "sig", "pwd", "pass", "code", "jwt", "bearer", "sas"})
_SECRET_PARTS = ("token", "secret", "passw", "signature", "credential", "auth", "session")
_SECRET_PREFIXES = ("x-amz-", "x-goog-", "x-ms-", "x-oss-")


@dataclass(frozen=True, slots=True)
class Credentials:
    """The user and password a URL carried, percent-escapes decoded.

    Attributes:
        username: The user (or a token given in the user's place).
        password: The password; None when the userinfo had no ``:``.
    """

    username: str
    password: str | None


def redact_url(url: str) -> str:
    """``url`` without user, password and secret-bearing query or fragment parameters.

    Examples:
        >>> redact_url("https://alice:s3cret@github.com/org/repo.git")
        'https://github.com/org/repo.git'
        >>> redact_url("http://user:p@ss/w#rd?x@127.0.0.1:5000")
        'http://127.0.0.1:5000'
        >>> redact_url("git@github.com:org/repo.git")
        'github.com:org/repo.git'
        >>> redact_url("https://host/api?run=1&access_token=abc&X-Amz-Signature=f00")
        'https://host/api?run=1'
        >>> redact_url("sqlite:////home/me@work/mlflow.db")
        'sqlite:////home/me@work/mlflow.db'
    """
    stripped, _ = _split_userinfo(url)
    return _without_secret_parameters(stripped)


def redact_text(text: str) -> str:
    """``text`` with every ``scheme://…`` URL in it redacted (see `redact_url`).

    For messages that may quote a URL (an exception from a library), not for a
    URL on its own: inside text a URL is ``scheme://`` up to the next whitespace
    or quote, so a password holding one of those is cut short there.

    Example:
        >>> redact_text("API request to http://u:pw@h:5000/api failed: refused")
        'API request to http://h:5000/api failed: refused'
    """
    return _URL_IN_TEXT.sub(lambda match: redact_url(match.group(0)), text)


def split_credentials(url: str) -> tuple[str, Credentials | None]:
    """``url`` without its userinfo (nothing else changed), and the userinfo decoded.

    Where the userinfo ends follows `redact_url`'s rule, so a raw ``/``, ``#``,
    ``?``, ``@`` or ``:`` in the password is kept in the password.

    Example:
        >>> split_credentials("http://al%40ice:p@ss/w@127.0.0.1:5000")
        ('http://127.0.0.1:5000', Credentials(username='al@ice', password='p@ss/w'))
    """
    stripped, userinfo = _split_userinfo(url)
    if userinfo is None:
        return url, None
    user, colon, password = userinfo.partition(":")
    return stripped, Credentials(unquote(user), unquote(password) if colon else None)


def is_secret_parameter(name: str) -> bool:
    """Whether a query parameter called ``name`` carries a secret (case-insensitive).

    Examples:
        >>> [is_secret_parameter(n) for n in ("Access_Token", "X-Amz-Credential", "sig")]
        [True, True, True]
        >>> [is_secret_parameter(n) for n in ("run_id", "experiment", "page")]
        [False, False, False]
    """
    lowered = unquote_plus(name).strip().lower()
    return (
        lowered in _SECRET_NAMES
        or lowered.endswith("key")
        or lowered.startswith(_SECRET_PREFIXES)
        or any(part in lowered for part in _SECRET_PARTS)
    )


class RedactingFormatter(logging.Formatter):
    """A log formatter whose lines pass through `redact_text` (exception text included).

    Our own messages name stores redacted already; this catches a URL quoted in a
    library's exception that a warning passes on.
    """

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


def _split_userinfo(url: str) -> tuple[str, str | None]:
    """``url`` without ``userinfo@``, and the userinfo (None when there is none)."""
    scheme = _SCHEME.match(url)
    if scheme is not None and url.startswith("//", scheme.end()):
        start = scheme.end() + 2
        if url.startswith("/", start):  # scheme:///path: an empty authority
            return url, None
    elif url.startswith(("/", "./", "../", "~", "\\")) or _WINDOWS_DRIVE.match(url):
        return url, None  # a local path
    else:
        # No "scheme://": "user:pass@host/x", git's "user@host:path", or a mangled
        # URL; a leading "word:" may be the user's name, so it goes with the rest.
        start = 0
    at = url.rfind("@", start)
    if at < 0:
        return url, None
    return url[:start] + url[at + 1 :], url[start:at]


def _without_secret_parameters(url: str) -> str:
    """``url`` with secret-bearing ``?query`` and ``#fragment`` parameters dropped."""
    head, hash_mark, fragment = url.partition("#")
    path, question_mark, query = head.partition("?")
    if question_mark:
        query = _kept_parameters(query)
        head = f"{path}?{query}" if query else path
    if hash_mark and "=" in fragment:
        fragment = _kept_parameters(fragment)
        return f"{head}#{fragment}" if fragment else head
    return head + hash_mark + fragment


def _kept_parameters(query: str) -> str:
    """``a=1&token=x;b=2`` -> ``a=1&b=2``: separators normalised to ``&``, empty ones dropped."""
    kept = [
        part
        for part in re.split(r"[&;]", query)
        if part and not is_secret_parameter(part.partition("=")[0])
    ]
    return "&".join(kept)
