"""Every registered method against the protocol's contract, and each method's views on small cases."""
import math
from pathlib import Path
import pytest
import torch, torch.nn.functional as F
from training_helpers import Interrupt, StopAfter
from classmix_lab.config import ParameterError, IGNORE_INDEX
from classmix_lab.data import TensorBatches
from classmix_lab.model import get_model
from classmix_lab.masks import paste_onto_next, mix
from classmix_lab.methods.registry import METHODS, make_method, method_settings
from classmix_lab.train import Trainer, TrainConfig
from classmix_lab.methods.base import RunInfo, Step, Output
from classmix_lab.methods.consistency import MixConsistency
from classmix_lab.methods.dacs import CrossDomainMix

# every registered method with its defaults, and the settings that switch on state (alignment) or extra work
# (the contrastive method's toy teacher is never 95% sure of three classes: its quality filter is lowered so the bank fills)
VARIANTS = [(name, {} if name != 'contrastive' else dict(phi=0.34)) for name in METHODS] + [('classmix', dict(align=True, strong_aug=True)),
                                               ('cowmix', dict(preset='french')), ('dacs', dict(align=True)),
                                               ('phtps', dict(variant='1w-pt')), ('phtps', dict(variant='2w-p1', teacher='copy')),
                                               ('phtps', dict(variant='1w-p2', teacher='copy')),
                                               ('contrastive', dict(phi=0.34, class_balance=False, augmentations=1, warmup=3)),
                                               ('contrastive', dict(phi=0.34, warmup=4, pseudo_ramp='gaussian', ema_schedule='linear',
                                                                    ce_norm='weights', entropy_norm=True)),
                                               ('cutout', dict(keep_box=True))]
IDS = [n + ''.join(f'-{k}={v}' for k, v in kw.items()) for n, kw in VARIANTS]


def toy(n=12, seed=0, H=24, W=32, classes=3):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n, 1, 1), generator=g).expand(n, H, W).clone()
    y[:, :, W//2:] = (y[:, :, W//2:] + 1) % classes
    x = (y[:, None].float()/classes + 0.1*torch.rand(n, 3, H, W, generator=g)).clamp(0, 1)
    return (x*255).to(torch.uint8), y.to(torch.uint8)


def trainer(name, kw, iterations=6, checkpoint=None, every=0):
    torch.manual_seed(0)
    model = get_model('deeplabv2-tiny', 3, width=8)
    x, y = toy()
    method = make_method(name, **kw)
    da = 'ssl' not in method.domains
    lab = TensorBatches(x[:4], y[:4], 2, seed=0)
    unl = TensorBatches(x[4:], None, 3, seed=1) if method.unlabeled else None
    run = RunInfo(iterations=iterations, num_classes=3, source=da, batch_size=2, batch_size_u=3,
                  class_distribution=lambda: (0.5, 0.3, 0.2))
    return Trainer(model, lab, unl, method, TrainConfig(iterations=iterations, lr=0.01, log_every=2, checkpoint_every=every),
                   checkpoint=checkpoint, progress=None, run=run)


@pytest.mark.parametrize('name,kw', VARIANTS, ids=IDS)
def test_method_contract(name, kw, tmp_path):
    tr = trainer(name, kw)
    own = [p for p in tr.method.parameters() if p.requires_grad]
    in_opt = {id(p) for g in tr.opt.param_groups for p in g['params']}
    assert all(id(p) in in_opt for p in own), 'the optimiser holds the method parameters'
    before = [p.detach().clone() for p in tr.model.parameters()]
    tr.step(0)
    # class-specific modules (the contrastive attention) get a gradient only in steps that see their class
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in own) and (not own or any(p.grad is not None for p in own)), 'gradients reach the method parameters'
    assert any(not torch.equal(a, p) for a, p in zip(before, tr.model.parameters())), 'the student moved'
    tr.iteration = 1; hist = tr.fit()
    assert all(math.isfinite(h['loss']) for h in hist)
    assert set(tr.method.stats) <= set(hist[-1]), 'every declared statistic is recorded'
    # a run killed after its checkpoint and started again ends with the same weights as an uninterrupted one
    ref = trainer(name, kw); ref.fit()
    ck = tmp_path/'c.pt'
    first = trainer(name, kw, checkpoint=ck, every=2)
    first.labeled = StopAfter(first.labeled, 5)          # dies in step 6 of 6, after the checkpoint at 4
    with pytest.raises(Interrupt): first.fit()
    assert torch.load(ck, weights_only=True)['iteration'] == 4
    second = trainer(name, kw, checkpoint=ck, every=2); second.fit()
    for part in ('model', 'method'):
        for (k, a), b in zip(getattr(ref, part).state_dict().items(), getattr(second, part).state_dict().values()):
            assert torch.equal(a, b), (part, k)
    for a, b in zip(ref.teacher.state_dict().values(), second.teacher.state_dict().values()): assert torch.equal(a, b)


def test_every_method_setting_is_documented_and_distinct_from_experiment_parameters():
    from dataclasses import fields
    from classmix_lab.experiment import ExperimentParams
    exp = {f.name for f in fields(ExperimentParams)}
    for name, spec in METHODS.items():
        assert spec.doc
        assert not (set(method_settings(name)) & exp), f'{name}: a setting shadows an experiment parameter'


class Teacher:
    "A stand-in mean teacher whose network predicts class `y` with confidence `conf` (a number or a (B, H, W) tensor)."
    def __init__(self, y, classes=3, conf=0.99):
        c = torch.as_tensor(conf, dtype=torch.float32)
        logit = torch.log(c*(classes - 1)/(1 - c))
        self.teacher = lambda x: F.one_hot(y, classes).permute(0, 3, 1, 2).float()*(logit if logit.dim() == 0 else logit[:, None])


def _views(m, st):
    "The views method `m` builds for step `st` (its teacher's probabilities computed first, as in training)."
    return m.views(st, m.teacher_view(st))


def step_for(x_u, y_teacher, x_l=None, y_l=None, conf=0.99):
    return Step(10, 100, x_l, y_l, None, x_u, None, Teacher(y_teacher, conf=conf), torch.Generator().manual_seed(0))


@pytest.mark.parametrize('name', ['classmix', 'cutmix', 'cowmix', 'structured'])
def test_image_target_and_weight_are_mixed_with_the_same_mask(name):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 3, 16, 16, generator=g); y = torch.randint(0, 3, (4, 16, 16), generator=g)
    m = make_method(name, weighting='pixelwise')
    conf = torch.where(torch.rand(4, 16, 16, generator=g) < 0.5, 0.99, 0.6)
    v = _views(m, step_for(x, y, conf=conf))
    assert v.mask.any() and (~v.mask).any()
    assert torch.equal(v.x, paste_onto_next(v.mask, x))
    hard = v.target.argmax(1) if v.target.is_floating_point() else v.target      # soft targets (structured): their classes
    assert torch.equal(hard, paste_onto_next(v.mask, y))
    assert torch.equal(v.weight, paste_onto_next(v.mask, (conf > 0.968).float()))


@pytest.mark.parametrize('name', ['cutout', 'cowout'])
def test_erased_pixels_drop_out_of_the_loss(name):
    x = torch.rand(4, 3, 16, 16); y = torch.randint(0, 3, (4, 16, 16))
    v = _views(make_method(name), step_for(x, y))
    assert v.mask.any()
    assert (v.weight[v.mask] == 0).all() and (v.weight[~v.mask] > 0).all()
    fill = x.mean((0, 2, 3))
    assert torch.allclose(v.x.permute(0, 2, 3, 1)[v.mask], fill.expand(int(v.mask.sum()), 3))
    assert torch.equal(v.x.permute(0, 2, 3, 1)[~v.mask], x.permute(0, 2, 3, 1)[~v.mask])


def test_dacs_weighs_source_pixels_one_keeps_ignore_out_and_cycles_sources():
    g = torch.Generator().manual_seed(2)
    x_l = torch.rand(2, 3, 16, 16, generator=g); y_l = torch.randint(0, 3, (2, 16, 16), generator=g)
    y_l[:, :4] = IGNORE_INDEX                                   # unlabeled rows of the source labels
    x_u = torch.rand(5, 3, 16, 16, generator=g); y_t = torch.randint(0, 3, (5, 16, 16), generator=g)
    m = make_method('dacs')
    v = _views(m, step_for(x_u, y_t, x_l, y_l, conf=0.5))         # no confident target pixel: target weight 0
    src = torch.arange(5) % 2                                   # 5 target images, 2 sources: 0, 1, 0, 1, 0
    assert torch.equal(v.x, mix(v.mask, x_l[src], x_u)) and torch.equal(v.target, mix(v.mask, y_l[src], y_t))
    assert torch.equal(v.weight, v.mask.float())                # source pixels weigh 1, unconfident target pixels 0
    assert v.mask.any() and not (v.mask & (y_l[src] == IGNORE_INDEX)).any(), 'no ignored source pixel is pasted'
    assert (v.target != IGNORE_INDEX).all()
    # a mask that does cover ignored source pixels (a user's mask kind): those pixels give no loss and no gradient
    M = torch.zeros(5, 16, 16, dtype=torch.bool); M[:, :8] = True
    target = mix(M, y_l[src], y_t)
    logits = torch.randn(5, 3, 16, 16, requires_grad=True)
    from classmix_lab.losses import pixel_loss
    (pixel_loss('ce', logits, target)*torch.where(M, 1., 0.5)).sum().backward()
    ignored = M & (y_l[src] == IGNORE_INDEX)
    assert ignored.any() and (logits.grad.permute(0, 2, 3, 1)[ignored] == 0).all()
    assert (logits.grad.permute(0, 2, 3, 1)[~ignored] != 0).any(dim=-1).all()


def test_ict_blends_images_and_teacher_predictions_with_one_lambda_per_image():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(4, 3, 8, 8, generator=g); y = torch.randint(0, 3, (4, 8, 8), generator=g)
    m = make_method('ict', alpha=1.0)
    st = step_for(x, y)
    v = _views(m, st)
    p = st.teacher_probs(x)
    lam = ((v.x - x.roll(-1, 0))/(x - x.roll(-1, 0))).flatten(1).median(1).values   # recover each image's lambda
    assert not torch.allclose(lam, lam[:1].expand(4), atol=1e-3), 'lambda differs between images'
    l = lam.view(4, 1, 1, 1)
    assert torch.allclose(v.target, l*p + (1 - l)*p.roll(-1, 0), atol=1e-4)


def test_augment_without_perturbation_is_the_identity_and_warped_pixels_outside_are_dropped():
    x = torch.rand(3, 3, 16, 16); y = torch.randint(0, 3, (3, 16, 16))
    ident = make_method('augment', flip=0, translate=0, scale='1:1', brightness=0, contrast='1:1')
    st = step_for(x, y)
    v = _views(ident, st)
    assert torch.allclose(v.x, x, atol=1e-5) and torch.allclose(v.target, st.teacher_probs(x), atol=1e-5)
    assert (v.weight == v.weight[0, 0, 0]).all()
    shifted = make_method('augment', flip=0, translate=0.25, scale='1:1', brightness=0, contrast='1:1', weighting='constant')
    v = _views(shifted, step_for(x, y))
    assert (v.weight == 0).any() and (v.weight == 1).any(), 'pixels brought in from outside the image carry no weight'


def test_bad_settings_are_one_line_naming_the_setting():
    with pytest.raises(ParameterError, match="'mask_p' is not a setting of method 'classmix'; its settings: weighting"):
        make_method('classmix', mask_p=0.5)
    with pytest.raises(ParameterError, match="tau='high' must be a number"):
        make_method('cutmix', tau='high')
    with pytest.raises(ParameterError, match="preset='fr' is not one of: french"):
        make_method('cutmix', preset='fr')
    with pytest.raises(ParameterError, match='needs unlabeled batches'):
        Trainer(get_model('deeplabv2-tiny', 2, width=8), iter([]), None, make_method('classmix'), TrainConfig(iterations=1))


def test_a_method_with_its_own_head_trains_resumes_and_is_averaged_by_the_teacher(monkeypatch, tmp_path):
    import torch.nn as nn
    from classmix_lab.methods.base import Method
    from classmix_lab.methods.registry import MethodSpec

    class Aux(Method):
        "An auxiliary classifier on the labeled forward's features (no second forward), its EMA in the teacher."
        features, unlabeled, stats = True, False, ('loss_aux', 'decay')
        def __init__(self, config=None, **kw):
            super().__init__(config, **kw)
            self.head = nn.Conv2d(256, 3, 1)
        def ema_modules(self): return self.head
        def ema_decay(self, step, teacher): return 0.9 + 0.1*step.progress      # rises towards 1 over the run
        def unsupervised(self, step):
            f = step.out_l.features
            y = F.interpolate(step.y_l[:, None].float(), size=f.shape[-2:], mode='nearest')[:, 0].long()
            loss = F.cross_entropy(self.head(f), y, ignore_index=IGNORE_INDEX)
            return 0.1*loss, dict(loss_aux=loss.detach(), decay=torch.tensor(0.9 + 0.1*step.progress))

    monkeypatch.setitem(METHODS, 'aux', MethodSpec(Aux, {}, 'an auxiliary head (test)'))
    calls = []
    tr = trainer('aux', {})
    forward = tr.model.forward
    tr.model.forward = lambda *a, **k: calls.append(k) or forward(*a, **k)
    tr.step(0)
    assert calls == [dict(return_features=True)], 'one labeled forward, with features'
    assert tr.method.head.weight.grad is not None and any(p is tr.method.head.weight for g in tr.opt.param_groups for p in g['params'])
    tr.model.forward = forward
    w0 = tr.mean_teacher.heads.weight.clone()
    tr.iteration = 1; hist = tr.fit()
    assert not torch.equal(tr.mean_teacher.heads.weight, w0) and not torch.equal(tr.mean_teacher.heads.weight, tr.method.head.weight)
    assert hist[-1]['decay'] == pytest.approx(0.9 + 0.1*4.5/6) and 'loss_aux' in hist[-1]
    ref = trainer('aux', {}); ref.fit()
    ck = tmp_path/'c.pt'
    first = trainer('aux', {}, checkpoint=ck, every=2); first.labeled = StopAfter(first.labeled, 5)
    with pytest.raises(Interrupt): first.fit()
    second = trainer('aux', {}, checkpoint=ck, every=2); second.fit()
    assert torch.equal(ref.method.head.weight, second.method.head.weight)
    assert torch.equal(ref.mean_teacher.heads.weight, second.mean_teacher.heads.weight)


@pytest.mark.slow
def test_method_settings_given_flat_to_a_sweep_reach_the_run_and_its_report():
    "A setting given beside the parameters (as the CLI and the named sweeps give them) is the setting the run trains with."
    import json
    from conftest import TINY
    from classmix_lab.config import load_settings
    from classmix_lab.runner import run_sweep
    small = dict(TINY, labeled='4', iterations=2, batch_size=2, batch_size_u=2, log_every=1, workers=0)
    rec = run_sweep('flat', [dict(small, run='cowmix', method='cowmix', preset='french', sigma='2:4', lambda_u=3)], stream=False)[0]
    assert rec['status'] == 'ok', rec['error']
    s = load_settings()
    m = json.loads((Path(s.runs_dir)/'flat'/'cowmix'/'metrics.json').read_text())
    assert m['params']['method_args'] == dict(preset='french', sigma='2:4', lambda_u=3)
    assert (m['method_settings']['loss'], m['method_settings']['lambda_u'], m['method_settings']['sigma']) == ('mse', 3., '2:4')
    assert (rec['params']['loss'], rec['params']['tau']) == ('mse', 0.97)   # the index shows the settings, defaults included
    page = (Path(s.reports_dir)/rec['report']).read_text()
    assert '<td>loss</td><td>mse</td>' in page and '<td>preset</td><td>french</td>' in page


@pytest.mark.parametrize('variant', ['1w-ps', '1w-pt', '2w-p1', '1w-p2'])
def test_phtps_without_perturbation_is_zero_and_with_it_counts_only_valid_pixels(variant):
    torch.manual_seed(0)
    model = get_model('deeplabv2-tiny', 3, width=8).train()
    x = torch.rand(2, 3, 24, 32)
    st = Step(0, 10, None, None, None, x, model, None, torch.Generator().manual_seed(0))
    still = make_method('phtps', variant=variant, teacher='copy', tps_sigma=0, brightness=0, saturation='1:1', hue=0, value='1:1', permute=False)
    loss, stats = still.unsupervised(st)
    assert loss.item() == pytest.approx(0, abs=1e-5) and stats['valid'].item() == 1
    moved = make_method('phtps', variant=variant, teacher='copy', tps_sigma=0.3)
    loss, stats = moved.unsupervised(Step(0, 10, None, None, None, x, model, None, torch.Generator().manual_seed(1)))
    assert loss.item() > 0 and 0 < stats['valid'].item() < 1, 'a strong warp leaves some pixels without a teacher prediction'
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def _bank_step(target_l):
    "A contrastive method and a step whose teacher is sure of class 1 in labeled image 0 and wrong (class 0) in image 1, both labeled 1."
    from classmix_lab.methods.base import MeanTeacher
    m = make_method('contrastive', dim=4, bank_size=8)
    m.setup(RunInfo(iterations=10, num_classes=3, feature_dim=5, n_labeled=4))
    m.eval()
    net = torch.nn.Conv2d(3, 3, 1)
    mt = MeanTeacher(net, 0.99, m.ema_modules())
    y = torch.ones(2, 8, 8, dtype=torch.long)
    logits = torch.zeros(2, 3, 8, 8); logits[0, 1] = 10.; logits[1, 0] = 10.
    step = Step(0, 10, torch.rand(2, 3, 8, 8), y, Output(logits), None, net, mt, torch.Generator(), target_l=target_l)
    step.teacher_out = lambda x, features=False: Output(logits[:len(x)] if target_l is None else logits[target_l], torch.randn(len(x), 5, 2, 2))
    return m, step


def test_contrastive_bank_takes_confident_correct_pixels_of_target_images_only():
    m, step = _bank_step(None)
    m.update_bank(step)
    assert m.bank_fill.tolist() == [0, 2, 0], 'K = 8 // 4 = 2 of image 0 (teacher right and sure); none of image 1 (wrong)'
    assert torch.count_nonzero(m.bank[1, :2].abs().sum(1)) == 2 and not m.bank[1, 2:].any()
    m, step = _bank_step(torch.tensor([False, True]))    # image 0 is a source image: never banked
    m.update_bank(step)
    assert m.bank_fill.tolist() == [0, 0, 0]


@pytest.mark.parametrize('keep_box', [False, True])
def test_cutout_erases_the_box_or_keeps_it(keep_box):
    "The paper erases the box; `keep_box` (their script) keeps it and erases the rest. Either way the erased pixels carry no loss."
    x = torch.rand(4, 3, 16, 16); y = torch.randint(0, 3, (4, 16, 16))
    v = _views(make_method('cutout', keep_box=keep_box), step_for(x, y))
    box = ~v.mask if keep_box else v.mask
    for b in box:                                          # the box: one rectangle
        rows, cols = b.any(1).nonzero().flatten(), b.any(0).nonzero().flatten()
        if len(rows): assert b[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all() and b.sum() == len(rows)*len(cols)
    assert (v.weight[v.mask] == 0).all() and (v.weight[~v.mask] > 0).all()
    ref = _views(make_method('cutout'), step_for(x, y))
    assert torch.equal(v.mask, ~ref.mask if keep_box else ref.mask), 'the same box, kept instead of erased'


def _contrastive(iteration=50, iterations=100, C=3, **kw):
    "A contrastive method on a small real network and one step of its loss, the same draws for every setting."
    from classmix_lab.methods.base import MeanTeacher, network_output
    torch.manual_seed(0)
    net = get_model('deeplabv2-tiny', C, width=8).train()
    m = make_method('contrastive', dim=8, bank_size=8, phi=0.34, **kw)
    m.setup(RunInfo(iterations=iterations, num_classes=C, feature_dim=net.feature_channels, n_labeled=4,
                    class_distribution=lambda: (0.6, 0.3, 0.1)))
    mt = MeanTeacher(net, 0.99, m.ema_modules())
    g = torch.Generator().manual_seed(0)
    x_l, x_u = torch.rand(2, 3, 24, 32, generator=g), torch.rand(3, 3, 24, 32, generator=g)
    y_l = torch.randint(0, C, (2, 24, 32), generator=g)
    step = Step(iteration, iterations, x_l, y_l, network_output(net, x_l, True), x_u, net, mt, torch.Generator().manual_seed(1))
    return m, step


def test_contrastive_supervised_loss_divides_by_pixels_or_by_the_sum_of_weights():
    m, st = _contrastive()
    alpha = m.class_weights()
    assert not torch.allclose(alpha, torch.ones(3)), 'the classes are weighted'
    logits = st.out_l.logits.float()
    nll = F.cross_entropy(logits, st.y_l, reduction='none')
    assert m.supervised_loss(st).item() == pytest.approx((alpha[st.y_l]*nll).mean().item(), rel=1e-5)          # Eq. 3: 1/N
    w, _ = _contrastive(ce_norm='weights')
    assert w.supervised_loss(st).item() == pytest.approx(F.cross_entropy(logits, st.y_l, weight=alpha).item(), rel=1e-5)   # their code


def test_contrastive_entropy_in_nats_or_in_units_of_log_c():
    m, st = _contrastive()
    _, nats = m.unsupervised(st)
    n, st = _contrastive(entropy_norm=True)
    _, norm = n.unsupervised(st)
    assert nats['loss_ent'].item() > 0
    assert norm['loss_ent'].item() == pytest.approx(nats['loss_ent'].item()/math.log(3), rel=1e-5)
    assert norm['loss_u'].item() == pytest.approx(nats['loss_u'].item(), rel=1e-5), 'the other terms are the same'


@pytest.mark.parametrize('ramp', ['step', 'gaussian'])
def test_contrastive_warm_up_turns_the_contrastive_term_off_and_the_pseudo_label_term_off_or_ramps_it(ramp):
    m, st = _contrastive(iteration=1, iterations=100, warmup=4, pseudo_ramp=ramp)   # iteration 1 of a 4-iteration warm-up
    loss, s = m.unsupervised(st)
    assert s['loss_u'].item() > 0 and s['loss_contr'].item() > 0, 'both terms are computed'
    factor = 0. if ramp == 'step' else math.exp(-5*(1 - 1/4)**2)
    expect = factor*s['loss_u'] + 0.01*s['loss_ent']         # lambda_pseudo = 1, lambda_ent = 0.01; the contrastive term is off
    assert loss.item() == pytest.approx(expect.item(), rel=1e-5)
    after, st = _contrastive(iteration=4, iterations=100, warmup=4, pseudo_ramp=ramp)
    loss, s = after.unsupervised(st)
    assert loss.item() == pytest.approx((s['loss_u'] + 0.01*s['loss_ent'] + 0.1*s['loss_contr']).item(), rel=1e-5)


def test_contrastive_term_divides_by_all_classes():
    from classmix_lab.methods.contrastive import class_contrastive_loss
    g = torch.Generator().manual_seed(0)
    p, bank = torch.randn(6, 4, generator=g), torch.randn(5, 3, 4, generator=g)
    y = torch.tensor([0, 0, 0, 2, 2, 2])
    one = lambda c: class_contrastive_loss(p[y == c], torch.zeros(3, dtype=torch.long), bank[c:c + 1], [3])[0].item()
    loss, _ = class_contrastive_loss(p, y, bank, [3, 3, 3, 3, 3])             # classes 0 and 2 present, of C = 5
    assert loss.item() == pytest.approx((one(0) + one(2))/5, rel=1e-6)


def test_contrastive_teacher_decay_rises_along_a_cosine_after_a_warm_up():
    m, _ = _contrastive()
    decay = lambda k, **kw: m.ema_decay(Step(k, 1000, *[None]*7), None)
    assert decay(0) == 0 and decay(1) == pytest.approx(1 - 1/11)               # 1 - 1/(10k + 1) caps the first steps
    assert decay(500) == pytest.approx(0.9975) and decay(250) == pytest.approx(1 - 0.0025*(1 + math.cos(math.pi/4)))
    assert all(decay(k) <= decay(k + 1) for k in range(0, 999, 37))
    lin, _ = _contrastive(ema_schedule='linear')
    assert lin.ema_decay(Step(0, 1000, *[None]*7), None) == 0.995 and lin.ema_decay(Step(250, 1000, *[None]*7), None) == pytest.approx(0.99625)


@pytest.mark.slow
def test_every_registered_method_runs_through_the_experiment_notebook(lab_dirs):
    "Each row of `METHODS` (with a source domain when it adapts domains) runs the papermill template to a report."
    from classmix_lab.config import load_settings
    from classmix_lab.runner import run_sweep
    from conftest import TINY
    runs = [dict(TINY, run=name, method=name, labeled='4', iterations=2, batch_size=2, batch_size_u=2, log_every=1, workers=0,
                 **({} if 'ssl' in make_method(name).domains else dict(source='synthstreets-sim', n_source=24)))
            for name in METHODS]
    records = run_sweep('every', runs, settings=load_settings(), stream=False)
    assert [r['run'] for r in records] == list(METHODS)
    bad = {r['run']: r['error'] for r in records if r['status'] != 'ok'}
    assert not bad, bad
    for r in records:
        assert 0 <= r['miou'] <= 100 and (lab_dirs/'reports'/r['report']).is_file() and r['params']['method'] == r['run']
