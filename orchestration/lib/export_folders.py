"""The audience export folders as files: data/exports/<segment>/<as_of>/{members.parquet,
members.csv, manifest.json}. Each folder is written beside its target and renamed into place, so a
reader never sees half a folder.

Shared by the exports, which write the folders (orchestration/defs/exports/audiences.py), and by
erasure, which rewrites them without erased persons and counts what is left
(orchestration/defs/privacy). Plain Python over DuckDB.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import duckdb

from orchestration.lib import suppression

FILES = ("members.parquet", "members.csv")


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


_RENAME_EXCHANGE = 2  # renameat2(2) flag: swap two paths in one step
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories atomically (Linux renameat2); False where the system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0
    except (AttributeError, OSError):
        return False


def _swap_in(tmp: Path, target: Path) -> None:
    """Put the folder `tmp` in place of `target`: a reader sees the old folder or the new one, never
    none and never half of one (where renameat2 exists; elsewhere, rename aside then into place)."""
    if target.exists() and _exchange(tmp, target):
        shutil.rmtree(tmp)  # it holds the previous folder now
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def remove_leftovers(exports_dir: Path) -> list[str]:
    """Delete the half-written or swapped-out folders (`.<as_of>.tmp-PID`, `.<as_of>.old-PID`) a
    killed export left behind: they may hold erased persons, and nothing reads them."""
    removed = []
    for folder in sorted(exports_dir.glob("*/.*")):
        if folder.is_dir() and re.search(r"\.(tmp|old)-\d+$", folder.name):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(str(folder.relative_to(exports_dir)))
    return removed


def write_folder(con, table: str, target: Path, manifest: dict) -> dict:
    """Write `table` as one audience folder at `target` (members.parquet, members.csv and
    manifest.json, with `manifest` plus rows, columns and each file's SHA-256), swapped into place
    whole; the manifest written."""
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    con.execute(f"COPY (SELECT * FROM {table} ORDER BY person_id) TO '{tmp / FILES[0]}' (FORMAT parquet)")
    con.execute(f"COPY (SELECT * FROM {table} ORDER BY person_id) TO '{tmp / FILES[1]}' (FORMAT csv, HEADER)")
    manifest = {
        **manifest,
        "rows": con.execute(f"SELECT count(*) FROM {table}").fetchone()[0],
        "columns": [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()],
        "files": {name: {"sha256": _sha256_file(tmp / name), "bytes": (tmp / name).stat().st_size} for name in FILES},
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    _swap_in(tmp, target)
    return manifest


def _folders(exports_dir: Path) -> list[Path]:
    return sorted(p.parent for p in exports_dir.glob("*/*/manifest.json") if not p.parent.name.startswith("."))


def _drop_suppressed(con, folder: Path) -> int:
    """Load a folder's members into the temp table _export without suppressed persons; rows dropped."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE _export AS SELECT * FROM read_parquet('{folder / FILES[0]}')")
    return suppression.delete_suppressed(con, "_export", [r[0] for r in con.execute("DESCRIBE _export").fetchall()])


def export_traces(con: duckdb.DuckDBPyConnection, exports_dir: Path) -> dict[str, int]:
    """Rows of suppressed persons per export folder, temporaries included (the files are not changed)."""
    folders = sorted(p.parent for p in exports_dir.glob("*/*/" + FILES[0]))
    traces = {str(folder.relative_to(exports_dir)): _drop_suppressed(con, folder) for folder in folders}
    con.execute("DROP TABLE IF EXISTS _export")
    return traces


def scrub_audiences(con: duckdb.DuckDBPyConnection, exports_dir: Path) -> int:
    """Rewrite every export folder that holds a suppressed person without them, after deleting the
    leftovers of killed exports; rows removed."""
    remove_leftovers(exports_dir)
    removed = 0
    for folder in _folders(exports_dir):
        n = _drop_suppressed(con, folder)
        if not n:
            continue
        manifest = json.loads((folder / "manifest.json").read_text())
        write_folder(con, "_export", folder, {k: v for k, v in manifest.items() if k not in ("rows", "files")})
        removed += n
    con.execute("DROP TABLE IF EXISTS _export")
    return removed
