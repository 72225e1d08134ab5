"""Faults a user can run into: names that escape their folders, runs that overwrite each other, failed attempts that
replace finished results, values that reach HTML unescaped, relative paths, bad split files, devices, argument order."""
import json, os
from pathlib import Path
import pytest
from classmix_lab.config import load_settings, ParameterError
from classmix_lab.runner import run_sweep
from classmix_lab.cli import main
from conftest import TINY

T = dict(TINY, iterations=2, batch_size=2, batch_size_u=2, log_every=1, workers=0, labeled='4')


@pytest.mark.parametrize('name', ['../../escape_run', '/tmp/abs_escape', '..', '.hidden', 'a/b', ''])
def test_run_names_cannot_escape_their_folders(lab_dirs, name, capsys):
    rc = main(['run', 'method=supervised', 'iterations=0', 'workers=0', '--sweep', 'sec', '--name', name])
    err = capsys.readouterr().err
    assert rc == 2 and f"run={name!r} must be letters, digits" in err and len(err.strip().splitlines()) == 1
    assert not (lab_dirs/'escape_run').exists() and not Path('/tmp/abs_escape').exists()
    assert not list((lab_dirs/'runs').glob('sec/*'))


def test_sweep_names_cannot_escape_their_folders(lab_dirs):
    for bad in ('..', '.', '.x'):
        with pytest.raises(ParameterError, match="sweep=.* must be letters, digits"): run_sweep(bad, [])


@pytest.mark.slow   # runs the experiment notebook
def test_unnamed_runs_get_distinct_nonempty_names(lab_dirs):
    a = run_sweep('noname', [dict(T, method='supervised', iterations=0)], stream=False)[0]
    b = run_sweep('noname', [dict(T, method='supervised', iterations=0, lr=0.001)], stream=False)[0]
    assert a['run'] and b['run'] and a['run'] != b['run'] and a['run'].startswith('supervised_labeled-4')
    assert a['status'] == b['status'] == 'ok'
    reports = lab_dirs/'reports'/'noname'
    assert (reports/f"{a['run']}.html").is_file() and (reports/f"{b['run']}.html").is_file() and not (reports/'.html').exists()
    assert not (lab_dirs/'runs'/'noname'/'metrics.json').exists()
    # the same parameters give the same name: the finished run is found again
    again = run_sweep('noname', [dict(T, method='supervised', iterations=0)], stream=False)[0]
    assert again['run'] == a['run']


def test_explicit_names_and_named_sweeps_keep_their_names():
    from classmix_lab.sweeps import demo_runs
    from classmix_lab.runner import default_run_name
    assert [r['run'] for r in demo_runs()] == ['sim-pretrained', 'supervised', 'full-supervision', 'classmix']
    assert default_run_name(dict(method='classmix', labeled='12', seed=1)) == 'classmix_labeled-12_seed-1'


@pytest.mark.slow   # runs the experiment notebook
def test_a_failed_attempt_keeps_the_finished_run(lab_dirs, capsys):
    ok = run_sweep('rn', [dict(T, run='r', method='supervised')], stream=False)[0]
    assert ok['status'] == 'ok'
    report, nb = lab_dirs/'reports'/'rn'/'r.html', lab_dirs/'runs'/'rn'/'r'/'experiment.ipynb'
    old = report.read_bytes(), nb.read_bytes(), (lab_dirs/'runs'/'rn'/'r'/'metrics.json').read_bytes()
    with pytest.raises(ParameterError, match=r"a finished run of other parameters \(iterations 2 -> 3\).*--force"):   # refused before it starts
        run_sweep('rn', [dict(T, run='r', method='supervised', iterations=3)], stream=False)
    assert (report.read_bytes(), nb.read_bytes(), (lab_dirs/'runs'/'rn'/'r'/'metrics.json').read_bytes()) == old
    rec = [r for r in json.loads((lab_dirs/'reports'/'index.json').read_text())['runs'] if r['run'] == 'r']
    assert len(rec) == 1 and rec[0]['status'] == 'ok' and rec[0]['miou'] == ok['miou']
    # (attempts that fail after they started keep the finished run too: tests/test_lifecycle.py)
    assert main(['run', *(f'{k}={v}' for k, v in T.items()), 'method=supervised', 'iterations=3', '--sweep', 'rn', '--name', 'r']) == 2   # a ParameterError inside the run: bad input


def _args(**kw): return [f'{k}={v}' for k, v in {**T, **kw}.items()]


def test_values_that_reach_html_are_escaped(lab_dirs, monkeypatch):
    from classmix_lab.index import write_index_html, record_for
    bad = '<script>alert(1)</script>'
    recs = [dict(record_for('s', 'r', 'experiment', dict(method='supervised', labeled=bad), 'failed', f'ParameterError: {bad}', lab_dirs/'runs',
                            lab_dirs/'x.html', lab_dirs, label=bad), status=bad),
            record_for(bad, bad, 'mask_gallery', dict(dataset=bad), 'failed', bad, lab_dirs/'runs', lab_dirs/'y.html', lab_dirs)]
    page = write_index_html(lab_dirs/'reports', recs).read_text()
    assert '<script>' not in page and '&lt;script&gt;' in page
    # a dataset_stats report shows the dataset root: here a path that spells a script tag
    import dataset_trees as trees
    from classmix_lab.sweeps import dataset_stats
    root = trees.camvid(lab_dirs/'<script>alert(1)<'/'script>camvid', size=(36, 48))
    monkeypatch.setenv('CLASSMIX_LAB_CAMVID_ROOT', str(root))
    dataset_stats([dict(run='c', dataset='camvid', grid_height=12, workers=1, n_examples=2)])
    html = (lab_dirs/'reports'/'dataset-stats'/'c.html').read_text()
    assert '&lt;script&gt;alert(1)&lt;/script&gt;camvid' in html and '<script>alert(1)' not in html


@pytest.mark.slow   # runs the experiment notebook
def test_relative_paths_are_resolved_against_the_working_folder(lab_dirs, monkeypatch):
    import shutil
    from classmix_lab.datasets import get_dataset
    from classmix_lab.experiment import pretrained_path
    monkeypatch.chdir(lab_dirs)
    names = get_dataset('synthstreets', 'train', style='real', height=T['height'], width=T['width'], n_train=T['n_train'], n_val=T['n_val']).names
    (lab_dirs/'my_split.txt').write_text('\n'.join(names[:4]) + '\n')
    shutil.copy(pretrained_path('synthstreets-sim'), lab_dirs/'init.pt')
    rec = run_sweep('rel', [dict(T, run='r', method='supervised', out_dir='myrun', labeled='my_split.txt', init='init.pt')], stream=False)[0]
    assert rec['status'] == 'ok', rec['error']
    assert (lab_dirs/'myrun'/'metrics.json').is_file() and not (lab_dirs/'myrun'/'myrun').exists()
    m = json.loads((lab_dirs/'myrun'/'metrics.json').read_text())
    assert m['n_labeled'] == 4 and Path(m['init']['file']).resolve() == (lab_dirs/'init.pt').resolve()


def test_a_split_file_with_a_name_twice_is_refused(lab_dirs, capsys):
    f = lab_dirs/'twice.txt'
    f.write_text('a.png\nb.png\na.png\n')
    assert main(['run', *_args(method='supervised', labeled=str(f)), '--sweep', 'dup']) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(f) in err and "'a.png' is listed 2 times (lines 1, 3)" in err


def test_an_unavailable_device_is_refused_before_anything_runs(lab_dirs, capsys):
    import torch
    if torch.backends.mps.is_available(): pytest.skip('this machine has MPS')
    assert main(['run', *_args(method='supervised', device='mps'), '--sweep', 'dev']) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "device='mps': Apple's MPS is not available" in err
    assert not (lab_dirs/'reports'/'index.json').exists()


def test_parameters_in_any_order(lab_dirs, capsys):
    assert main(['run', '--name', 'x', 'method=fixmatch']) == 2
    assert "method='fixmatch' is not one of" in capsys.readouterr().err
    assert main(['run', 'method=supervised', '--name', 'x', 'bogus']) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'bogus': not an option or a key=value parameter of 'run'" in err
    assert main(['index', 'x=1']) == 2


@pytest.mark.slow   # runs the experiment notebook
def test_a_damaged_checkpoint_is_named_before_the_run_starts(lab_dirs, capsys):
    args = ['run', *_args(method='supervised'), '--sweep', 'ck', '--name', 'r']
    assert main(args) == 0
    ck = lab_dirs/'runs'/'ck'/'r'/'checkpoint.pt'
    ck.write_bytes(ck.read_bytes()[:100]); (lab_dirs/'reports'/'ck'/'r.html').unlink()   # an interrupted run, its checkpoint cut short
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{ck}: damaged checkpoint" in err and 'delete it' in err and 'Traceback' not in err
    ck.with_name('checkpoint.previous.pt').write_bytes(b'')
    assert main(args) == 2 and 'checkpoint.previous.pt' in capsys.readouterr().err


@pytest.mark.slow   # runs the experiment notebook
def test_a_broken_index_is_named_never_overwritten_and_can_be_rebuilt(lab_dirs, capsys):
    assert main(['run', *_args(method='supervised', iterations=0), '--sweep', 'ix', '--name', 'r']) == 0
    f = lab_dirs/'reports'/'index.json'
    f.write_text('this is {not json')
    capsys.readouterr()
    for args in (['index'], ['run', *_args(method='supervised', iterations=0), '--sweep', 'ix', '--name', 'r2']):
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f'{f}: not valid JSON at line 1' in err and '--rebuild' in err
        assert f.read_text() == 'this is {not json'
    f.write_text(json.dumps(dict(runs=[dict(sweep='ix', template='experiment', params={}, status='ok')])))
    assert main(['index']) == 2 and "record 1 of 'runs' has no 'run'" in capsys.readouterr().err
    f.write_text('this is {not json')
    assert main(['index', '--rebuild']) == 0
    recs = json.loads(f.read_text())['runs']
    assert [(r['sweep'], r['run'], r['status']) for r in recs] == [('ix', 'r', 'ok')] and recs[0]['miou'] is not None
    assert (lab_dirs/'reports'/'index.json.bak').read_text() == 'this is {not json'


def test_bad_input_found_inside_the_notebook_exits_2(lab_dirs, capsys):
    (lab_dirs/'corrupt.pt').write_bytes(b'this is not a checkpoint')
    assert main(['run', *_args(method='supervised', init=str(lab_dirs/'corrupt.pt')), '--sweep', 'ex', '--name', 'r']) == 2


def test_an_unreadable_metrics_file_is_named_and_kept(lab_dirs):
    d = lab_dirs/'runs'/'mx'/'r'; d.mkdir(parents=True); (d/'metrics.json').write_text('{oops')
    (lab_dirs/'reports'/'mx').mkdir(parents=True); (lab_dirs/'reports'/'mx'/'r.html').write_text('<html></html>')
    with pytest.raises(ParameterError, match=r"metrics.json: not a valid metrics file .*line 1.*move it away"):
        run_sweep('mx', [dict(T, run='r', method='supervised')], stream=False)
    assert (d/'metrics.json').read_text() == '{oops'


def test_stats_and_pretrain_exit_statuses_tell_what_went_wrong(lab_dirs, monkeypatch, capsys):
    monkeypatch.setenv('CLASSMIX_LAB_CAMVID_ROOT', str(lab_dirs/'no-camvid-here'))
    assert main(['stats', 'dataset=camvid', 'workers=1', '--name', 'c']) == 2   # the notebook cannot open the dataset: bad input
    rec = json.loads((lab_dirs/'reports'/'index.json').read_text())['runs'][0]
    assert rec['status'] == 'failed' and rec['error'].startswith('DatasetError')
    assert main(['pretrain', 'iterations']) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines()[-1] == "classmix-lab: error: 'iterations' is neither a start to pretrain (synthstreets-sim, synthstreets-camvid) nor key=value"


@pytest.mark.slow   # runs the experiment notebook
def test_a_run_started_twice_at_once_is_refused_naming_the_holder(lab_dirs, capsys):
    "The second start of a run whose folder another process holds says which process, and exits with 2; nothing is written."
    import subprocess, sys, time
    run_dir = lab_dirs/'runs'/'twice'/'r'
    holder = subprocess.Popen([sys.executable, '-c', f"""
import time
from classmix_lab.runner import lock_run_folders
with lock_run_folders([{str(run_dir)!r}]):
    print('held', flush=True); time.sleep(60)
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'held'
        rc = main(['run', 'method=supervised', 'iterations=0', 'workers=0', '--sweep', 'twice', '--name', 'r'])
        err = capsys.readouterr().err
        assert rc == 2 and f"is in use by process {holder.pid}" in err and len(err.strip().splitlines()) == 1
        assert sorted(p.name for p in run_dir.iterdir()) == ['.run.lock'] and not (lab_dirs/'reports'/'index.json').exists()
    finally:
        holder.kill(); holder.wait()
    assert main(['run', 'method=supervised', 'iterations=0', 'workers=0', '--sweep', 'twice', '--name', 'r'] + [f'{k}={v}' for k, v in T.items() if k != 'iterations']) == 0


def test_a_full_disk_while_a_checkpoint_is_written_keeps_the_previous_one(tmp_path):
    "The disk fills while step 4's checkpoint is written: the error names the file, step 2's checkpoint is whole and resumable."
    import errno, unittest.mock, torch
    from classmix_lab.data import TensorBatches
    from classmix_lab.model import get_model
    from classmix_lab.train import Trainer, TrainConfig
    def trainer():
        torch.manual_seed(0)
        x, y = torch.randint(0, 255, (4, 3, 16, 16), dtype=torch.uint8), torch.randint(0, 2, (4, 16, 16), dtype=torch.uint8)
        return Trainer(get_model('deeplabv2-tiny', 2, width=8), TensorBatches(x, y, 2, seed=0), config=TrainConfig(iterations=4, lr=0.01, checkpoint_every=2),
                       checkpoint=tmp_path/'checkpoint.pt', progress=None)
    real, calls = os.fsync, []
    def fsync(fd):
        calls.append(fd)
        if len(calls) == 2: raise OSError(errno.ENOSPC, 'No space left on device')
        return real(fd)
    with unittest.mock.patch('os.fsync', fsync), pytest.raises(OSError, match=r"checkpoint.pt \(No space left on device\); its previous version is kept"):
        trainer().fit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['checkpoint.pt']
    assert torch.load(tmp_path/'checkpoint.pt', weights_only=True)['iteration'] == 2
    again = trainer(); again.fit(); assert again.iteration == 4
