"""A tenant's CORS origins: the exact scheme://host[:port] a browser sends, nothing looser."""

from __future__ import annotations

import pytest

from app.tenancy.errors import InvalidTenant
from app.tenancy.origins import MAX_ORIGINS, normalize_origins


def test_origins_are_lowercased_trimmed_and_deduplicated_in_order() -> None:
    assert normalize_origins(
        [" https://App.Example.com ", "http://localhost:5173", "https://app.example.com"]
    ) == (
        "https://app.example.com",
        "http://localhost:5173",
    )
    assert normalize_origins(["http://[::1]:8080", "http://127.0.0.1"]) == (
        "http://[::1]:8080",
        "http://127.0.0.1",
    )
    assert normalize_origins([]) == ()


@pytest.mark.parametrize(
    "origin",
    [
        "*",
        "null",
        "https://*.example.com",
        "https://app.example.com/",
        "https://app.example.com/app",
        "https://app.example.com?x=1",
        "https://user@app.example.com",
        "ftp://app.example.com",
        "app.example.com",
        "https://app.example.com:0",
        "https://app.example.com:70000",
        "https://-bad.example.com",
        "",
    ],
)
def test_anything_but_an_exact_origin_is_refused(origin: str) -> None:
    with pytest.raises(InvalidTenant) as caught:
        normalize_origins(["https://ok.example.com", origin])
    assert caught.value.code == "invalid_cors_origin"


def test_the_list_is_bounded() -> None:
    normalize_origins([f"https://a{i}.example.com" for i in range(MAX_ORIGINS)])
    with pytest.raises(InvalidTenant):
        normalize_origins([f"https://a{i}.example.com" for i in range(MAX_ORIGINS + 1)])
