"""Byte search of files for erased persons, knowing only the hashes on the suppression list.

Every token of a file that could be an identifier (letters, digits and `_.+@%-`, with a digit or an
`@`) is hashed as it is, lower-cased and URL-decoded, JSON `\\u0040` undone, and compared with the
list. That finds an id, an email or an E.164 phone wherever a file holds it in clear: the DuckDB
file's free blocks, a Parquet export, an MLflow artifact, Dagster's event log, a Data Docs page.
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.parse
from collections.abc import Iterable
from pathlib import Path

# An identifier-like run of characters that holds a digit or an @ (words and JSON keys are skipped
# by the regex engine, not by Python), 4 to 320 characters (an email is at most 320).
_CHAR = rb"[A-Za-z0-9_.+@%\\-]"
TOKEN = re.compile(rb"(?<![A-Za-z0-9_.+@%\\-])" + _CHAR + rb"*[0-9@]" + _CHAR + rb"*")
CHUNK = 16 << 20
OVERLAP = 512  # a token cut by a chunk boundary is read whole from the next chunk's overlap


def _variants(token: str) -> set[str]:
    out = {token, token.lower(), token.strip(".-_")}
    if "%" in token:
        out.add(urllib.parse.unquote(token))
    if "\\u0040" in token:
        out.add(token.replace("\\u0040", "@"))
    return out | {v.lower() for v in out}


class Scanner:
    """Counts tokens whose hash is listed, caching each distinct token's answer."""

    def __init__(self, listed: Iterable[str]):
        self.listed = set(listed)
        self._seen: dict[bytes, bool] = {}

    def _hit(self, raw: bytes) -> bool:
        known = self._seen.get(raw)
        if known is None:
            text = raw.decode("latin-1")
            known = any(hashlib.sha256(v.encode("utf-8")).hexdigest() in self.listed for v in _variants(text))
            self._seen[raw] = known
        return known

    def count(self, data: bytes, before: int | None = None) -> int:
        """Listed tokens in `data` (only those starting before `before`, if given)."""
        hits = 0
        for match in TOKEN.finditer(data):
            if before is not None and match.start() >= before:
                break
            token = match.group()
            if 4 <= len(token) <= 320 and self._hit(token):
                hits += 1
        return hits

    def file(self, path: Path) -> int:
        hits, tail = 0, b""
        with path.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                data = tail + chunk
                # The last bytes wait for the next chunk, so that a token cut by the boundary is read whole.
                cut = len(data) - OVERLAP if len(chunk) == CHUNK else len(data)
                hits += self.count(data, cut)
                tail = data[cut:]
            hits += self.count(tail)
        return hits


def file_traces(roots: Iterable[Path], listed: Iterable[str], cache: Path | None = None) -> dict[str, int]:
    """Tokens of erased persons per file under `roots` (files and folders); only files with hits.

    With `cache`, a file found clean is not read again while its size, modification time and the
    list are unchanged (the cache holds paths and digests, no identifier)."""
    listed = sorted(set(listed))
    digest = hashlib.sha256("\n".join(listed).encode()).hexdigest()
    clean: dict[str, str] = {}
    if cache is not None and cache.exists():
        try:
            clean = json.loads(cache.read_text())
        except ValueError:
            clean = {}
    scanner = Scanner(listed)
    found, still_clean = {}, {}
    for root in roots:
        root = Path(root)
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []
        for path in files:
            try:
                stat = path.stat()
                stamp = f"{stat.st_size}:{stat.st_mtime_ns}:{digest}"
                if clean.get(str(path)) == stamp:
                    still_clean[str(path)] = stamp
                    continue
                hits = scanner.file(path)
            except OSError:  # gone between listing and reading (a temporary file)
                continue
            if hits:
                found[str(path)] = hits
            else:
                still_clean[str(path)] = stamp
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(still_clean))
    return found
