"""Mixed precision and memory layout of the training step, and a step that never waits for the host."""
import pytest
import torch
from classmix_lab.config import ParameterError
from classmix_lab.train import METHODS, TrainConfig
from test_methods import trainer

SYNC = ('item', 'cpu', 'tolist', 'numpy', '__bool__', '__int__', '__float__', '__index__')


@pytest.mark.parametrize('name', [n for n, spec in METHODS.items() if not spec.cls.host_sync])
def test_a_step_reads_nothing_back_to_the_host(name, monkeypatch):
    "Counted on the CPU: no .item(), .cpu(), .tolist() or Python conversion of a tensor inside a step (after the first)."
    tr = trainer(name, {})
    tr.step(0)
    calls = []
    for n in SYNC:
        f = getattr(torch.Tensor, n)
        monkeypatch.setattr(torch.Tensor, n, lambda self, *a, _f=f, _n=n, **k: (calls.append(_n), _f(self, *a, **k))[1])
    tr.step(1)
    monkeypatch.undo()
    assert calls == [], f'{name}: host reads {calls}'


def test_methods_that_sync_say_so():
    assert [n for n, spec in METHODS.items() if spec.cls.host_sync] == ['contrastive']


def test_bf16_autocast_on_the_cpu_keeps_losses_and_weights_in_fp32():
    tr = trainer('classmix', {})
    tr.cfg.precision = 'bf16'; tr.precision = tr.cfg.resolved_precision('cpu')
    seen = []
    tr.model.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    tr.step(0)
    assert torch.bfloat16 in seen, 'the forwards ran in bf16'
    assert all(p.dtype == torch.float32 for p in tr.model.parameters()) and all(p.dtype == torch.float32 for p in tr.teacher.parameters())
    assert tr.stats.dtype == torch.float32 and torch.isfinite(tr.stats[0, :2]).all()


def test_precision_choices():
    assert TrainConfig(precision='auto').resolved_precision('cpu') == 'fp32'      # CPU runs are unchanged
    with pytest.raises(ParameterError, match="precision='fp16' needs a CUDA device"):
        TrainConfig(precision='fp16').resolved_precision('cpu')
    with pytest.raises(ParameterError, match="precision='fp8' is not one of: auto, bf16, fp16, fp32"):
        TrainConfig(precision='fp8')


def _supervised(**cfg):
    from classmix_lab.data import TensorBatches
    from classmix_lab.model import get_model
    from classmix_lab.train import Trainer, make_method
    from test_methods import toy
    torch.manual_seed(0)
    x, y = toy()
    return Trainer(get_model('deeplabv2-tiny', 3, width=8), TensorBatches(x[:4], y[:4], 2, seed=0), None, make_method('supervised'),
                   TrainConfig(**{'iterations': 3, 'lr': 0.01, **cfg}), progress=None)


def test_channels_last_gives_the_same_training_as_the_default_layout():
    a, b = _supervised(), _supervised(channels_last=True)
    conv = next(m for m in b.model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert next(m for m in b.teacher.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1)).weight.is_contiguous(memory_format=torch.channels_last)
    x = next(a.labeled)[0]; next(b.labeled)   # (both sources move on alike)
    with torch.no_grad():   # one forward: the same numbers up to summation order
        assert torch.allclose(a.model.eval()(x), b.model.eval()(x.contiguous(memory_format=torch.channels_last)), atol=1e-5)
    a.model.train(); b.model.train()
    a.fit(); b.fit()        # three steps through BatchNorm on batches of two: differences in the last digits grow a little
    for (n, p), q in zip(a.model.named_parameters(), b.model.parameters()):
        assert torch.allclose(p, q, atol=1e-3), n


def test_a_run_measures_and_prints_its_time_and_memory_after_the_first_steps(capsys):
    tr = _supervised(iterations=8)
    tr.progress = 'log'
    tr.fit()
    e = tr.estimate
    assert e['timed_steps'] == 5 and e['ms_per_iteration'] > 0 and e['peak_memory_mb'] > 0 and e['precision'] == 'fp32'
    assert e['expected_total_s'] == pytest.approx(e['ms_per_iteration']*8/1000)
    assert 'measured: ' in capsys.readouterr().out
    resumed = _supervised(iterations=20); resumed.iteration = 10; resumed.fit()    # a run resumed at 10 times steps 12-16
    assert resumed.estimate['timed_steps'] == 5 and resumed.estimate['expected_remaining_s'] == pytest.approx(resumed.estimate['ms_per_iteration']*4/1000)
    short = _supervised(iterations=1); short.fit()
    assert short.estimate is None, 'nothing to time after the first step'
