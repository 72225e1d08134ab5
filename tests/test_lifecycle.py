"""A run's life: a run that diverges never passes as a result; a finished run is never replaced by a run of other
parameters, nor lost to an attempt that fails, is killed or fills the disk; a folder linked out of runs/ is never
written; Ctrl-C stops with one line and a folder that resumes; damaged files in a run folder are named; and
`index --rebuild` keeps every record."""
import json, os, re, shutil, signal, subprocess, sys, textwrap, time
from pathlib import Path
import pytest, torch
from classmix_lab.config import ParameterError
from classmix_lab.runner import run_sweep
from classmix_lab.cli import main
from conftest import TINY, _session_cache

T = dict(TINY, iterations=2, batch_size=2, batch_size_u=2, log_every=1, workers=0, labeled='4')
CLI = str(Path(sys.executable).parent/'classmix-lab')


def _args(**kw): return [f'{k}={v}' for k, v in {**T, **kw}.items()]

def _error_line(capsys) -> str:
    "The one line a refused command printed."
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]

def _strict_json_lines(f:Path) -> list:
    "The rows of a JSON-lines file, refusing NaN and Infinity (which are not JSON)."
    def refuse(c): raise AssertionError(f"{f}: {c} is not JSON")
    return [json.loads(l, parse_constant=refuse) for l in f.read_text().splitlines() if l.strip()]

def _index(lab:Path) -> dict:
    return {r['run']: r for r in json.loads((lab/'reports'/'index.json').read_text())['runs']}

def kernel_fault(monkeypatch, tmp_path, code:str):
    "Run `code` in every notebook kernel this test starts, before the notebook's first cell (IPython runs $PYTHONSTARTUP)."
    f = tmp_path/'kernel_fault.py'
    f.write_text(textwrap.dedent(code))
    monkeypatch.setenv('PYTHONSTARTUP', str(f))


# --- 1. a run that diverges -------------------------------------------------------------------------------------------

@pytest.mark.parametrize('kw, name', [
    (dict(lr='inf'), 'lr'), (dict(lr='-inf'), 'lr'), (dict(lr='nan'), 'lr'), (dict(lr='3e38'), 'lr'),
    (dict(method='classmix', lambda_u='inf'), 'lambda_u'), (dict(method='classmix', method_args='{"lambda_u": Infinity}'), 'lambda_u'),
    (dict(method='classmix', tau='nan'), 'tau'), (dict(ema_alpha='inf'), 'ema_alpha'), (dict(image_scale='inf'), 'image_scale'),
    (dict(method='classmix', align_alpha='inf'), 'align_alpha'), (dict(method='structured', lambda_sc='inf'), 'lambda_sc'),
    (dict(method='cowmix', sigma='inf:32'), 'sigma'),
])
def test_infinite_values_are_refused_before_anything_runs(lab_dirs, capsys, kw, name):
    assert main(['run', *_args(**kw), '--sweep', 'inf', '--name', 'r']) == 2
    line = _error_line(capsys)
    assert line.startswith(f'classmix-lab: error: {name}=') or f' {name}=' in line, line
    assert not (lab_dirs/'reports'/'index.json').exists()


def test_other_templates_refuse_infinite_values(lab_dirs, capsys):
    assert main(['pretrain', 'lr=inf', 'iterations=2']) == 2
    assert _error_line(capsys) == 'classmix-lab: error: lr=inf must be a finite number'
    assert not (lab_dirs/'reports'/'index.json').exists()


def test_training_settings_refuse_infinite_values():
    from classmix_lab.train import TrainConfig
    from classmix_lab.methods.registry import make_method
    for k in ('lr', 'momentum', 'weight_decay', 'poly_power', 'classifier_lr_mult'):
        with pytest.raises(ParameterError, match=f"{k}=inf must be a finite number"): TrainConfig(**{k: float('inf')})
    with pytest.raises(ParameterError, match="lambda_u=inf must be a finite number"): make_method('classmix', lambda_u=float('inf'))
    with pytest.raises(ParameterError, match="lambda_u='Infinity' must be a finite number"): make_method('classmix', lambda_u='Infinity')


def test_a_start_whose_weights_are_not_finite_is_refused(lab_dirs, capsys):
    from classmix_lab.experiment import pretrained_path
    ck = torch.load(pretrained_path('synthstreets-sim'), weights_only=True)
    key = next(k for k, v in ck['state_dict'].items() if v.is_floating_point())
    ck['state_dict'][key] = torch.full_like(ck['state_dict'][key], float('nan'))
    torch.save(ck, lab_dirs/'diverged.pt')
    assert main(['run', *_args(method='supervised', init=str(lab_dirs/'diverged.pt')), '--sweep', 'nan', '--name', 'r']) == 2
    line = _error_line(capsys)
    assert f"{lab_dirs/'diverged.pt'}" in line and repr(key) in line and 'not finite' in line, line
    assert not (lab_dirs/'reports'/'index.json').exists() and not list((lab_dirs/'runs').rglob('*.json'))


def _tiny_trainer(tmp_path, lr, iterations, **kw):
    from classmix_lab.data import TensorBatches
    from classmix_lab.model import get_model
    from classmix_lab.train import Trainer, TrainConfig
    torch.manual_seed(0)
    x, y = torch.randint(0, 255, (4, 3, 16, 16), dtype=torch.uint8), torch.randint(0, 2, (4, 16, 16), dtype=torch.uint8)
    return Trainer(get_model('deeplabv2-tiny', 2, width=8), TensorBatches(x, y, 2, seed=0), config=TrainConfig(iterations=iterations, lr=lr, **kw),
                   checkpoint=tmp_path/'checkpoint.pt', log_file=tmp_path/'log.jsonl', progress=None)


def test_a_loss_that_is_not_finite_stops_training(tmp_path):
    "lr=1e30 makes the weights infinite at the first step and the loss NaN at the second: training stops there."
    from classmix_lab.train import RunDiverged
    t = _tiny_trainer(tmp_path, 1e30, 6, log_every=1)
    with pytest.raises(RunDiverged, match=r"the loss is not finite at iteration 2 \(nan\); the last finite losses: 0\.\d+ \(iteration 1\)"):
        t.fit()
    assert t.iteration == 2 and not (tmp_path/'checkpoint.pt').exists()
    rows = _strict_json_lines(tmp_path/'log.jsonl')
    assert [r['iteration'] for r in rows] == [1, 2] and isinstance(rows[0]['loss'], float) and rows[1]['loss'] is None


def test_weights_that_are_not_finite_stop_training_with_a_finite_loss(tmp_path, monkeypatch):
    "The last step's loss is finite, but its update is not (here, made so by hand): no checkpoint of it is written."
    from classmix_lab.train import RunDiverged, Trainer
    step = Trainer.step
    def overflowing(self, k):
        step(self, k)
        with torch.no_grad(): next(self.model.parameters()).view(-1)[0] = float('inf')
    monkeypatch.setattr(Trainer, 'step', overflowing)
    t = _tiny_trainer(tmp_path, 0.01, 1)
    with pytest.raises(RunDiverged, match=r"the weights are not finite after iteration 1 \(the last finite losses: 0\.\d+ \(iteration 1\)\)"):
        t.fit()
    assert not (tmp_path/'checkpoint.pt').exists()
    assert all(isinstance(r['loss'], float) for r in _strict_json_lines(tmp_path/'log.jsonl'))


# --- 5. folders that are not the lab's --------------------------------------------------------------------------------

def _precious(lab_dirs) -> Path:
    user = lab_dirs/'home'/'notes'
    user.mkdir(parents=True)
    (user/'metrics.json').write_text('{"precious": true}'); (user/'notes.txt').write_text('mine')
    return user

def _unchanged(user:Path):
    assert sorted(p.name for p in user.iterdir()) == ['metrics.json', 'notes.txt']
    assert (user/'metrics.json').read_text() == '{"precious": true}' and (user/'notes.txt').read_text() == 'mine'


def test_a_run_folder_linked_out_of_runs_is_never_written(lab_dirs, capsys):
    user = _precious(lab_dirs)
    (lab_dirs/'runs'/'sym').mkdir(parents=True)
    (lab_dirs/'runs'/'sym'/'linkrun').symlink_to(user)
    assert main(['run', *_args(method='supervised'), '--sweep', 'sym', '--name', 'linkrun']) == 2
    line = _error_line(capsys)
    assert f"{lab_dirs/'runs'/'sym'/'linkrun'}: a link to {user}, outside the runs folder" in line, line
    _unchanged(user)
    # a sweep folder linked out of the reports folder: the reports would be written there
    (lab_dirs/'reports').mkdir(exist_ok=True); (lab_dirs/'reports'/'sym2').symlink_to(user)
    assert main(['run', *_args(method='supervised'), '--sweep', 'sym2', '--name', 'r']) == 2
    assert f"{lab_dirs/'reports'/'sym2'}: a link to {user}, outside the reports folder" in _error_line(capsys)
    _unchanged(user)
    assert not (lab_dirs/'reports'/'index.json').exists()


def test_a_metrics_file_that_is_not_the_labs_is_never_taken_for_a_run(lab_dirs, capsys):
    user = _precious(lab_dirs)
    assert main(['run', *_args(method='supervised', out_dir=str(user)), '--sweep', 'own', '--name', 'r']) == 2
    line = _error_line(capsys)
    assert f"{user/'metrics.json'}: not a metrics file of the lab" in line, line
    _unchanged(user)


# --- 9. damaged files inside a run folder -----------------------------------------------------------------------------

class Payload:
    def __reduce__(self): return (print, ('this ran',))

def _model_file(path):
    from classmix_lab.model import get_model
    m = get_model('deeplabv2-tiny', 11)
    torch.save(dict(state_dict=m.state_dict(), model='deeplabv2-tiny', num_classes=11), path)

@pytest.mark.parametrize('damage, says', [
    ('provenance', "provenance.json: not valid JSON (Expecting value at line 1); it should hold what the run's results rest on"),
    ('weights', "checkpoint.pt: not a training checkpoint of the lab (it has no 'iteration', 'student', 'teacher', 'config', 'method'"),
    ('pickle', "checkpoint.pt: not a checkpoint the lab reads: it holds Python objects besides tensors and plain values"),
])
def test_damaged_files_in_a_run_folder_are_named(lab_dirs, capsys, damage, says):
    d = lab_dirs/'runs'/'dmg'/'r'; d.mkdir(parents=True)
    if damage == 'provenance': (d/'provenance.json').write_text('garbage {')
    if damage == 'weights': _model_file(d/'checkpoint.pt')
    if damage == 'pickle': torch.save({'iteration': Payload()}, d/'checkpoint.pt')
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    assert main(['run', *_args(method='supervised'), '--sweep', 'dmg', '--name', 'r']) == 2
    line = _error_line(capsys)
    assert f"{d}/{says}" in line and 'weights_only' not in line and 'this ran' not in line, line
    assert {p.name: p.read_bytes() for p in d.iterdir() if p.name != '.run.lock'} == before


def test_a_start_with_python_objects_is_refused_without_relaying_torch(lab_dirs, capsys):
    torch.save({'state_dict': Payload()}, lab_dirs/'payload.pt')
    assert main(['run', *_args(method='supervised', init=str(lab_dirs/'payload.pt')), '--sweep', 'pk', '--name', 'r']) == 2
    line = _error_line(capsys)
    assert f"{lab_dirs/'payload.pt'}: not a checkpoint the lab reads: it holds Python objects" in line and 'weights_only' not in line, line
    assert 'this ran' not in capsys.readouterr().out


def test_the_trainer_refuses_a_checkpoint_of_another_kind(tmp_path):
    _model_file(tmp_path/'checkpoint.pt')
    with pytest.raises(ParameterError, match=r"checkpoint.pt: not a training checkpoint of the lab \(it has no 'iteration'"):
        _tiny_trainer(tmp_path, 0.01, 2).fit()


def test_a_damaged_metrics_file_is_named(lab_dirs, capsys):
    d = lab_dirs/'runs'/'m'/'r'; d.mkdir(parents=True); (d/'metrics.json').write_text('{"miou": ')
    assert main(['evaluate', str(d)]) == 2
    assert f"{d/'metrics.json'}: not valid JSON" in _error_line(capsys)


# --- a finished run, shared by the tests below (each copies it) -------------------------------------------------------

@pytest.fixture(scope='module')
def finished(tmp_path_factory):
    "runs/f/ref and reports/f/ref.html: a finished ClassMix run (labelled), in a lab folder the tests copy."
    d = tmp_path_factory.mktemp('finished')
    env = dict(CLASSMIX_LAB_RUNS_DIR=str(d/'runs'), CLASSMIX_LAB_REPORTS_DIR=str(d/'reports'),
               CLASSMIX_LAB_CACHE_DIR=str(_session_cache()), CLASSMIX_LAB_DEVICE='cpu')
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        rec = run_sweep('f', [dict(T, run='ref', method='classmix', label='ClassMix, 4 labels')], stream=False)[0]
        assert rec['status'] == 'ok', rec['error']
    finally:
        for k, v in old.items():
            if v is None: os.environ.pop(k, None)
            else: os.environ[k] = v
    return d

def _copy(finished, lab) -> Path:
    for f in ('runs', 'reports'): shutil.copytree(finished/f, lab/f, symlinks=True)
    return lab/'runs'/'f'/'ref'

def _files(d:Path) -> dict:
    return {p.name: p.read_bytes() for p in d.iterdir() if p.is_file() and p.name != '.run.lock'}


# --- 2. a name reused -------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_finished_run_is_never_replaced_by_other_parameters(finished, lab_dirs, capsys):
    run = _copy(finished, lab_dirs)
    (run/'checkpoint.pt').unlink()   # deleted to save space: only metrics.json says what the run was
    before, index = _files(run), (lab_dirs/'reports'/'index.json').read_text()
    assert main(['run', *_args(method='supervised'), '--sweep', 'f', '--name', 'ref']) == 2
    line = _error_line(capsys)
    assert f"{run}: a finished run of other parameters (method classmix -> supervised)" in line and '--force' in line and 'another --name' in line, line
    assert main(['run', *_args(method='classmix', iterations=3), '--sweep', 'g', '--name', 'q', f'out_dir={run}']) == 2
    assert "a finished run of other parameters (iterations 2 -> 3)" in _error_line(capsys)
    assert _files(run) == before and (lab_dirs/'reports'/'index.json').read_text() == index
    assert main(['run', *_args(method='classmix'), '--sweep', 'f', '--name', 'ref']) == 0   # its own parameters: finished, skipped
    assert 'already finished: skipped' in capsys.readouterr().out
    assert {k: v for k, v in _files(run).items() if k != 'record.json'} == {k: v for k, v in before.items() if k != 'record.json'}


def test_how_a_run_executes_is_no_other_parameter(lab_dirs):
    from dataclasses import asdict
    from classmix_lab.experiment import ExperimentParams
    from classmix_lab.runner import check_run_folder
    d, given = lab_dirs/'r', dict(T, method='supervised')
    d.mkdir(); (d/'metrics.json').write_text(json.dumps(dict(params=asdict(ExperimentParams.from_dict(given)), status='ok', miou=1.)))
    assert check_run_folder(d, dict(given, workers=3, log_every=7, checkpoint_every=1, device='cpu'))
    with pytest.raises(ParameterError, match=r"a finished run of other parameters \(lr 0.0025 -> 0.5\)"): check_run_folder(d, dict(given, lr=0.5))
    # a pretraining run records the parameters of its experiment: the template's own (weights_name, install) are not compared
    assert check_run_folder(d, dict(iterations=2, weights_name='synthstreets-sim', install=False), 'pretrain')
    with pytest.raises(ParameterError, match=r"\(iterations 2 -> 3\)"): check_run_folder(d, dict(iterations=3), 'pretrain')


# --- 4. attempts that fail --------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_bad_start_beside_a_finished_run_touches_nothing(finished, lab_dirs, capsys):
    run = _copy(finished, lab_dirs)
    (run/'checkpoint.previous.pt').write_bytes(b'set aside by an earlier --force')
    (lab_dirs/'cut.pt').write_bytes((run/'model.pt').read_bytes()[:2000])
    before = _files(run)
    assert main(['run', *_args(method='classmix', init=str(lab_dirs/'cut.pt')), '--sweep', 'f', '--name', 'ref', '--force']) == 2
    cap = capsys.readouterr()
    assert f"{lab_dirs/'cut.pt'}: not a loadable checkpoint" in cap.err and len(cap.err.strip().splitlines()) == 1 and 'set aside' not in cap.out
    assert _files(run) == before
    assert main(['run', *_args(method='classmix', init=str(lab_dirs/'cut.pt')), '--sweep', 'f', '--name', 'ref']) == 2   # without --force
    cap = capsys.readouterr()
    assert len(cap.err.strip().splitlines()) == 1 and 'set aside' not in cap.out and _files(run) == before, cap.err


_KILL_AFTER_ONE_ROW = """
import os, signal, classmix_lab.train as t
_log_row = t._log_row
def _kill_at_the_second(self, k):
    if k >= 2: os.kill(os.getpid(), signal.SIGKILL)
    return _log_row(self, k)
t._log_row = _kill_at_the_second
"""

_FULL_DISK_AT_MODEL_PT = """
import errno, os, torch
_save = torch.save
def save(obj, f, *a, **kw):
    if isinstance(f, (str, os.PathLike)) and str(f).endswith('model.pt.tmp'):
        open(f, 'wb').write(b'the first bytes')
        raise OSError(errno.ENOSPC, 'No space left on device')
    return _save(obj, f, *a, **kw)
torch.save = save
"""

@pytest.mark.slow
def test_failed_attempts_keep_every_file_of_the_finished_run(finished, lab_dirs, monkeypatch, capsys):
    run = _copy(finished, lab_dirs)
    (run/'checkpoint.previous.pt').write_bytes(b'set aside by an earlier --force')
    before, record = _files(run), _index(lab_dirs)['ref']
    args = ['run', *_args(method='classmix'), '--sweep', 'f', '--name', 'ref', '--force']
    for fault in (_KILL_AFTER_ONE_ROW, _FULL_DISK_AT_MODEL_PT):
        kernel_fault(monkeypatch, lab_dirs, fault)
        assert main(args) == 1
        after = _files(run)
        assert set(after) - set(before) <= {'experiment.failed.ipynb'} and not list(run.glob('.*.tmp')) and not (run/'.kept').exists()
        assert {k: v for k, v in after.items() if k in before} == before
        assert _index(lab_dirs)['ref'] == record
        assert "the finished run's report, notebook and record are kept" in capsys.readouterr().out
    monkeypatch.delenv('PYTHONSTARTUP')
    assert main(args) == 0   # an attempt that finishes replaces the run; every checkpoint set aside is kept, numbered
    assert (run/'checkpoint.previous.pt').read_bytes() == b'set aside by an earlier --force'
    assert (run/'checkpoint.previous-2.pt').read_bytes() == before['checkpoint.pt']
    assert "checkpoint.pt set aside as checkpoint.previous-2.pt" in capsys.readouterr().out
    assert _index(lab_dirs)['ref']['status'] == 'ok' and (run/'metrics.json').read_bytes() != before['metrics.json']   # (its timings)
    assert (run/'model.pt').read_bytes() == before['model.pt']   # trained again from the start, to the same weights


# --- 1. a run that diverges, through the command ----------------------------------------------------------------------

@pytest.mark.slow
def test_a_diverging_run_is_recorded_failed_never_ok(lab_dirs, capsys):
    assert main(['run', *_args(method='classmix', lr='1e30'), '--sweep', 'dv', '--name', 'r']) == 1
    out = capsys.readouterr().out
    rec = _index(lab_dirs)['r']
    assert rec['status'] == 'failed' and rec['miou'] is None
    assert re.match(r"RunDiverged: the loss is not finite at iteration 2 \(nan\); the last finite losses: [\d.]+ \(iteration 1\)", rec['error']), rec['error']
    assert f"failed: {rec['error']}" in out and 'Traceback' not in out
    run = lab_dirs/'runs'/'dv'/'r'
    assert not (run/'metrics.json').exists() and not (run/'model.pt').exists()
    assert [r['iteration'] for r in _strict_json_lines(run/'log.jsonl')] == [1, 2]


# --- 8. Ctrl-C ----------------------------------------------------------------------------------------------------------

def _start(args, sigint=signal.SIG_DFL):
    """The CLI in the background, with SIGINT as a terminal gives it (`sigint`): a test suite started as a background job
    (`make test &`) passes SIGINT on ignored, and a process that starts with SIGINT ignored keeps ignoring it."""
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    return subprocess.Popen([CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, sigint))

def _wait_rows(log:Path, n:int, proc):
    for _ in range(1200):
        if log.is_file() and len(log.read_text().splitlines()) >= n: return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError(f'{log}: fewer than {n} rows after 120 s')

@pytest.mark.slow
@pytest.mark.parametrize('to', ['cli', 'cli and kernel'])
def test_ctrl_c_stops_with_one_line_and_the_run_resumes(lab_dirs, to):
    import psutil
    args = ['run', *_args(method='supervised', iterations=300, checkpoint_every=2), '--sweep', 'ci', '--name', 'r']
    run = lab_dirs/'runs'/'ci'/'r'
    proc = _start(args)
    _wait_rows(run/'log.jsonl', 5, proc)
    if to == 'cli and kernel':
        kernel = next(c for c in psutil.Process(proc.pid).children(recursive=True) if 'ipykernel_launcher' in ' '.join(c.cmdline()))
        kernel.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-2000:] + err[-3000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    m = re.fullmatch(r"classmix-lab: interrupted at iteration (\d+); the checkpoint at iteration (\d+) is kept; run the same command to resume", lines[0])
    assert m, lines[0]
    k, j = int(m[1]), int(m[2])
    assert 5 <= k < 300 and 0 < j <= k and j % 2 == 0
    assert torch.load(run/'checkpoint.pt', weights_only=True)['iteration'] == j
    assert 'Traceback' not in out
    rec = _index(lab_dirs)['r']
    assert rec['status'] == 'interrupted' and rec['error'] == lines[0].removeprefix('classmix-lab: ')
    assert json.loads((run/'record.json').read_text())['status'] == 'interrupted'
    if to == 'cli':   # the same command resumes from the checkpoint and finishes the run
        res = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=600, env={**os.environ, 'OMP_NUM_THREADS': '1'})
        assert res.returncode == 0 and f"resumed from {run/'checkpoint.pt'} at iteration {j}" in res.stdout, res.stdout[-2000:] + res.stderr[-2000:]
        assert _index(lab_dirs)['r']['status'] == 'ok'


@pytest.mark.slow
def test_a_run_started_with_ctrl_c_ignored_ignores_it(lab_dirs):
    "`classmix-lab sweep ... &` from a script (SIGINT ignored, as for `nohup`) is not stopped by a Ctrl-C meant for the terminal's foreground job."
    run = lab_dirs/'runs'/'ci'/'r'
    proc = _start(['run', *_args(method='supervised', iterations=12), '--sweep', 'ci', '--name', 'r'], sigint=signal.SIG_IGN)
    _wait_rows(run/'log.jsonl', 3, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-2000:] + err[-3000:]
    assert _index(lab_dirs)['r']['status'] == 'ok' and len(_strict_json_lines(run/'log.jsonl')) >= 12


def test_after_ctrl_c_asyncio_says_nothing_of_the_cells_it_stopped():
    "asyncio's 'Task exception was never retrieved' for the cell Ctrl-C stopped (in the CLI, the kernel or both) is dropped; other notes are kept."
    import logging
    from nbclient.exceptions import CellExecutionError, DeadKernelError
    from classmix_lab.runner import _INTERRUPTED, _not_after_ctrl_c
    def note(exc):
        return logging.LogRecord('asyncio', logging.ERROR, __file__, 1, 'Task exception was never retrieved', None, (type(exc), exc, None))
    cell, dead, other = CellExecutionError('KeyboardInterrupt', 'KeyboardInterrupt', ''), DeadKernelError('Kernel died'), OSError('a socket')
    try:
        _INTERRUPTED.clear()
        assert all(_not_after_ctrl_c(note(e)) for e in (cell, dead, KeyboardInterrupt(), other))   # no Ctrl-C: every note is kept
        _INTERRUPTED.set()
        assert not any(_not_after_ctrl_c(note(e)) for e in (cell, dead, KeyboardInterrupt()))
        assert _not_after_ctrl_c(note(other)) and _not_after_ctrl_c(logging.LogRecord('asyncio', logging.ERROR, __file__, 1, 'no exc', None, None))
    finally: _INTERRUPTED.clear()


# --- 15. the kernel's shutdown --------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_no_interrupt_reaches_a_kernel_that_finished(lab_dirs, monkeypatch, capfd):
    marker = lab_dirs/'sigint'
    kernel_fault(monkeypatch, lab_dirs, f"""
    import signal, pathlib
    signal.signal(signal.SIGINT, lambda *a: pathlib.Path({str(marker)!r}).write_text('SIGINT'))
    """)
    assert main(['run', *_args(method='supervised', iterations=0), '--sweep', 'q', '--name', 'r']) == 0
    time.sleep(1)
    cap = capfd.readouterr()
    assert not marker.exists() and 'KeyboardInterrupt' not in cap.err + cap.out and '[IPKernelApp] ERROR' not in cap.err + cap.out


# --- 14. index --rebuild ------------------------------------------------------------------------------------------------

_FAIL_AND_INTERRUPT = """
import os, classmix_lab.experiment as E
_run = E.run_experiment
def run_experiment(p, progress='log'):
    here = os.path.basename(os.getcwd())
    if here == 'fail': raise RuntimeError('the GPU fell off')
    if here == 'int': raise KeyboardInterrupt
    return _run(p, progress)
E.run_experiment = run_experiment
"""

@pytest.mark.slow
def test_index_rebuild_keeps_every_record(lab_dirs, monkeypatch, capsys):
    kernel_fault(monkeypatch, lab_dirs, _FAIL_AND_INTERRUPT)
    runs = [dict(T, run='ok', method='supervised', label='Supervised, 4 labels'),
            dict(T, run='out', method='supervised', seed=1, out_dir=str(lab_dirs/'elsewhere'/'out')),
            dict(T, run='fail', method='supervised', seed=2), dict(T, run='int', method='supervised', seed=3)]
    with pytest.raises(KeyboardInterrupt, match='interrupted before training began'): run_sweep('rb', runs, stream=False)
    known = _index(lab_dirs)
    assert {k: (r['status'], r['error']) for k, r in known.items()} == {
        'ok': ('ok', None), 'out': ('ok', None), 'fail': ('failed', 'RuntimeError: the GPU fell off'),
        'int': ('interrupted', 'interrupted before training began; run the same command to start again')}
    shutil.copytree(lab_dirs/'runs'/'rb'/'ok', lab_dirs/'runs'/'rb'/'ok-copy')   # a stray copy is not a run
    keys = ('sweep', 'run', 'label', 'status', 'error', 'miou', 'run_dir', 'report')
    view = lambda recs: {k: {f: r.get(f) for f in keys} for k, r in recs.items()}
    assert main(['index', '--rebuild']) == 0
    assert view(_index(lab_dirs)) == view(known)
    (lab_dirs/'reports'/'index.json').write_text('{not json')   # what the folders record, without the index
    assert main(['index', '--rebuild']) == 0
    assert view(_index(lab_dirs)) == {k: v for k, v in view(known).items() if k != 'out'}   # (only the index knew of runs outside runs/)
