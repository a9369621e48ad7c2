"""Numbered SQL files (NNN_name.sql) under a directory, applied in order of their number."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SQL_DIR = Path(__file__).resolve().parent.parent.parent / "sql"
_NUMBERED = re.compile(r"^(\d{3})_.+\.sql$")
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


@dataclass(frozen=True, order=True)
class SqlFile:
    version: int
    path: Path

    @property
    def name(self) -> str:
        return self.path.name


def directory(group: str) -> Path:
    """sql/control or sql/mem of this checkout."""
    return SQL_DIR / group


def numbered_files(folder: Path) -> list[SqlFile]:
    """The NNN_*.sql files of a folder in order; two files with one number are a packaging error."""
    files = sorted(
        SqlFile(int(match.group(1)), path)
        for path in folder.glob("*.sql")
        if (match := _NUMBERED.match(path.name))
    )
    seen: dict[int, str] = {}
    for f in files:
        if f.version in seen:
            raise ValueError(f"{seen[f.version]} and {f.name} share version {f.version}")
        seen[f.version] = f.name
    return files


def render(path: Path, values: dict[str, str]) -> str:
    """Substitute {{name}} placeholders; the caller has validated every value against a pattern."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"{path.name} needs a value for {{{{{name}}}}}")
        return values[name]

    return _PLACEHOLDER.sub(substitute, path.read_text())
