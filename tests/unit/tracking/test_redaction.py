"""redact_url / split_credentials / redact_text: one table of what goes and what stays."""

from __future__ import annotations

import pytest

from trackcfg.tracking.redaction import Credentials, redact_text, redact_url, split_credentials

PASSWORD = "p@ss/w#rd?x@"  # every character an RFC 3986 parser would stop at


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # git remotes (what the snapshot's git state records)
        ("https://alice:s3cret@github.com/org/repo.git", "https://github.com/org/repo.git"),
        ("https://token@github.com/org/repo.git", "https://github.com/org/repo.git"),
        ("http://u:p@[::1]:8080/r.git", "http://[::1]:8080/r.git"),
        ("ssh://git@host:22/r.git", "ssh://host:22/r.git"),
        ("git@github.com:org/repo.git", "github.com:org/repo.git"),
        ("github.com:org/repo.git", "github.com:org/repo.git"),
        ("https://github.com/org/repo.git", "https://github.com/org/repo.git"),
        ("/srv/git/repo.git", "/srv/git/repo.git"),
        ("file:///srv/git/repo.git", "file:///srv/git/repo.git"),
        # passwords with raw delimiters, percent-escapes, no scheme
        (f"http://user:{PASSWORD}@127.0.0.1:5000", "http://127.0.0.1:5000"),
        (f"http://user:{PASSWORD}@127.0.0.1:5000/api?run=1", "http://127.0.0.1:5000/api?run=1"),
        ("http://user:pa/ss@host:5000", "http://host:5000"),
        ("https://u:a?b@h/x", "https://h/x"),
        ("https://u:a#b@h/x", "https://h/x"),
        ("https://u:a:b:c@h:443", "https://h:443"),
        ("http://user:p%40ss%2Fw%23rd%3Fx%40@127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("postgresql://mlflow:pw@db.internal:5432/mlflow", "postgresql://db.internal:5432/mlflow"),
        ("user:pw@host:5000/x", "host:5000/x"),
        ("user:/pw@host", "host"),
        # secret-bearing query and fragment parameters, any case
        ("https://h/x?access_token=abc", "https://h/x"),
        ("https://h/x?a=1&TOKEN=abc;b=2", "https://h/x?a=1&b=2"),
        (
            "https://b.s3.amazonaws.com/k?X-Amz-Signature=f&X-Amz-Credential=c&v=1",
            "https://b.s3.amazonaws.com/k?v=1",
        ),
        (
            "https://acct.blob.core.windows.net/c?sv=2022&sig=abc%3D",
            "https://acct.blob.core.windows.net/c?sv=2022",
        ),
        ("https://h/cb#access_token=abc&state=1", "https://h/cb#state=1"),
        ("postgresql://h/db?password=pw&sslmode=require", "postgresql://h/db?sslmode=require"),
        ("https://h/x#section", "https://h/x#section"),
        # local stores: an "@" in a file name is no credential
        ("sqlite:////home/me@work/mlflow.db", "sqlite:////home/me@work/mlflow.db"),
        ("sqlite:///rel@x.db", "sqlite:///rel@x.db"),
        ("./runs@1/mlflow.db", "./runs@1/mlflow.db"),
        ("C:\\Users\\a@b\\mlflow.db", "C:\\Users\\a@b\\mlflow.db"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        # odd input never raises
        ("", ""),
        ("@", ""),
        ("http://[::1", "http://[::1"),
        ("http://u:p@[::1", "http://[::1"),
        ("::::@@@", ""),
    ],
)
def test_redact_url_removes_credentials_and_secret_parameters(url: str, expected: str) -> None:
    assert redact_url(url) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            f"http://user:{PASSWORD}@127.0.0.1:5000",
            ("http://127.0.0.1:5000", Credentials("user", PASSWORD)),
        ),
        (
            "http://us%3Aer:p%40ss%2Fw@h/x?a=1",
            ("http://h/x?a=1", Credentials("us:er", "p@ss/w")),
        ),
        ("https://tok@h", ("https://h", Credentials("tok", None))),
        ("https://:pw@h", ("https://h", Credentials("", "pw"))),
        ("http://h:5000", ("http://h:5000", None)),
        ("sqlite:////a@b/mlflow.db", ("sqlite:////a@b/mlflow.db", None)),
    ],
)
def test_split_credentials_decodes_user_and_password(
    url: str, expected: tuple[str, Credentials | None]
) -> None:
    assert split_credentials(url) == expected


def test_redact_text_redacts_every_url_in_a_message() -> None:
    text = (
        "API request to http://u:pw@h:5000/api/2.0/runs failed; "
        "retried https://x:y@other/?token=t (2 times)"
    )
    assert redact_text(text) == (
        "API request to http://h:5000/api/2.0/runs failed; retried https://other/ (2 times)"
    )
