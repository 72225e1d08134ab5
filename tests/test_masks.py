"""ClassMix masks: exactly the union of ceil(p * n) of the present classes, reproducible, batched on any device."""
import math
import pytest
import torch
from classmix_lab.config import ParameterError
from classmix_lab.masks import classmix_masks, mix, paste_onto_next
from classmix_lab.data import IGNORE_INDEX

DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])


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
