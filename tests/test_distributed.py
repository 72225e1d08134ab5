"""Many processes through torchrun, as CI runs them (gloo processes on the CPU): the same training as one process with
the doubled batch, one set of files written by rank 0, a killed run resumed, per-rank batch shards, and the checks
of the parameters."""
import json, os, signal, subprocess, sys, time
from dataclasses import replace
from pathlib import Path
import pytest
import torch
from classmix_lab.config import ParameterError
from classmix_lab.data import TensorBatches, LoaderBatches
from classmix_lab.datasets import get_dataset
from classmix_lab.distributed import Rank, shard
from classmix_lab.launch import torchrun_command
from classmix_lab.experiment import ExperimentParams, run_experiment, validate
from conftest import TINY


def params(tmp_path, name, **kw):
    return ExperimentParams.from_dict({**TINY, 'labeled': '4', 'iterations': 4, 'batch_size': 2, 'batch_size_u': 2, 'log_every': 1,
                                       'workers': 0, 'device': 'cpu', 'out_dir': str(tmp_path/name), **kw})


def _checkpoint(p): return torch.load(Path(p.out_dir)/'checkpoint.pt', weights_only=True)


@pytest.mark.slow
def test_two_gloo_processes_train_as_one_process_with_the_doubled_batch(tmp_path):
    """2 processes with batch B against 1 process with batch 2B, same seed: the same logged losses and the same student
    and teacher weights, within float tolerance (the gradients are averaged in another order).

    Supervised with frozen BatchNorm: each rank would normalise with its own half batch's statistics, not the whole
    batch's, and SyncBatchNorm, which would make them the global batch's, does not run on the CPU. The mask methods
    cannot match one process either: each rank draws its masks from its own generator (seeded from the run's seed and
    its rank), and a mixed image's partner is the next image of the same rank's slice."""
    two = run_experiment(params(tmp_path, 'two', method='supervised', freeze_bn=True, nproc=2), progress=None)
    one = run_experiment(params(tmp_path, 'one', method='supervised', freeze_bn=True, batch_size=4), progress=None)
    m2, m1 = two.metrics, one.metrics
    assert [h['iteration'] for h in m2['history']] == [1, 2, 3, 4]
    for a, b in zip(m2['history'], m1['history'], strict=True):
        assert a['loss'] == pytest.approx(b['loss'], rel=1e-5) and a['loss_l'] == pytest.approx(b['loss_l'], rel=1e-5) and a['lr'] == b['lr']
    c2, c1 = _checkpoint(two.params), _checkpoint(one.params)
    assert c2['world_size'] == 2 and len(c2['ranks']) == 2 and 'world_size' not in c1
    for part in ('student', 'teacher'):
        assert c2[part].keys() == c1[part].keys()
        for k in c1[part]:
            assert torch.allclose(c2[part][k].float(), c1[part][k].float(), rtol=1e-4, atol=1e-6), (part, k)
    assert any(not torch.equal(c2['student'][k], _checkpoint(two.params)['teacher'][k]) for k in c1['student'])   # the teacher is not the student
    d = m2['distributed']
    assert d['world_size'] == 2 and d['global_batch_size'] == 4 and d['backend'] == 'gloo' and d['replicas_identical'] is True
    # evaluation in two shards, the confusion matrices summed: the same scores as one process
    assert m2['start_miou'] == m1['start_miou'] and m2['start_iou'] == m1['start_iou']
    assert m2['miou'] == pytest.approx(m1['miou'], abs=0.05)
    # the launching process returns the Experiment the notebook renders: rank 0's final student and teacher, the history
    assert all(torch.equal(a, c2['student'][k]) for k, a in two.trainer.model.state_dict().items())
    assert all(torch.equal(a, c2['teacher'][k]) for k, a in two.trainer.teacher.state_dict().items())
    assert two.trainer.per_iteration('loss') == pytest.approx(one.trainer.per_iteration('loss'), rel=1e-5)
    assert len(two.val_images) == len(one.val_images) and two.classes == one.classes
    # a worker's error reaches the launcher as what it was: a checkpoint of one process is refused by two
    with pytest.raises(ParameterError, match='written by a run of 1 processes, this one has 2'):
        run_experiment(replace(one.params, nproc=2, batch_size=2), progress=None)


KILLABLE = '''
import sys
from classmix_lab.experiment import ExperimentParams, run_experiment
run_experiment(ExperimentParams(**eval(sys.argv[1])), progress=None)
'''

def _processes_of(run_dir:str) -> list:
    "Pids of the processes whose command line names `run_dir` (the run's torchrun workers)."
    pids = []
    for d in Path('/proc').glob('[0-9]*'):
        try: cmd = (d/'cmdline').read_bytes().replace(b'\0', b' ').decode(errors='replace')
        except OSError: continue
        if run_dir in cmd and 'classmix_lab.worker' in cmd: pids.append(int(d.name))
    return pids

@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='kills the run through its process session and reads /proc')
def test_a_killed_two_process_run_resumes_to_the_same_result(tmp_path):
    """ClassMix in 2 processes (per-rank masks, BatchNorm statistics averaged over the ranks), killed after a checkpoint
    and started again, ends where the uninterrupted run ends: every rank's random state is in the checkpoint. Rank 0
    alone writes the files: one log row per logging step, one metrics file."""
    kw = dict(method='classmix', nproc=2, iterations=20, checkpoint_every=2, log_every=2)
    ref = run_experiment(params(tmp_path, 'ref', **kw), progress=None).metrics
    assert ref['distributed']['replicas_identical'] is True and len(ref['confident']) == 20
    p = params(tmp_path, 'killed', **kw)
    proc = subprocess.Popen([sys.executable, '-c', KILLABLE, repr(p.__dict__)], start_new_session=True)
    ck, t0 = Path(p.out_dir)/'checkpoint.pt', time.time()
    try:
        while time.time() - t0 < 300:
            if ck.is_file():
                try:
                    if torch.load(ck, weights_only=True)['iteration'] >= 4: break
                except Exception: pass
            assert proc.poll() is None, 'the run finished before it could be killed'
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL); proc.wait()   # the launcher and torchrun; the workers die with torchrun
    finally:
        if proc.poll() is None: proc.kill()
    t1 = time.time()
    while _processes_of(p.out_dir) and time.time() - t1 < 60: time.sleep(0.2)
    assert not _processes_of(p.out_dir), 'training processes outlived their killed launcher'
    killed_at = torch.load(ck, weights_only=True)['iteration']
    assert 4 <= killed_at < 20 and not (Path(p.out_dir)/'metrics.json').exists()
    res = run_experiment(p, progress=None).metrics
    assert res['miou'] == ref['miou'] and res['teacher_miou'] == ref['teacher_miou'] and res['iou'] == ref['iou']
    assert res['confident'] == ref['confident'] and [h['loss'] for h in res['history']] == [h['loss'] for h in ref['history']]
    rows = [json.loads(l) for l in (Path(p.out_dir)/'log.jsonl').read_text().splitlines()]
    assert [r['iteration'] for r in rows] == list(range(2, 21, 2))
    assert not list((Path(p.out_dir)/'distributed').glob('error-*'))
    with pytest.raises(ParameterError, match='written by a run of 2 processes, this one has 1'):
        run_experiment(replace(p, nproc=1), progress=None)


def test_rank_shards_are_slices_of_the_global_batch():
    "Two ranks' slices side by side are the batches of one stream of the doubled batch, in memory and from disk, and resume alike."
    ds = get_dataset('synthstreets', 'train', **TINY)
    x = torch.stack([ds[i][0] for i in range(len(ds))]); y = torch.stack([ds[i][1] for i in range(len(ds))]).to(torch.uint8)
    for make in (lambda: TensorBatches(x, y, 6, seed=5), lambda: LoaderBatches(ds, 6, seed=5, workers=0),
                 lambda: LoaderBatches(ds, 6, seed=5, workers=0, class_uniform=ds.num_classes)):
        one, two = make(), [shard(make(), Rank(r, 2)) for r in range(2)]
        for _ in range(5):   # past an epoch of the 24 images
            (xa, ya), halves = next(one), [next(s) for s in two]
            assert all(len(h[0]) == 3 for h in halves)
            assert torch.equal(torch.cat([h[0] for h in halves]), xa) and torch.equal(torch.cat([h[1] for h in halves]), ya)
        a, b = two[0].state_dict(), two[1].state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k] for k in a)
        state = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in two[1].state_dict().items()}
        again = shard(make(), Rank(1, 2)); again.load_state_dict(state)
        assert torch.equal(next(again)[0], next(two[1])[0])
    with pytest.raises(ParameterError, match='a global batch of 6 images does not split into 4 processes'):
        shard(TensorBatches(x, y, 6), Rank(0, 4))


@pytest.mark.parametrize('kw, msg', [
    (dict(nproc=0), 'nproc=0 must be an integer >= 1'),
    (dict(nnodes=2), "rdzv_endpoint='': a run of nnodes=2 needs the first node's host:port"),
    (dict(nnodes=2, rdzv_endpoint='node01'), "rdzv_endpoint='node01': a run of nnodes=2 needs"),
    (dict(nproc=2, sync_bn=True), 'sync_bn=True needs CUDA devices'),
])
def test_bad_process_parameters(tmp_path, kw, msg):
    with pytest.raises(ParameterError, match=msg):
        validate(params(tmp_path, 'bad', **kw))


def test_the_torchrun_command():
    one_node = torchrun_command('/runs/a', 4)
    assert one_node[1:5] == ['-m', 'torch.distributed.run', '--nproc-per-node=4', '--standalone'] and one_node[-3:] == ['-m', 'classmix_lab.worker', '/runs/a']
    many = torchrun_command('/runs/a', 8, nnodes=2, rdzv_endpoint='node01:29500', rdzv_id='job1')
    assert {'--nnodes=2', '--rdzv-backend=c10d', '--rdzv-endpoint=node01:29500', '--rdzv-id=job1'} <= set(many) and '--standalone' not in many


@pytest.mark.slow
def test_a_two_process_run_from_the_command_line_renders_one_report(lab_dirs, capsys):
    "`classmix-lab run ... nproc=2`: the papermill notebook launches the processes and renders the run's one report."
    from classmix_lab.cli import main
    args = [f'{k}={v}' for k, v in {**TINY, 'labeled': 4, 'iterations': 2, 'batch_size': 2, 'batch_size_u': 2, 'log_every': 1,
                                      'workers': 0, 'method': 'classmix', 'nproc': 2}.items()]
    assert main(['run', *args, '--sweep', 'dist', '--name', 'two']) == 0
    run, report = lab_dirs/'runs'/'dist'/'two', lab_dirs/'reports'/'dist'/'two.html'
    m = json.loads((run/'metrics.json').read_text())
    assert m['status'] == 'ok' and m['distributed']['world_size'] == 2 and m['params']['nproc'] == 2
    assert report.is_file() and 'Validation mIoU' in report.read_text()
    out = capsys.readouterr().out
    assert 'it 2/2' in out and out.count('it 2/2') == 1   # rank 0's progress, streamed through the notebook


@pytest.mark.slow
def test_two_nodes_meet_at_the_rendezvous(tmp_path):
    "Two 'nodes' on this machine, one process each: the first runs the run (nnodes=2), the other joins it from the run folder."
    import socket
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]
    p = params(tmp_path, 'nodes', method='classmix', nnodes=2, rdzv_endpoint=f'127.0.0.1:{port}')
    other = subprocess.Popen([sys.executable, '-m', 'classmix_lab.launch', 'join', p.out_dir, '120'], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        m = run_experiment(p, progress=None).metrics
        assert other.wait(60) == 0, other.stdout.read()[-3000:]
    finally:
        if other.poll() is None: other.kill()
    d = m['distributed']
    assert d['world_size'] == 2 and d['nnodes'] == 2 and d['global_batch_size'] == 4 and d['replicas_identical'] is True
    assert json.loads((Path(p.out_dir)/'distributed'/'launch.json').read_text())['rdzv_endpoint'] == f'127.0.0.1:{port}'
