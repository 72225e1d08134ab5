"""How a run executes, not what it computes: TensorBoard event files of the logged statistics, and a compiled student."""
import shutil, sys
from pathlib import Path
import pytest
import torch
from classmix_lab.config import ParameterError
from classmix_lab.experiment import ExperimentParams, run_experiment
from classmix_lab.train import TrainConfig
from conftest import TINY


def params(tmp_path, name, **kw):
    return ExperimentParams.from_dict({**TINY, 'labeled': '4', 'iterations': 4, 'batch_size': 2, 'batch_size_u': 2, 'log_every': 2,
                                       'workers': 0, 'device': 'cpu', 'out_dir': str(tmp_path/name), **kw})


@pytest.mark.slow
def test_tensorboard_files_hold_the_losses_and_the_final_miou(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    m = run_experiment(params(tmp_path, 'tb', method='classmix', tensorboard=True), progress=None).metrics
    ea = EventAccumulator(str(tmp_path/'tb'/'tensorboard')); ea.Reload()
    tags = set(ea.Tags()['scalars'])
    assert {'train/loss', 'train/loss_l', 'train/loss_u', 'train/lr', 'train/confident', 'val/miou', 'val/teacher_miou'} <= tags
    loss = ea.Scalars('train/loss')
    assert [e.step for e in loss] == [2, 4] and [e.value for e in loss] == pytest.approx([h['loss'] for h in m['history']])
    (miou,) = ea.Scalars('val/miou')
    assert miou.step == 4 and miou.value == pytest.approx(m['miou']) and ea.Scalars('val/teacher_miou')[0].value == pytest.approx(m['teacher_miou'])
    # and none without it
    run_experiment(params(tmp_path, 'plain', method='supervised', iterations=1), progress=None)
    assert not (tmp_path/'plain'/'tensorboard').exists()


def test_tensorboard_without_its_package_is_a_parameter_error(monkeypatch):
    monkeypatch.setitem(sys.modules, 'tensorboard', None)   # as if it were not installed
    with pytest.raises(ParameterError, match=r"tensorboard=True needs the tensorboard package: pip install 'classmix_lab\[tensorboard\]'"):
        TrainConfig(tensorboard=True)


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which('g++') or shutil.which('c++') or shutil.which('clang++')),
                    reason='torch.compile on the CPU needs a C++ compiler (g++ or clang++), and there is none here')
def test_a_compiled_run_keeps_plain_checkpoint_names_and_its_losses(tmp_path):
    "The compiled student's checkpoint has the plain run's weight names (no _orig_mod. prefix); its losses match within float tolerance."
    kw = dict(method='supervised', iterations=2, log_every=1, checkpoint_every=1)
    plain = run_experiment(params(tmp_path, 'plain', **kw), progress=None)
    comp = run_experiment(params(tmp_path, 'compiled', compile=True, **kw), progress=None)
    cp, cc = (torch.load(tmp_path/n/'checkpoint.pt', weights_only=True) for n in ('plain', 'compiled'))
    for part in ('student', 'teacher'): assert list(cc[part]) == list(cp[part])
    assert list(torch.load(tmp_path/'compiled'/'model.pt', weights_only=True)['state_dict']) == list(cp['student'])
    assert comp.metrics['history'][0]['loss'] == pytest.approx(plain.metrics['history'][0]['loss'], rel=1e-4)
    assert comp.metrics['teacher_miou'] == pytest.approx(plain.metrics['teacher_miou'], abs=1.)
    assert type(comp.trainer.net).__name__ == 'OptimizedModule' and comp.trainer.model is not comp.trainer.net
    # a compiled run resumes from the plain run's checkpoint: compile is how a run executes, not what it computes
    (tmp_path/'compiled'/'metrics.json').unlink()
    (tmp_path/'compiled'/'checkpoint.pt').write_bytes((tmp_path/'plain'/'checkpoint.pt').read_bytes())
    again = run_experiment(params(tmp_path, 'compiled', compile=True, **kw), progress=None).metrics
    assert again['miou'] == plain.metrics['miou'] and [h['loss'] for h in again['history']] == [h['loss'] for h in plain.metrics['history']]


def test_compile_without_a_compiler_is_a_parameter_error(monkeypatch, tmp_path):
    monkeypatch.setenv('PATH', str(tmp_path)); monkeypatch.delenv('CXX', raising=False)
    with pytest.raises(ParameterError, match=r'compile=True needs a C\+\+ compiler'):
        TrainConfig(compile=True)
