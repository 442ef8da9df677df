"""Hypothesis strategies for URLs with and without credentials (used by test_redaction).

Every secret is built so that a leak of any part of it shows: secrets are made of
chunks of UPPER-case letters, each followed by a character that URL parsers treat
as a delimiter (``/ # ? @ : %``...), and everything that is not secret (scheme,
user, host, path, benign query parameters) is lower case. A redacted URL must
therefore contain no upper-case letter at all.
"""

from __future__ import annotations

import string
from urllib.parse import quote

from hypothesis import strategies as st

#: Characters that end a URL part early when they appear unescaped in a password.
DELIMITERS = list("/#?@:%&=;+ !$'()*,")

SECRET_PARAMETERS = [
    "access_token",
    "token",
    "password",
    "secret",
    "key",
    "api_key",
    "apikey",
    "signature",
    "sig",
    "X-Amz-Signature",
    "X-Amz-Credential",
    "X-Amz-Security-Token",
    "client_secret",
    "auth",
]

_lower = string.ascii_lowercase + string.digits

#: A secret: 1-4 chunks of upper-case letters, each with a delimiter after it.
secrets = st.lists(
    st.tuples(
        st.text(string.ascii_uppercase, min_size=1, max_size=4),
        st.sampled_from(["", *DELIMITERS]),
    ),
    min_size=1,
    max_size=4,
).map(lambda chunks: "".join(a + b for a, b in chunks))

users = st.text(_lower + "._-", min_size=1, max_size=8).filter(lambda u: u[0].isalnum())
hosts = st.one_of(
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\.[a-z0-9]{1,6}){0,2}", fullmatch=True),
    st.sampled_from(["127.0.0.1", "[::1]", "[fe80::1]", "localhost"]),
)
ports = st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}"))
paths = st.lists(st.text(_lower + "._-", min_size=1, max_size=6), max_size=3).map(
    lambda parts: "".join("/" + p for p in parts)
)
benign_parameters = st.lists(
    st.tuples(
        st.sampled_from(["run", "page", "experiment", "q", "id"]), st.text(_lower, max_size=5)
    ),
    max_size=2,
)
schemes = st.sampled_from(["http", "https", "postgresql", "mysql+pymysql", "ssh", "git"])


def _mixed_case(name: str, flips: list[bool]) -> str:
    flips = (flips + [False] * len(name))[: len(name)]
    return "".join(c.swapcase() if f else c for c, f in zip(name, flips, strict=True))


secret_parameter_names = st.tuples(
    st.sampled_from(SECRET_PARAMETERS), st.lists(st.booleans(), max_size=20)
).map(lambda t: _mixed_case(*t))


@st.composite
def credentialed_urls(draw: st.DrawFn) -> tuple[str, str]:
    """``(url, secret)``: a URL carrying ``secret`` as password, token-user or query value."""
    secret = draw(secrets)
    escaped = draw(st.booleans())
    where = draw(st.sampled_from(["password", "user", "query", "no-scheme"]))
    written = quote(secret, safe="") if escaped else secret
    host = draw(hosts) + draw(ports)
    path = draw(paths)
    query = "&".join(f"{k}={v}" for k, v in draw(benign_parameters))
    if where == "query":
        name = draw(secret_parameter_names)
        secret_param = f"{name}={quote(secret, safe='')}"
        query = f"{query}&{secret_param}" if query and draw(st.booleans()) else secret_param
        url = f"{draw(schemes)}://{host}{path or '/'}?{query}"
    elif where == "password":
        url = f"{draw(schemes)}://{draw(users)}:{written}@{host}{path}"
    elif where == "user":
        url = f"{draw(schemes)}://{written}@{host}{path}"
    else:
        url = f"{draw(users)}:{written}@{host}{path}"
    if query and where != "query":
        url += f"{'' if path else '/'}?{query}"
    return url, secret


@st.composite
def clean_urls(draw: st.DrawFn) -> str:
    """A URL without credentials, ``@`` or secret parameters: redaction leaves it alone."""
    query = "&".join(f"{k}={v}" for k, v in draw(benign_parameters))
    kind = draw(st.sampled_from(["url", "sqlite", "path"]))
    if kind == "sqlite":
        return f"sqlite:///{draw(paths)}/mlflow.db"
    if kind == "path":
        return draw(paths) or "/"
    url = f"{draw(schemes)}://{draw(hosts)}{draw(ports)}{draw(paths)}"
    return f"{url}/?{query}" if query else url
