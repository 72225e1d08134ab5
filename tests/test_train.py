"""The training loop: EMA teacher, loss weighting, a ClassMix step, and resuming from a checkpoint exactly."""
import math
import pytest
import torch
from classmix_lab.config import ParameterError
from classmix_lab.data import TensorBatches
from classmix_lab.model import get_model
from training_helpers import Interrupt, StopAfter
from classmix_lab.train import Trainer, TrainConfig
from classmix_lab.methods.base import MeanTeacher
from classmix_lab.methods.registry import make_method
from classmix_lab.losses import weight_map
from classmix_lab.methods.consistency import MixConsistency


def toy_data(n=12, seed=0, H=24, W=32):
    "Two classes: the top half is class 0 on bright images; labels flip on dark ones."
    g = torch.Generator().manual_seed(seed)
    bright = torch.rand(n, generator=g) < 0.5
    y = torch.zeros(n, H, W, dtype=torch.uint8); y[:, H//2:] = 1
    y[~bright] = 1 - y[~bright]
    x = (torch.rand(n, 3, H, W, generator=g)*60 + torch.where(bright, 150, 30).view(n, 1, 1, 1)).to(torch.uint8)
    return x, y


def make_trainer(method='classmix', iterations=20, checkpoint=None, every=0, seed=0):
    torch.manual_seed(0)
    model = get_model('deeplabv2-tiny', 2, width=8)
    x, y = toy_data()
    lab = TensorBatches(x[:4], y[:4], 4, seed=seed)
    unl = TensorBatches(x[4:], None, 4, seed=seed + 1)
    return Trainer(model, lab, unl, make_method(method) if method != 'supervised' else None,
                   TrainConfig(iterations=iterations, lr=0.01, log_every=5, checkpoint_every=every, seed=seed),
                   checkpoint=checkpoint, progress=None)


def test_teacher_is_an_ema_of_the_student():
    s = torch.nn.Linear(3, 2); mt = MeanTeacher(s, alpha=0.9)
    t0 = mt.teacher.weight.clone()
    with torch.no_grad(): s.weight.add_(1.)
    mt.update(100)
    assert torch.allclose(mt.teacher.weight, 0.9*t0 + 0.1*s.weight)
    assert not mt.teacher.training and not any(p.requires_grad for p in mt.teacher.parameters())


def test_threshold_proportional_weight_is_the_confident_fraction():
    conf = torch.tensor([[[0.99, 0.97], [0.5, 0.1]], [[0.98, 0.2], [0.3, 0.4]]])
    w = weight_map('threshold_proportional', conf, 0, tau=0.968)
    assert torch.allclose(w, torch.full_like(conf, 3/8))
    assert weight_map('constant', conf, 0).eq(1).all()
    assert weight_map('sigmoid', conf, 5000, ramp_iters=10000)[0, 0, 0].item() == pytest.approx(math.exp(-5*0.25))


def test_classmix_training_learns_and_records():
    tr = make_trainer(iterations=30)
    hist = tr.fit()
    assert [h['iteration'] for h in hist] == [5, 10, 15, 20, 25, 30]
    assert hist[-1]['loss_l'] < hist[0]['loss_l']
    assert all('loss_u' in h and 'confident' in h for h in hist)
    conf = tr.per_iteration('confident')
    assert len(conf) == 30 and all(0 <= c <= 1 for c in conf)


def test_mixing_needs_unlabeled_batches():
    with pytest.raises(ParameterError, match='needs unlabeled batches'):
        Trainer(get_model('deeplabv2-tiny', 2, width=8), iter([]), None, make_method('classmix'), TrainConfig(iterations=1))
    with pytest.raises(ParameterError, match="weighting='cubic' is not one of"):
        MixConsistency(weighting='cubic')


@pytest.mark.parametrize('method', ['supervised', 'classmix'])
def test_interrupted_run_resumes_to_the_same_result(tmp_path, method):
    ref = make_trainer(method, iterations=20)
    ref.fit()
    ck = tmp_path/'checkpoint.pt'
    first = make_trainer(method, iterations=20, checkpoint=ck, every=5)
    first.labeled = StopAfter(first.labeled, 13)       # dies in the 14th step, after the checkpoint at 10
    with pytest.raises(Interrupt): first.fit()
    assert torch.load(ck, weights_only=True)['iteration'] == 10
    second = make_trainer(method, iterations=20, checkpoint=ck, every=5)
    second.fit()
    assert second.iteration == 20
    for (k, a), b in zip(ref.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(a, b), k
    for a, b in zip(ref.teacher.state_dict().values(), second.teacher.state_dict().values()):
        assert torch.equal(a, b)
    torch.testing.assert_close(ref.stats, second.stats, rtol=0, atol=0, equal_nan=True)
    assert [h['iteration'] for h in second.history] == [5, 10, 15, 20]


def test_checkpoint_of_other_settings_is_refused(tmp_path):
    ck = tmp_path/'c.pt'
    make_trainer(iterations=5, checkpoint=ck).fit()
    with pytest.raises(ParameterError, match='written by a run with other settings'):
        make_trainer(iterations=6, checkpoint=ck).fit()


def test_statistics_are_logged_as_json_lines_and_a_resumed_log_has_no_duplicates(tmp_path):
    import json
    ck, log = tmp_path/'c.pt', tmp_path/'log.jsonl'
    first = make_trainer('classmix', iterations=20, checkpoint=ck, every=10)
    first.log_file = log
    first.labeled = StopAfter(first.labeled, 17)        # killed after logging rows 5, 10 and 15, checkpoint at 10
    with pytest.raises(Interrupt): first.fit()
    assert [json.loads(l)['iteration'] for l in log.read_text().splitlines()] == [5, 10, 15]
    second = make_trainer('classmix', iterations=20, checkpoint=ck, every=10)
    second.log_file = log
    second.fit()
    rows = [json.loads(l) for l in log.read_text().splitlines()]
    assert [r['iteration'] for r in rows] == [5, 10, 15, 20] and rows == second.history
    assert {'loss', 'loss_l', 'loss_u', 'confident', 'lr', 'seconds'} <= set(rows[-1])
