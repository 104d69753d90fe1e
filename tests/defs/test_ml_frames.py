"""How the ML assets take frames from the engine: a fixed hash sample above TESSERA_ML_FRAME_ROWS,
and scoring in chunks that cover every person exactly once."""

from __future__ import annotations

import duckdb
import pytest

from orchestration.defs.ml.assets import _hash_range
from orchestration.lib.settings import SettingsError, reload_settings


@pytest.fixture(scope="module")
def persons():
    con = duckdb.connect()
    con.execute("CREATE TABLE f AS SELECT 'p_' || i AS person_id FROM range(20000) t(i)")
    yield con
    con.close()


def _selected(con, where: str) -> set[str]:
    return {row[0] for row in con.execute(f"SELECT f.person_id FROM f WHERE {where}").fetchall()}


@pytest.mark.parametrize("chunks", [1, 3, 7])
def test_scoring_chunks_cover_every_person_exactly_once(persons, chunks):
    parts = [_selected(persons, _hash_range(i / chunks, (i + 1) / chunks)) for i in range(chunks)]
    assert sum(len(p) for p in parts) == len(set().union(*parts)) == 20000
    assert min(len(p) for p in parts) > 20000 / chunks * 0.9


def test_a_training_sample_is_the_asked_share_and_the_same_on_every_run(persons):
    sample = _selected(persons, _hash_range(0, 0.25))
    assert 0.23 * 20000 < len(sample) < 0.27 * 20000
    assert sample == _selected(persons, _hash_range(0, 0.25))
    assert sample < _selected(persons, _hash_range(0, 0.5))  # a larger limit keeps the smaller sample


def test_the_frame_limit_is_validated(monkeypatch):
    monkeypatch.setenv("TESSERA_ML_FRAME_ROWS", "50")
    with pytest.raises(SettingsError, match="TESSERA_ML_FRAME_ROWS='50' must be a whole number of at least 1000"):
        reload_settings()
    monkeypatch.setenv("TESSERA_ML_FRAME_ROWS", "2_000_000")
    assert reload_settings().ml_frame_rows == 2_000_000
