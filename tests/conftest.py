"""Shared fixtures: every test gets its own runs/, reports/ and cache folders (through the settings' environment
overrides), so tests never touch the user's files and never depend on each other."""
import os, shutil, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
CAMVID = ROOT.parent/'shared'/'data'/'camvid'


@pytest.fixture(autouse=True)
def lab_dirs(tmp_path, monkeypatch):
    "Per-test runs/reports folders; one SynthStreets cache shared by the session (datasets are immutable once written)."
    monkeypatch.setenv('CLASSMIX_LAB_RUNS_DIR', str(tmp_path/'runs'))
    monkeypatch.setenv('CLASSMIX_LAB_REPORTS_DIR', str(tmp_path/'reports'))
    monkeypatch.setenv('CLASSMIX_LAB_CACHE_DIR', str(_session_cache()))
    monkeypatch.setenv('CLASSMIX_LAB_DEVICE', 'cpu')
    return tmp_path


_CACHE = None
def _session_cache():
    global _CACHE
    if _CACHE is None:
        import tempfile
        _CACHE = Path(tempfile.mkdtemp(prefix='classmix-lab-test-cache-'))
    return _CACHE


def pytest_sessionfinish(session, exitstatus):
    if _CACHE is not None: shutil.rmtree(_CACHE, ignore_errors=True)


#: a SynthStreets size small enough for tests that train
TINY = dict(height=48, width=96, n_train=24, n_val=8)
