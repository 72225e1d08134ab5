"""Mixed precision and memory layout of the training step, and a step that never waits for the host."""
import pytest
import torch
from classmix_lab.config import ParameterError
from classmix_lab import augment, masks
from classmix_lab.masks import make_masks
from classmix_lab.methods.registry import METHODS
from classmix_lab.train import TrainConfig
from classmix_lab.methods.contrastive import bank_candidates, class_contrastive_loss
from test_methods import trainer, VARIANTS, IDS

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


#: where a bf16 step must not compute in bf16: mask and augmentation code, and the losses (the network alone runs in bf16)
FULL_PRECISION_FILES = ('masks.py', 'augment.py')
LOSSES = ('label_loss', 'pixel_loss', 'weight_map', 'masked_kl', 'pair_similarity_loss', 'class_contrastive_loss', 'l1_weights', 'bank_candidates')


def low_precision_sites(fn) -> set:
    "Run `fn`; the (file, function) of the lab's innermost frame of every op that made a bf16 or fp16 tensor."
    import os, sys
    import classmix_lab
    from torch.utils._python_dispatch import TorchDispatchMode
    pkg = os.path.dirname(classmix_lab.__file__) + os.sep
    sites = set()
    class Watch(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if any(isinstance(o, torch.Tensor) and o.dtype in (torch.bfloat16, torch.float16) for o in (out if isinstance(out, (tuple, list)) else (out,))):
                f = sys._getframe(1)
                while f is not None and not f.f_code.co_filename.startswith(pkg): f = f.f_back
                if f is not None: sites.add((os.path.basename(f.f_code.co_filename), f.f_code.co_name))
            return out
    with Watch(): fn()
    return sites


@pytest.mark.parametrize('name,kw', VARIANTS, ids=IDS)
def test_every_method_steps_in_bf16_on_the_cpu(name, kw):
    "CPU autocast runs the bf16 path a GPU runs: forwards in bf16; weights, optimiser state, losses, masks and augmentations in fp32."
    tr = trainer(name, kw)
    tr.cfg.precision = 'bf16'; tr.precision = tr.cfg.resolved_precision('cpu')
    seen = []
    tr.model.register_forward_hook(lambda m, i, o: seen.append((o[0] if isinstance(o, tuple) else o).dtype))   # (logits, features)
    sites = low_precision_sites(lambda: (tr.step(0), tr.step(1)))
    assert torch.bfloat16 in seen, 'the forwards ran in bf16'
    for part in (tr.model, tr.teacher, tr.method):
        for k, t in [*part.named_parameters(), *part.named_buffers()]:
            assert not t.is_floating_point() or t.dtype == torch.float32, (type(part).__name__, k, t.dtype)
    assert all(t.dtype == torch.float32 for st in tr.opt.state.values() for t in st.values() if torch.is_tensor(t) and t.is_floating_point())
    assert tr.stats.dtype == torch.float32 and torch.isfinite(tr.stats[:2, :2]).all(), 'finite losses in fp32'
    bad = sorted(s for s in sites if s[0] in FULL_PRECISION_FILES or s[1] in LOSSES)
    assert not bad, f'{name}: computed in bf16 outside the network: {bad}'


def _gen(): return torch.Generator().manual_seed(0)

_X, _LAB = torch.rand(3, 3, 32, 48, generator=_gen()), torch.randint(0, 5, (3, 32, 48), generator=_gen())
FULL_PRECISION_CALLS = {
    'cowmix': lambda: make_masks('cowmix', _LAB, 5, _gen()),
    'cowout': lambda: make_masks('cowout', _LAB, 5, _gen()),
    'classmix': lambda: make_masks('classmix', _LAB, 5, _gen()),
    'mask_blur': lambda: masks.gaussian_blur(_X[:, 0], 2.),
    'strong_augment': lambda: augment.strong_augment(_X, _gen()),
    'colour_jitter': lambda: augment.colour_jitter(_X, _gen()),
    'blur': lambda: augment.blur_images(_X, 1.),
    'affine': lambda: augment.warp(_X, augment.affine_grid(augment.random_affine(3, _gen(), rotate=20., aspect=1.5), _X.shape)),
    'photometric': lambda: augment.photometric(_X, _gen()),
    'tps': lambda: augment.tps_grid(3, 32, 48, _gen(), sigma=0.2),
    'phtps_photometric': lambda: augment.phtps_photometric(_X, _gen()),
}

@pytest.mark.parametrize('call', FULL_PRECISION_CALLS)
def test_masks_and_augmentations_are_the_same_inside_a_bf16_step(call):
    "Inside autocast (a bf16 step) masks and augmentations are what they are outside it, not matrix products rounded to bf16."
    ref = FULL_PRECISION_CALLS[call]()
    with torch.autocast('cpu', dtype=torch.bfloat16): out = FULL_PRECISION_CALLS[call]()
    assert out.dtype == ref.dtype and torch.equal(out, ref)


def test_the_memory_bank_keeps_the_best_vectors_of_late_images_in_a_bf16_step():
    "Candidates are ranked by image, then score, in fp32: in bf16, image 40's key 160 - score rounds to 160 for every score."
    z = torch.tensor([[0.20, 1.], [0.30, 1.], [0.10, 1.]]).to(torch.bfloat16)   # a bf16 step's teacher projections
    y, img = torch.zeros(3, dtype=torch.long), torch.full((3,), 40)
    best = bank_candidates(z, y, img, y, torch.ones(3), 0, 1, 0.5, score=lambda c, v: v[:, 0])
    assert best.dtype == torch.float32 and best[:, 0].tolist() == pytest.approx([0.30], abs=2e-3)


def test_the_contrastive_loss_is_computed_in_fp32_in_a_bf16_step():
    g = _gen()
    p, y, bank = torch.randn(40, 8, generator=g), torch.arange(40) % 2, torch.randn(2, 6, 8, generator=g)
    ref, _ = class_contrastive_loss(p, y, bank, [6, 6])
    with torch.autocast('cpu', dtype=torch.bfloat16): loss, _ = class_contrastive_loss(p.to(torch.bfloat16), y, bank, [6, 6])
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(class_contrastive_loss(p.to(torch.bfloat16).float(), y, bank, [6, 6])[0].item(), rel=1e-6)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-2)


def test_precision_choices():
    assert TrainConfig(precision='auto').resolved_precision('cpu') == 'fp32'      # CPU runs are unchanged
    with pytest.raises(ParameterError, match="precision='fp16' needs a CUDA device"):
        TrainConfig(precision='fp16').resolved_precision('cpu')
    with pytest.raises(ParameterError, match="precision='fp8' is not one of: auto, bf16, fp16, fp32"):
        TrainConfig(precision='fp8')


def _supervised(**cfg):
    from classmix_lab.data import TensorBatches
    from classmix_lab.model import get_model
    from classmix_lab.train import Trainer
    from classmix_lab.methods.registry import make_method
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
