"""ClassMix masks: exactly the union of ceil(p * n) of the present classes, reproducible, batched on any device."""
import math
import numpy as np
import pytest
import torch
from classmix_lab.config import IGNORE_INDEX, ParameterError
from classmix_lab.masks import classmix_masks, mix, paste_onto_next

DEVICES = ['cpu'] + ([pytest.param('cuda', marks=pytest.mark.cuda)] if torch.cuda.is_available() else [])


def random_labels(B, C, H, W, g, device, ignore_frac=0.1):
    "Label maps made of random blocks of a random subset of the classes, with some ignore pixels."
    blocks = torch.randint(0, C, (B, 1, H//4, W//4), generator=g).repeat_interleave(4, 2).repeat_interleave(4, 3)[:, 0]
    ign = torch.rand(B, H, W, generator=g) < ignore_frac
    return torch.where(ign, torch.full_like(blocks, IGNORE_INDEX), blocks).to(device)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('p', [0.5, 0.3, 1.0])
def test_classmix_mask_is_union_of_ceil_p_n_classes(device, p):
    g = torch.Generator().manual_seed(0)
    C = 19
    labels = random_labels(16, C, 32, 64, g, device)
    M = classmix_masks(labels, C, torch.Generator(device=device).manual_seed(1), p=p)
    assert M.shape == labels.shape and M.dtype == torch.bool and M.device.type == device
    for b in range(len(labels)):
        present = set(labels[b][labels[b] != IGNORE_INDEX].unique().tolist())
        chosen = set(labels[b][M[b]].unique().tolist())
        assert IGNORE_INDEX not in chosen and chosen <= present
        assert len(chosen) == math.ceil(round(p*len(present), 9))
        union = torch.zeros_like(M[b])
        for c in chosen: union |= labels[b] == c
        assert torch.equal(M[b], union)


@pytest.mark.parametrize('device', DEVICES)
def test_same_generator_seed_same_masks(device):
    labels = random_labels(8, 11, 32, 32, torch.Generator().manual_seed(0), device)
    a = classmix_masks(labels, 11, torch.Generator(device=device).manual_seed(7))
    b = classmix_masks(labels, 11, torch.Generator(device=device).manual_seed(7))
    c = classmix_masks(labels, 11, torch.Generator(device=device).manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_class_choice_is_uniform():
    "Each of the 4 present classes is chosen half of the time (2 of 4)."
    labels = torch.arange(4).repeat_interleave(4).view(1, 4, 4).repeat(4000, 1, 1)
    M = classmix_masks(labels, 4, torch.Generator().manual_seed(0))
    freq = torch.stack([M[:, c, 0] for c in range(4)]).float().mean(1)
    assert torch.allclose(freq, torch.full((4,), 0.5), atol=0.03)


def test_restricting_the_classes():
    "DACS-style: only classes allowed per image can be chosen."
    labels = torch.arange(4).repeat_interleave(4).view(1, 4, 4).repeat(50, 1, 1)
    allowed = torch.tensor([[True, True, False, False]]).repeat(50, 1)
    M = classmix_masks(labels, 4, torch.Generator().manual_seed(0), classes=allowed)
    assert not M[:, 2:].any() and (M.view(50, -1).sum(1) == 4).all()    # ceil(0.5 * 2) = 1 class of 4 pixels


def test_mix_applies_one_mask_to_anything_per_pixel():
    M = torch.tensor([[[True, False], [False, True]]])
    img_a, img_b = torch.ones(1, 3, 2, 2), torch.zeros(1, 3, 2, 2)
    assert torch.equal(mix(M, img_a, img_b)[0, 2], M[0].float())
    probs_a = torch.rand(1, 5, 2, 2)
    assert torch.equal(mix(M, probs_a, probs_a*0)[0, :, 0, 0], probs_a[0, :, 0, 0])
    assert torch.equal(mix(M, torch.full((1, 2, 2), 7), torch.zeros(1, 2, 2, dtype=torch.long)), M.long()*7)


def test_bad_input_is_a_clear_error():
    with pytest.raises(ParameterError, match='pasting needs a batch of at least 2'):
        paste_onto_next(torch.ones(1, 4, 4, dtype=torch.bool), torch.zeros(1, 3, 4, 4))
    with pytest.raises(ParameterError, match=r'labels must be a \(B, H, W\) integer tensor'):
        classmix_masks(torch.zeros(4, 4, dtype=torch.long), 3)
    with pytest.raises(ParameterError, match=r'p=1.5 must be in \(0, 1\]'):
        classmix_masks(torch.zeros(2, 4, 4, dtype=torch.long), 3, p=1.5)
    with pytest.raises(ParameterError, match='must have the same shape'):
        mix(torch.ones(2, 4, 4, dtype=torch.bool), torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 5))


# --- every generator ------------------------------------------------------------------------------------------------

from scipy.ndimage import gaussian_filter
from scipy.special import erfinv
from classmix_lab.masks import (MASKS, ERASING, make_masks, mask_params, box_masks, cow_masks, smooth_noise, gaussian_blur,
                                proportion_threshold, lattice_stride, erase, mixup, mixup_lambdas)


def gen(device, seed=0): return torch.Generator(device=device).manual_seed(seed)


def crossings(M):
    "Fraction of horizontally adjacent pixel pairs that differ: the boundary length per pixel."
    return (M[:, :, 1:] != M[:, :, :-1]).float().mean().item()


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('kind', list(MASKS))
def test_every_kind_is_a_reproducible_batched_bool_mask(device, kind):
    labels = random_labels(6, 7, 48, 64, torch.Generator().manual_seed(0), device)
    a = make_masks(kind, labels, 7, gen(device, 3))
    b = make_masks(kind, labels, 7, gen(device, 3))
    c = make_masks(kind, labels, 7, gen(device, 4))
    assert a.shape == labels.shape and a.dtype == torch.bool and a.device.type == device
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])                    # every sample draws its own mask


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('p', [0.1, 0.5, 0.83])
def test_cutmix_is_one_rectangle_of_area_p(device, p):
    B, H, W = 400, 40, 72
    M = make_masks('cutmix', torch.zeros(B, H, W, dtype=torch.long, device=device), 3, gen(device), p=p).cpu()
    rows, cols = M.any(2).sum(1), M.any(1).sum(1)
    assert torch.equal(rows*cols, M.sum((1, 2)))                                  # a single filled rectangle
    assert (M.float().mean((1, 2)) - p).abs().max() <= 0.5*(1/H + 1/W) + 1e-3     # its area is p up to rounding
    log_aspect = ((rows.float()/H)/(cols.float()/W)).log()                        # log-uniform in [log p, -log p]
    assert log_aspect.min() < 0.8*math.log(p) and log_aspect.max() > -0.8*math.log(p)
    assert log_aspect.abs().max() < -math.log(p) + 0.1
    assert M[:, 0].any() and M[:, -1].any() and M[:, :, 0].any() and M[:, :, -1].any()  # and the position


def test_cutout_draws_its_erased_proportion_from_a_range():
    M = make_masks('cutout', torch.zeros(2000, 32, 32, dtype=torch.long), 3, gen('cpu'), p=(0.2, 0.6))
    area = M.float().mean((1, 2))
    assert 0.2 - 0.04 <= area.min() and area.max() <= 0.6 + 0.04 and abs(area.mean() - 0.4) < 0.01
    assert mask_params('cutout') == dict(p=(0., 1.)) and 'cutout' in ERASING and 'cutmix' not in ERASING


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('p', [0.25, 0.5, 0.7])
@pytest.mark.parametrize('sigma', [(4., 16.), 2.])
def test_cowmix_mean_proportion_is_p(device, p, sigma):
    M = cow_masks((32, 96, 128), gen(device), p=p, sigma=sigma, device=device)
    assert M.device.type == device
    assert abs(M.float().mean().item() - p) < 0.02


@pytest.mark.parametrize('device', DEVICES)
def test_larger_sigma_larger_blobs(device):
    "The boundary length per pixel halves when sigma doubles, and matches the Gaussian field's: arccos(rho_1) / pi."
    dens = []
    for s in (2., 4., 8., 16.):
        M = cow_masks((48, 160, 160), gen(device), p=0.5, sigma=s, device=device).cpu()
        dens.append(crossings(M))
        rho1 = math.exp(-1/(4*s*s))                     # lag-1 correlation of noise smoothed with sigma
        assert abs(dens[-1]/(math.acos(rho1)/math.pi) - 1) < 0.08, (s, dens[-1])
    assert all(a > 1.7*b for a, b in zip(dens, dens[1:]))


def test_lattice_and_full_resolution_fields_agree():
    "The default (coarse lattice) and stride=1 (smoothing full-resolution noise) sample the same random field."
    for s in (4., 8.):
        assert lattice_stride(s) > 1
        f_lat = [crossings(cow_masks((48, 160, 160), gen('cpu', i), sigma=s)) for i in range(2)]
        f_full = [crossings(cow_masks((48, 160, 160), gen('cpu', i), sigma=s, stride=1)) for i in range(2)]
        assert abs(sum(f_lat)/sum(f_full) - 1) < 0.05


def test_smoothing_and_threshold_are_french_et_al_listing_1():
    "On the same noise and sigma: scipy's gaussian_filter (mode 'reflect') and the erfinv threshold, per sample."
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(5, 37, 53, generator=g, dtype=torch.float64)
    sigma = torch.tensor([0.6, 2., 4.5, 9., 30.], dtype=torch.float64)       # 30: a kernel wider than the image
    p = torch.tensor([0.5, 0.2, 0.5, 0.9, 0.5], dtype=torch.float64)
    ref_field = np.stack([gaussian_filter(noise[b].numpy(), float(sigma[b])) for b in range(5)])
    field = gaussian_blur(noise, sigma)
    assert np.abs(field.numpy() - ref_field).max() < 1e-12
    listing1 = [f > erfinv((1 - float(pp))*2 - 1)*2**0.5*f.std() + f.mean() for f, pp in zip(ref_field, p)]
    assert torch.equal(proportion_threshold(field, p), torch.from_numpy(np.stack(listing1)))


def test_mixup_lambdas_are_beta_and_mix_images_and_soft_targets():
    from scipy import stats
    for alpha in (0.1, 1., 4.):
        lam = mixup_lambdas(20000, gen('cpu'), alpha=alpha)
        for q in (0.001, 0.1, 0.3, 0.5, 0.7, 0.9, 0.999):      # the distribution function at a few points
            assert abs((lam <= q).float().mean().item() - stats.beta(alpha, alpha).cdf(q)) < 0.012
    assert torch.equal(mixup_lambdas(8, gen('cpu', 5)), mixup_lambdas(8, gen('cpu', 5)))
    lam = torch.tensor([0.2, 0.9])
    x1, x2 = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)
    p1, p2 = torch.rand(2, 5, 4, 4).softmax(1), torch.rand(2, 5, 4, 4).softmax(1)
    assert torch.allclose(mixup(lam, x1, x2)[1], 0.9*x1[1] + 0.1*x2[1])
    assert torch.allclose(mixup(lam, p1, p2).sum(1), torch.ones(2, 4, 4))        # mixed targets stay distributions


def test_erasing_leaves_out_the_erased_pixels():
    labels = torch.randint(0, 4, (3, 24, 24))
    M = make_masks('cowout', labels, 4, gen('cpu'), p=0.5, sigma=3.)
    x = torch.rand(3, 3, 24, 24) + 0.1
    xe, ye = erase(M, x), erase(M, labels, IGNORE_INDEX)
    assert (xe[:, 0][M] == 0).all() and torch.equal(xe[:, 1][~M], x[:, 1][~M])
    assert (ye[M] == IGNORE_INDEX).all() and torch.equal(ye[~M], labels[~M])


def test_cross_domain_classmix_pastes_source_classes_onto_any_batch_of_targets():
    "DACS: the mask is made from the source ground truth; source pixels and labels go over the target."
    g = torch.Generator().manual_seed(0)
    y_src = random_labels(3, 6, 32, 32, g, 'cpu', ignore_frac=0.)
    x_src, x_tgt, pseudo_tgt = torch.rand(3, 3, 32, 32), torch.rand(3, 3, 32, 32), torch.randint(0, 6, (3, 32, 32))
    M = make_masks('classmix', y_src, 6, g)
    x_mix, y_mix = mix(M, x_src, x_tgt), mix(M, y_src, pseudo_tgt)
    assert torch.equal(x_mix[:, 0][M], x_src[:, 0][M]) and torch.equal(x_mix[:, 0][~M], x_tgt[:, 0][~M])
    assert torch.equal(y_mix[M], y_src[M]) and torch.equal(y_mix[~M], pseudo_tgt[~M])
    for b in range(3):
        n = len(y_src[b].unique())
        assert len(y_src[b][M[b]].unique()) == math.ceil(n/2)


def test_classmix_takes_any_integer_labels_and_never_counts_other_values():
    lab = torch.tensor([[[0, 1, 2, 255], [-1, 300, 2, 1]]])
    for dtype in (torch.uint8, torch.int32, torch.int64):
        l = lab.clamp(0, 255).to(dtype) if dtype == torch.uint8 else lab.to(dtype)
        M = classmix_masks(l, 3, torch.Generator().manual_seed(0), p=1.0)
        assert torch.equal(M, (l.long() >= 0) & (l.long() < 3))


@pytest.mark.parametrize('call, message', [
    (lambda: make_masks('cutmix', torch.zeros(2, 8, 8, dtype=torch.long), 3, p=1.0), r'p=1.0 must be in \(0, 1\)'),
    (lambda: make_masks('cowmix', torch.zeros(2, 8, 8, dtype=torch.long), 3, p=0), r'p=0 must be in \(0, 1\)'),
    (lambda: make_masks('cowout', torch.zeros(2, 8, 8, dtype=torch.long), 3, p=(0.9, 0.2)), r'p=\(0.9, 0.2\): the minimum must not exceed the maximum'),
    (lambda: make_masks('cutout', torch.zeros(2, 8, 8, dtype=torch.long), 3, p=(0.5, 1.5)), r'a range of proportions must lie in \[0, 1\]'),
    (lambda: make_masks('cowmix', torch.zeros(2, 8, 8, dtype=torch.long), 3, sigma=(16, 4)), r'sigma=\(16, 4\): the minimum must not exceed the maximum'),
    (lambda: make_masks('cowmix', torch.zeros(2, 8, 8, dtype=torch.long), 3, sigma=0), 'sigma=0 must be positive'),
    (lambda: make_masks('cutmix', torch.zeros(8, 8, dtype=torch.long), 3), r'labels must be a \(B, H, W\) integer tensor, got \(8, 8\)'),
    (lambda: make_masks('classmix', torch.zeros(2, 1, 8, 8, dtype=torch.long), 3), r'labels must be a \(B, H, W\) integer tensor, got \(2, 1, 8, 8\)'),
    (lambda: make_masks('classmix', torch.zeros(2, 8, 8), 3), r'labels must be a \(B, H, W\) integer tensor, got \(2, 8, 8\) torch.float32'),
    (lambda: make_masks('cutmix', torch.zeros(2, 8, 8, dtype=torch.long), 3, sigma=4), "mask 'cutmix' has no parameter 'sigma'; its parameters: p"),
    (lambda: make_masks('fmix', torch.zeros(2, 8, 8, dtype=torch.long), 3), "mask='fmix' is not one of: classmix, cutmix, cutout, cowmix, cowout"),
    (lambda: paste_onto_next(make_masks('cowmix', torch.zeros(1, 8, 8, dtype=torch.long), 3), torch.zeros(1, 3, 8, 8)), 'pasting needs a batch of at least 2'),
    (lambda: cow_masks((2, 8, 8), sigma=4, stride=3), r'stride=3 needs sigma >= 5.30, got a minimum of 4.0'),
    (lambda: mixup_lambdas(4, alpha=0), 'alpha=0 must be positive'),
    (lambda: mixup(torch.ones(2), torch.ones(2, 4, 4, dtype=torch.long), torch.ones(2, 4, 4, dtype=torch.long)), 'mixup needs floating tensors'),
])
def test_bad_parameters_name_themselves(call, message):
    with pytest.raises(ParameterError, match=message): call()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU')
def test_generator_on_another_device_is_a_clear_error():
    with pytest.raises(ParameterError, match="generator is on cpu but the masks are made on cuda"):
        make_masks('cowmix', torch.zeros(2, 8, 8, dtype=torch.long, device='cuda'), 3, torch.Generator())


def test_erase_fills_with_a_scalar_or_per_channel_values():
    M = torch.zeros(2, 4, 5, dtype=torch.bool); M[:, 1:3, 2:] = True
    x = torch.rand(2, 3, 4, 5)
    fill = x.mean((0, 2, 3), keepdim=True)                       # (1, 3, 1, 1): what CutOut/CowOut training fills with
    e = erase(M, x, fill=fill)
    assert torch.equal(e[:, :, ~M[0]], x[:, :, ~M[0]])
    assert torch.equal(e.permute(0, 2, 3, 1)[M], fill.flatten().expand(int(M.sum()), 3))
    y = torch.randint(0, 5, (2, 4, 5))
    assert torch.equal(erase(M, y, fill=255)[M], torch.full((int(M.sum()),), 255)) and erase(M, y, fill=255).dtype == y.dtype
