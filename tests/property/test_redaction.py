"""Redaction: no output holds any part of a secret; it never raises and is idempotent."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from tests.property.strategies_urls import clean_urls, credentialed_urls
from trackcfg.tracking.redaction import redact_text, redact_url, split_credentials


@given(credentialed_urls())
def test_redacted_url_holds_no_part_of_the_secret(case: tuple[str, str]) -> None:
    url, _ = case
    redacted = redact_url(url)
    assert not any(c.isupper() for c in redacted), redacted


# Words without capitals (some Unicode capitals have no lower case): a capital in the
# redacted text can only come from the secret.
@given(
    credentialed_urls(),
    st.text(alphabet=st.characters(categories=["Ll", "Nd", "Zs", "Po"]), max_size=20),
)
def test_redacted_text_holds_no_part_of_a_quoted_url_secret(
    case: tuple[str, str], words: str
) -> None:
    url, _ = case
    if "://" not in url or any(c in url for c in " '\"<>`"):
        return  # in free text, a URL is scheme://… up to whitespace or a quote
    text = f"request to {url} failed: {words}"
    assert not any(c.isupper() for c in redact_text(text))


@given(credentialed_urls())
def test_split_credentials_leaves_a_url_without_the_user_and_password(
    case: tuple[str, str],
) -> None:
    url, _ = case
    stripped, credentials = split_credentials(url)
    if "?" not in url:  # a secret query parameter is not a credential MLflow takes
        assert not any(c.isupper() for c in stripped)
        assert credentials is not None


@given(st.one_of(st.text(), credentialed_urls().map(lambda c: c[0]), clean_urls()))
@example("http://user:pa/ss@host:5000")  # urllib.parse reads "pa" as a port and raises
@example("https://u:a?b@h")
def test_redaction_never_raises_and_is_idempotent(url: str) -> None:
    once = redact_url(url)
    assert redact_url(once) == once
    assert redact_text(redact_text(url)) == redact_text(url)


@given(clean_urls())
def test_a_url_without_credentials_is_left_alone(url: str) -> None:
    assert redact_url(url) == url
    assert split_credentials(url) == (url, None)
