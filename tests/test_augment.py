"""Device augmentations: the moved strong augmentation keeps its exact random stream; warps, validity masks, thin-plate
splines and photometric jitter are batched, per-sample, reproducible from a generator and free of host syncs."""
import math
import pytest
import torch
from classmix_lab.config import IGNORE_INDEX, ParameterError
from classmix_lab.augment import (colour_jitter, blur_images, strong_augment, affine_grid, warp, valid_mask,
                                  random_affine, photometric, control_points, tps_fit, tps_eval, tps_grid,
                                  rgb_to_hsv, hsv_to_rgb, phtps_photometric)

DEVICES = ['cpu'] + ([pytest.param('cuda', marks=pytest.mark.cuda)] if torch.cuda.is_available() else [])


def gen(device, seed=0): return torch.Generator(device=device).manual_seed(seed)

def identity(B, device='cpu'): return torch.tensor([[1., 0, 0], [0, 1, 0]], device=device).repeat(B, 1, 1)


# -- the strong augmentation moved from classmix_lab.train ---------------------------------------------------------

def test_strong_augment_fixed_result():
    "Values computed with classmix_lab.train.strong_augment before the move (seed 3 jitters and blurs)."
    x = torch.rand(2, 3, 16, 24, generator=torch.Generator().manual_seed(123))
    g = torch.Generator().manual_seed(3)
    y = strong_augment(x, g)
    assert y.double().sum().item() == pytest.approx(1101.2070823684335, rel=1e-6)
    assert (y.double()**2).sum().item() == pytest.approx(647.6189784001342, rel=1e-6)
    w = torch.arange(y.numel()).view_as(y).double().sin()
    assert (y.double()*w).sum().item() == pytest.approx(-6.943618950375037, abs=1e-4)
    torch.testing.assert_close(y[0, :, 0, 0], torch.tensor([0.24345073, 0.19278891, 0.27596581]), atol=1e-6, rtol=0)
    torch.testing.assert_close(y[1, :, 7, 11], torch.tensor([0.91453850, 0.37207749, 0.86188447]), atol=1e-6, rtol=0)
    assert torch.rand(1, generator=g).item() == pytest.approx(0.7994906306266785, abs=1e-7)   # same draws consumed
    y0 = strong_augment(x, torch.Generator().manual_seed(0))                                   # seed 0: jitter only
    assert y0.double().sum().item() == pytest.approx(1072.010961709777, rel=1e-6)


@pytest.mark.parametrize('device', DEVICES)
def test_colour_jitter_per_image_and_identity(device):
    x = torch.full((4, 3, 8, 8), 0.5, device=device) + 0.2*torch.rand(4, 3, 8, 8, generator=gen('cpu')).to(device)
    j = colour_jitter(x, gen(device))
    assert j.shape == x.shape and len({round(v, 6) for v in j.mean((1, 2, 3)).tolist()}) == 4
    torch.testing.assert_close(colour_jitter(x, gen(device), strength=0.), x, atol=1e-5, rtol=0)
    torch.testing.assert_close(blur_images(torch.full((1, 3, 9, 9), 0.3, device=device), 1.), torch.full((1, 3, 9, 9), 0.3, device=device))


# -- warps and validity masks --------------------------------------------------------------------------------------

@pytest.mark.parametrize('device', DEVICES)
def test_identity_warp_keeps_images_probabilities_and_labels(device):
    x = torch.rand(3, 3, 7, 10, generator=gen('cpu')).to(device)
    prob = torch.rand(3, 5, 7, 10, generator=gen('cpu', 1)).softmax(1).to(device)
    lab = torch.randint(0, 19, (3, 7, 10), generator=gen('cpu', 2)).to(device)
    for g in (identity(3, device), affine_grid(identity(3, device), x.shape),
              tps_grid(3, 7, 10, device=device, offsets=torch.zeros(3, 4, 2, device=device))):
        torch.testing.assert_close(warp(x, g), x, atol=1e-4, rtol=0)
        torch.testing.assert_close(warp(prob, g), prob, atol=1e-4, rtol=0)
        assert torch.equal(warp(lab, g), lab) and torch.equal(warp(lab.to(torch.uint8), g), lab.to(torch.uint8))
        assert valid_mask(g, (7, 10)).all() and valid_mask(g, (7, 10)).shape == (3, 7, 10)


@pytest.mark.parametrize('device', DEVICES)
def test_flip_mirrors_pixels(device):
    x = torch.rand(2, 3, 5, 8, generator=gen('cpu')).to(device)
    lab = torch.randint(0, 4, (2, 5, 8), generator=gen('cpu', 1)).to(device)
    theta = random_affine(2, gen(device), device, flip=1., translate=0., scale=(1., 1.))
    torch.testing.assert_close(warp(x, theta), x.flip(-1), atol=1e-5, rtol=0)
    assert torch.equal(warp(lab, theta), lab.flip(-1)) and valid_mask(theta, x.shape).all()
    no_flip = random_affine(2, gen(device), device, flip=0., translate=0., scale=(1., 1.))
    torch.testing.assert_close(warp(x, no_flip), x, atol=1e-5, rtol=0)


@pytest.mark.parametrize('device', DEVICES)
def test_shift_invalidates_the_pixels_it_brings_in(device):
    x, lab = torch.rand(1, 3, 4, 8, device=device), torch.randint(0, 4, (1, 4, 8), device=device)
    theta = identity(1, device); theta[:, 0, 2] = 3*2/8                    # each output pixel samples 3 pixels right
    m = valid_mask(theta, x.shape)
    assert m[0, 0].tolist() == [True]*5 + [False]*3
    torch.testing.assert_close(warp(x, theta)[..., :5], x[..., 3:], atol=1e-5, rtol=0)
    assert (warp(x, theta)[..., 5:] == 0).all() and (warp(x, theta, fill=-1.)[..., 5:] == -1).all()
    assert (warp(lab, theta)[..., 5:] == IGNORE_INDEX).all() and torch.equal(warp(lab, theta)[..., :5], lab[..., 3:])
    mask = torch.ones(1, 4, 8, dtype=torch.bool, device=device)
    assert torch.equal(warp(mask, theta), m)                                # bool masks: invalid is False


def test_zoom_out_leaves_a_valid_centre():
    theta = random_affine(1, scale=(0.5, 0.5), flip=0., translate=0.)
    m = valid_mask(theta, (16, 16))[0]
    assert m.float().mean().item() == 0.25 and m[4:12, 4:12].all() and not m[:4].any()


def test_translation_and_scale_ranges():
    th = random_affine(4000, gen('cpu'), flip=0.5, translate=0.05, scale=(0.5, 1.5))
    t, s = th[:, :, 2], 1/th[:, 1, 1]
    assert t.abs().max() <= 0.1 + 1e-6 and t.abs().max() > 0.099            # +-0.05 of the size = +-0.1 normalised
    assert 0.5 - 1e-5 <= s.min() and s.max() <= 1.5 + 1e-5 and abs(s.mean().item() - 1) < 0.02
    assert abs((th[:, 0, 0] < 0).float().mean().item() - 0.5) < 0.03       # flips half of them
    sl = 1/random_affine(4000, gen('cpu'), scale=2.)[:, 1, 1]               # a float: [1/2, 2] log-uniform
    assert 0.5 - 1e-5 <= sl.min() and sl.max() <= 2 + 1e-5 and abs(sl.log().mean().item()) < 0.03


def test_rotation_is_rigid_in_pixels():
    H, W = 20, 40
    th = random_affine(1, gen('cpu'), flip=0., translate=0., scale=(1., 1.), rotate=90., aspect=W/H)
    a = math.atan2(th[0, 1, 0].item()/(W/H), th[0, 0, 0].item())           # the drawn angle
    ref = torch.tensor([[[math.cos(a), -math.sin(a)/(W/H), 0.], [math.sin(a)*(W/H), math.cos(a), 0.]]])
    torch.testing.assert_close(th, ref, atol=1e-6, rtol=0)
    grid = affine_grid(th, (H, W))[0]
    px = (grid + 1)/2*torch.tensor([W, H])                                  # source positions in pixels
    d_out = torch.tensor([1., 0.])                                          # one pixel to the right in the output ...
    d_src = px[10, 21] - px[10, 20]                                         # ... moves one pixel in the source
    assert d_src.norm().item() == pytest.approx(d_out.norm().item(), abs=1e-4)


def test_warp_and_valid_mask_errors():
    x = torch.rand(2, 3, 4, 4)
    with pytest.raises(ParameterError, match='1 warps for a batch of 2'): warp(x, identity(1))
    with pytest.raises(ParameterError, match='need the output size'): valid_mask(identity(2))
    with pytest.raises(ParameterError, match='sampling grid or'): warp(x, torch.zeros(2, 3))
    with pytest.raises(ParameterError, match='flip'): random_affine(2, flip=1.5)
    with pytest.raises(ParameterError, match='scale'): random_affine(2, scale=(0., 1.))


# -- thin-plate splines --------------------------------------------------------------------------------------------

@pytest.mark.parametrize('device', DEVICES)
def test_tps_interpolates_its_control_points(device):
    c = control_points((3, 4), device).expand(5, 12, 2)
    d = c + 0.2*torch.randn(5, 12, 2, generator=gen('cpu')).to(device)
    torch.testing.assert_close(tps_eval(tps_fit(d, c), d, d), c, atol=1e-5, rtol=0)
    torch.testing.assert_close(tps_eval(tps_fit(c, d), c, c), d, atol=1e-5, rtol=0)


@pytest.mark.parametrize('device', DEVICES)
def test_tps_grid_moves_a_control_point_to_its_displaced_position(device):
    # 6 x 6 pixels: the 2 x 2 control points (+-0.5) are pixel centres (1 and 4), and a pixel is 1/3 wide
    x = torch.rand(1, 3, 6, 6, generator=gen('cpu')).to(device)
    off = torch.zeros(1, 4, 2, device=device); off[0, 3] = torch.tensor([-1/3, -2/3])   # bottom-right: 1 left, 2 up
    grid = tps_grid(1, 6, 6, device=device, offsets=off)
    torch.testing.assert_close(grid[0, 2, 3], torch.tensor([0.5, 0.5], device=device), atol=1e-5, rtol=0)
    torch.testing.assert_close(warp(x, grid)[0, :, 2, 3], x[0, :, 4, 4], atol=1e-4, rtol=0)
    for k, (i, j) in enumerate([(1, 1), (1, 4), (4, 1)]):                 # the other control points stay
        torch.testing.assert_close(grid[0, i, j], control_points(device=device)[k], atol=1e-5, rtol=0)


@pytest.mark.parametrize('device', DEVICES)
def test_tps_validity_mask_is_where_the_grid_leaves_the_image(device):
    grid = tps_grid(6, 24, 40, gen(device), device, sigma=0.3)
    m = valid_mask(grid)
    assert torch.equal(m, (grid.abs() <= 1).all(-1)) and 0 < m.float().mean() < 1
    lab = torch.randint(0, 5, (6, 24, 40), device=device)
    wl = warp(lab, grid)
    assert (wl[~m] == IGNORE_INDEX).all() and (wl[m] < 5).all()
    torch.testing.assert_close(warp(torch.ones(6, 3, 24, 40, device=device), grid)[:, 0], m.float(), atol=1e-5, rtol=0)


def test_tps_displacement_scale():
    "sigma is a fraction of the image size: the control points move by N(0, (2 sigma)^2) in normalised units."
    grid = tps_grid(4000, 2, 2, gen('cpu'), sigma=0.01)                    # 2 x 2 pixels: the pixel centres are +-0.5
    d = grid.view(4000, 4, 2) - control_points()                            # minus the displacement, to first order
    assert 0.0195 < d.std().item() < 0.0205 and abs(d.mean().item()) < 1e-3


# -- photometric ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('device', DEVICES)
def test_photometric_identity_and_ranges(device):
    x = torch.rand(4, 3, 6, 6, generator=gen('cpu')).to(device)
    torch.testing.assert_close(photometric(x, gen(device), brightness=0., contrast=(1., 1.)), x)
    flat = torch.full((64, 3, 4, 4), 0.5, device=device)
    shift = photometric(flat, gen(device))[:, 0, 0, 0] - 0.5                 # flat images: brightness only
    assert shift.abs().max() <= 0.1 + 1e-6 and shift.abs().max() > 0.09
    y = photometric(x, gen(device), brightness=0., contrast=(1.25, 1.25), clamp=False)
    m = x.mean((1, 2, 3), keepdim=True)
    torch.testing.assert_close(y, (x - m)*1.25 + m)


@pytest.mark.parametrize('device', DEVICES)
def test_hsv_round_trip_and_phtps_photometric(device):
    x = torch.rand(6, 3, 5, 7, generator=gen('cpu')).to(device)
    torch.testing.assert_close(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-5, rtol=0)
    neutral = dict(brightness=0., saturation=(1., 1.), hue=0., value=(1., 1.), permute=False)
    torch.testing.assert_close(phtps_photometric(x, gen(device), **neutral), x, atol=1e-5, rtol=0)
    red = torch.tensor([1., 0., 0.], device=device).view(1, 3, 1, 1)
    torch.testing.assert_close(phtps_photometric(red, **{**neutral, 'hue': (1/3, 1/3)}).flatten(),
                               torch.tensor([0., 1., 0.], device=device), atol=1e-5, rtol=0)
    p = phtps_photometric(x, gen(device), **{**neutral, 'permute': True})
    torch.testing.assert_close(p.sort(1).values, x.sort(1).values, atol=1e-5, rtol=0)
    orders = {tuple((p[b, :, 0, 0][:, None] - x[b, :, 0, 0][None]).abs().argmin(1).tolist()) for b in range(6)}
    assert len(orders) > 1                                                  # per-image channel orders


# -- every random augmentation: per sample, reproducible, batch of 1 -----------------------------------------------

def _random_ops(device):
    x = torch.rand(5, 3, 12, 16, generator=gen('cpu', 9)).to(device)
    return {
        'colour_jitter': lambda g, n=5: colour_jitter(x[:n], g),
        'random_affine': lambda g, n=5: random_affine(n, g, device, rotate=20.),
        'photometric': lambda g, n=5: photometric(x[:n], g),
        'tps_grid': lambda g, n=5: tps_grid(n, 12, 16, g, device),
        'phtps_photometric': lambda g, n=5: phtps_photometric(x[:n], g),
        'warp(random_affine)': lambda g, n=5: warp(x[:n], random_affine(n, g, device)),
    }


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('name', list(_random_ops('cpu')))
def test_random_ops_per_sample_reproducible_and_batch_of_one(device, name):
    op = _random_ops(device)[name]
    a, b, c = op(gen(device, 1)), op(gen(device, 1)), op(gen(device, 2))
    assert torch.equal(a, b), 'the same seed must give the same result'
    assert not torch.equal(a, c), 'another seed must give another result'
    flat = a.flatten(1)
    assert all(not torch.allclose(flat[i], flat[j]) for i in range(5) for j in range(i + 1, 5)), 'per-sample parameters'
    one = op(gen(device, 1), 1)
    assert one.shape[0] == 1 and torch.isfinite(one).all()


@pytest.mark.cuda
def test_generator_on_another_device_is_an_error():
    if not torch.cuda.is_available(): pytest.skip('needs a second device type')
    with pytest.raises(ParameterError, match='generator is on'):
        random_affine(2, torch.Generator(), 'cuda')


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason='host synchronisation is a CUDA matter')
def test_no_host_synchronisation_on_cuda():
    dev = 'cuda'
    x = torch.rand(4, 3, 32, 48, device=dev)
    lab = torch.randint(0, 19, (4, 32, 48), device=dev)
    g = gen(dev)
    colour_jitter(x, g); blur_images(x, 1.)                               # first calls may copy the YIQ constants
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('error')
    try:
        y = strong_augment(x, g); y = colour_jitter(y, g); y = blur_images(y, 0.7)
        theta = random_affine(4, g, dev, rotate=10., aspect=1.5)
        grid = affine_grid(theta, x.shape)
        y = photometric(warp(y, grid), g); wl = warp(lab, grid); m = valid_mask(grid)
        tg = tps_grid(4, 32, 48, g, dev)
        y = warp(phtps_photometric(y, g), tg); wl = warp(wl, tg); m = m & valid_mask(tg)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert torch.isfinite(y).all()
