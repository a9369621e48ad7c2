"""Page parameters of the listing routes, checked once: a page past what Postgres can OFFSET
(a bigint) or a size over the platform's maximum is a 400, never a database error."""

from __future__ import annotations

from app.errors import BadRequest

MAX_OFFSET = 2**63 - 1  # Postgres OFFSET is a bigint
DEFAULT_PAGE_SIZE = 50


def page_window(page: int | None, page_size: int | None, max_page_size: int) -> tuple[int, int]:
    """The (page, page_size) to use, defaults filled in; a 400 for a value out of range."""
    page = 1 if page is None else page
    page_size = DEFAULT_PAGE_SIZE if page_size is None else page_size
    if page < 1:
        raise BadRequest("page starts at 1.", code="invalid_page")
    if not 1 <= page_size <= max_page_size:
        raise BadRequest(f"page_size must be between 1 and {max_page_size}.", code="invalid_page_size")
    if (page - 1) * page_size > MAX_OFFSET:
        raise BadRequest("page is too large.", code="invalid_page")
    return page, page_size
