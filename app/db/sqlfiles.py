"""Numbered SQL files under sql/, applied in order."""

from __future__ import annotations

import re
from pathlib import Path

SQL_DIR = Path(__file__).resolve().parent.parent.parent / "sql"
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def sql_files(group: str) -> list[Path]:
    return sorted((SQL_DIR / group).glob("[0-9][0-9][0-9]_*.sql"))


def render(path: Path, values: dict[str, str]) -> str:
    """Substitute {{name}} placeholders; the caller has validated every value against a pattern."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"{path.name} needs a value for {{{{{name}}}}}")
        return values[name]

    return _PLACEHOLDER.sub(substitute, path.read_text())


def latest_version(group: str) -> int:
    files = sql_files(group)
    return int(files[-1].name[:3]) if files else 0
