"""Sweeps on Ray (engine='ray'): runs side by side as Ray tasks on a local Ray on the CPU, each record written into the
index by the driver, a failed run (in its notebook, or a task that raises) recorded with its error while the others
finish, and the command line's --engine and --address."""
import json, os, subprocess, sys
from pathlib import Path
import pytest
from classmix_lab.config import ParameterError, load_settings
from classmix_lab.runner import run_sweep
from classmix_lab.index import read_index
from conftest import TINY
from training_helpers import checkpoint_of_other_settings

pytestmark = pytest.mark.slow
ray = pytest.importorskip('ray', reason="Ray is not installed (pip install 'classmix_lab[ray]')")
SMALL = dict(TINY, labeled='4', iterations=4, batch_size=4, batch_size_u=4, log_every=2)


@pytest.fixture(scope='module')
def local_ray():
    "One light local Ray for the module: two CPUs, no dashboard; run_sweep attaches to it and leaves it running."
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    try: yield ray
    finally: ray.shutdown()


def test_two_runs_side_by_side_on_local_ray(local_ray, lab_dirs):
    runs = [dict(SMALL, run='supervised', method='supervised'), dict(SMALL, run='classmix', method='classmix')]
    records = run_sweep('on-ray', runs, engine='ray', stream=False)
    assert [(r['run'], r['status']) for r in records] == [('supervised', 'ok'), ('classmix', 'ok')], records
    s = load_settings()
    index = {r['run']: r for r in read_index(s.reports_dir) if r['sweep'] == 'on-ray'}
    assert {k: r['status'] for k, r in index.items()} == {'supervised': 'ok', 'classmix': 'ok'}
    for r in index.values():
        assert 0 <= r['miou'] <= 100 and (s.reports_dir/r['report']).is_file() and (s.reports_dir/r['run_dir']/'metrics.json').is_file()
        assert (s.reports_dir/r['report']).read_text().count('data:image/png;base64,') >= 5
    # the two ran at the same time: each started (provenance.json) before the other finished (metrics.json)
    run = lambda n, f: (s.runs_dir/'on-ray'/n/f).stat().st_mtime
    assert run('supervised', 'provenance.json') < run('classmix', 'metrics.json') and run('classmix', 'provenance.json') < run('supervised', 'metrics.json')
    # started again on Ray, finished runs are skipped as they are locally: same results, reports untouched
    report_mtime = (s.reports_dir/index['classmix']['report']).stat().st_mtime_ns
    again = run_sweep('on-ray', runs, engine='ray', stream=False)
    assert [r['miou'] for r in again] == [r['miou'] for r in records]
    assert (s.reports_dir/index['classmix']['report']).stat().st_mtime_ns == report_mtime
    # a task that dies on a finished run (here: it cannot write the run's folder) leaves the finished run's record as it was
    prov = s.runs_dir/'on-ray'/'classmix'/'provenance.json'
    prov.unlink(); prov.mkdir()
    failed = run_sweep('on-ray', runs[1:], engine='ray', stream=False, force=True)[0]
    assert failed['status'] == 'failed' and 'cannot write' in failed['error']
    kept = next(r for r in read_index(s.reports_dir) if r['run'] == 'classmix')
    assert kept['status'] == 'ok' and kept['miou'] == records[1]['miou'] and (s.reports_dir/kept['report']).is_file()


def test_a_failed_run_is_recorded_and_the_others_finish(local_ray, lab_dirs):
    "One run fails in its notebook (a checkpoint of other settings), one in its Ray task (it cannot write its folder); the others finish."
    s = load_settings()
    checkpoint_of_other_settings(s.runs_dir/'fails'/'broken')
    (s.runs_dir/'fails'/'crash'/'provenance.json').mkdir(parents=True)     # a folder where run_one writes a file: the task raises
    runs = [dict(SMALL, run='baseline', method='supervised', iterations=100, log_every=50),   # longer than 'compared' alone takes
            dict(SMALL, run='compared', method='classmix', compare_with=['baseline']),          # so it must wait for 'baseline' to end
            dict(SMALL, run='broken', method='supervised'),
            dict(SMALL, run='crash', method='supervised', seed=1)]
    records = run_sweep('fails', runs, engine='ray', stream=False)
    assert [(r['run'], r['status']) for r in records] == [('baseline', 'ok'), ('compared', 'ok'), ('broken', 'failed'), ('crash', 'failed')]
    broken, crash = records[2], records[3]
    assert broken['error'].startswith('ParameterError:') and 'checkpoint was written by a run with other settings' in broken['error']
    assert (s.reports_dir/'fails'/'broken.html').is_file()                  # the partial notebook is still readable
    assert crash['error'].startswith('IsADirectoryError: [Errno 21] cannot write') and 'provenance.json' in crash['error'] and crash['miou'] is None
    index = {r['run']: r for r in json.loads((s.reports_dir/'index.json').read_text())['runs'] if r['sweep'] == 'fails'}
    assert {k: (r['status'], r['error']) for k, r in index.items()} == {r['run']: (r['status'], r['error']) for r in records}
    html = (s.reports_dir/'fails'/'compared.html').read_text()
    assert 'supervised (4 labeled)' in html and 'cannot compare' not in html   # 'baseline' had finished before it started
    assert 'checkpoint was written by a run with other settings' in (s.reports_dir/'index.html').read_text()


def test_bad_engine_settings_are_refused_before_anything_runs(local_ray, lab_dirs, monkeypatch):
    with pytest.raises(ParameterError, match="engine='dask' is not one of: local, ray"):
        run_sweep('bad', [dict(SMALL)], engine='dask')
    with pytest.raises(ParameterError, match="run 'supervised' needs a GPU .* this machine has none for Ray"):
        run_sweep('bad', [dict(SMALL, run='supervised', method='supervised')], engine='ray', ray_options={'num_gpus': 1})
    with pytest.raises(ParameterError, match="ray_options=4 must be a dict of Ray task options"):
        run_sweep('bad', [dict(SMALL, method='supervised')], engine='ray', ray_options=4)
    assert not (load_settings().reports_dir/'index.json').exists()          # nothing was recorded
    monkeypatch.setitem(sys.modules, 'ray', None)                          # as if Ray were not installed
    with pytest.raises(ParameterError, match=r"engine='ray' needs Ray, which is not installed: pip install 'classmix_lab\[ray\]'"):
        run_sweep('bad', [dict(SMALL)], engine='ray')


def test_the_command_line_runs_a_sweep_on_a_ray_cluster_by_address(local_ray, lab_dirs):
    "`classmix-lab sweep ... --engine ray --address ADDR` attaches to a running cluster (here the module's local Ray)."
    address = ray.get_runtime_context().gcs_address
    cli = str(Path(sys.executable).parent/'classmix-lab')
    args = [f'{k}={v}' for k, v in dict(SMALL, method='supervised', iterations=2).items()]
    res = subprocess.run([cli, 'sweep', 'cli-ray', *args, '--engine', 'ray', '--address', address], capture_output=True, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS='1'), timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert 'submitted to Ray (num_cpus=1)' in res.stdout and 'cli-ray: 1/1 runs ok' in res.stdout
    assert [(r['sweep'], r['status']) for r in read_index(load_settings().reports_dir)] == [('cli-ray', 'ok')]
    bad = subprocess.run([cli, 'methods', '--engine', 'spark'], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip() == "classmix-lab: error: engine='spark' is not one of: local, ray"
