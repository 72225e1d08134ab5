"""DeepLabv2 as thesis Table 3.1: structure, size, the four ASPP branches, true BatchNorm freezing, weight loading; SwiftNet-RN18."""
import pytest
import torch
from classmix_lab.config import ParameterError
from classmix_lab.model import DeepLabV2, get_model, count_params, load_weights, param_groups, read_state_dict, is_head


@pytest.fixture(scope='module')
def r101():
    return get_model('deeplabv2-r101', 19)


def test_resnet101_size_and_key_names(r101):
    "43.9 M parameters at 19 classes, the original's key names, blocks [3, 4, 23, 3], dilations 2 and 4."
    assert round(count_params(r101)/1e6, 1) == 43.9
    keys = list(r101.state_dict())
    for k in ('conv1.weight', 'bn1.running_mean', 'layer1.0.downsample.0.weight', 'layer3.22.conv3.weight',
              'layer4.2.bn3.bias', 'layer5.conv2d_list.0.weight', 'layer5.conv2d_list.3.bias'):
        assert k in keys
    assert [len(getattr(r101, f'layer{i}')) for i in range(1, 5)] == [3, 4, 23, 3]
    assert r101.layer2[0].conv1.stride == (2, 2) and r101.layer2[0].conv2.stride == (1, 1)   # Caffe style
    assert r101.layer3[5].conv2.dilation == (2, 2) and r101.layer4[1].conv2.dilation == (4, 4)
    assert r101.maxpool.ceil_mode and r101.maxpool.kernel_size == 3
    assert [c.dilation[0] for c in r101.layer5.conv2d_list] == [6, 12, 18, 24]
    assert all(c.bias is not None for c in r101.layer5.conv2d_list)
    w = torch.cat([c.weight.flatten() for c in r101.layer5.conv2d_list])
    assert abs(w.std().item() - 0.01) < 0.001


def test_output_stride_8_and_input_size_logits():
    m = get_model('deeplabv2-tiny', 11).eval()
    x = torch.rand(2, 3, 96, 192)
    logits, feats = m(x, return_features=True)
    assert logits.shape == (2, 11, 96, 192) and feats.shape[-2:] == (13, 25)


def test_aspp_sums_all_four_branches():
    m = get_model('deeplabv2-tiny', 5).eval()
    f = torch.rand(1, 512, 9, 9)
    with torch.no_grad():
        full = m.layer5(f)
        for i in range(4):   # removing any one branch changes the output by exactly that branch
            c = m.layer5.conv2d_list[i]
            assert torch.allclose(full - c(f), sum(m.layer5.conv2d_list[j](f) for j in range(4) if j != i), atol=1e-5)


def test_frozen_batchnorm_is_really_frozen():
    m = get_model('deeplabv2-tiny', 5, freeze_bn=True).train()
    stats = {k: v.clone() for k, v in m.state_dict().items() if 'running' in k}
    m(torch.rand(2, 3, 64, 64)).sum().backward()
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in stats.items())
    assert all(p.grad is None for n, p in m.named_parameters() if 'bn' in n or 'downsample.1' in n)
    assert not any(p['params'] and any('bn' in n for n, q in m.named_parameters() if any(q is x for x in p['params'])) for p in param_groups(m, 0.1))


def test_classifier_learns_ten_times_faster():
    g = param_groups(get_model('deeplabv2-tiny', 5), 2.5e-4)
    assert g[0]['lr'] == 2.5e-4 and g[1]['lr'] == 2.5e-3


def test_loads_original_checkpoint_layout(tmp_path, r101):
    "A checkpoint with the original key names, every key prefixed 'Scale.', loads with 100% backbone coverage; the 21-class classifier is dropped."
    src = get_model('deeplabv2-r101', 21).state_dict()
    torch.save({'Scale.' + k: v for k, v in src.items()}, tmp_path/'coco.pth')
    rep = load_weights(r101, tmp_path/'coco.pth')
    assert rep['backbone_coverage'] == 1.0
    assert {k.split('.')[0] for k in rep['skipped']} == {'layer5'} and not rep['unexpected']
    assert torch.equal(r101.layer3[22].conv3.weight, src['layer3.22.conv3.weight'])


def test_partial_checkpoints_are_refused(tmp_path):
    m = get_model('deeplabv2-tiny', 5)
    sd = m.state_dict()
    with pytest.raises(ParameterError, match=r'cover .* of the backbone \(need 100%\)'):
        load_weights(m, {k: v for k, v in sd.items() if not k.startswith('layer4')})
    (tmp_path/'bad.pt').write_bytes(b'not a checkpoint')
    with pytest.raises(ParameterError, match='bad.pt: not a loadable checkpoint'):
        read_state_dict(tmp_path/'bad.pt')
    with pytest.raises(ParameterError, match="weights file .*nope.pt' does not exist"):
        read_state_dict(tmp_path/'nope.pt')


def test_resnet101_key_names_are_the_originals(r101):
    "Every state-dict key: the backbone's are torchvision ResNet-101's (the Caffe model's names), the ASPP's layer5.conv2d_list.{0-3}."
    import torchvision
    keys = list(r101.state_dict())
    tv = [k for k in torchvision.models.resnet101(weights=None).state_dict() if not k.startswith('fc.')]
    assert [k for k in keys if not k.startswith('layer5.')] == tv
    assert [k for k in keys if k.startswith('layer5.')] == [f'layer5.conv2d_list.{i}.{p}' for i in range(4) for p in ('weight', 'bias')]
    assert count_params(r101) == 43_901_068
    assert len(keys) == 632 and sum(k.endswith('num_batches_tracked') for k in keys) == 104


def test_loads_checkpoint_without_prefix(tmp_path, r101):
    src = get_model('deeplabv2-r101', 19).state_dict()
    torch.save(src, tmp_path/'plain.pth')
    rep = load_weights(r101, tmp_path/'plain.pth')
    assert rep['backbone_coverage'] == 1.0 and not rep['skipped'] and not rep['missing'] and not rep['unexpected']
    assert all(torch.equal(v, src[k]) for k, v in r101.state_dict().items())


def test_loads_torchvision_imagenet_resnet101(tmp_path):
    "torchvision's resnet101 checkpoint (its real key names, fc included) fills the whole backbone; fc.* is ignored."
    import torchvision
    tv = torchvision.models.resnet101(weights=None).state_dict()
    torch.save(tv, tmp_path/'resnet101.pth')
    m = get_model('deeplabv2-r101-imagenet', 19)
    rep = load_weights(m, tmp_path/'resnet101.pth')
    assert rep['backbone_coverage'] == 1.0 and rep['ignored'] == ['fc.weight', 'fc.bias'] and not rep['unexpected']
    assert sorted(rep['missing']) == sorted(k for k in m.state_dict() if k.startswith('layer5.')) and not rep['warnings']
    assert torch.equal(m.layer3[22].conv3.weight, tv['layer3.22.conv3.weight']) and torch.equal(m.bn1.running_var, tv['bn1.running_var'])
    with pytest.warns(UserWarning, match="expects norm='imagenet'"):   # the Caffe-normalised default of deeplabv2-r101
        assert load_weights(get_model('deeplabv2-r101', 19), tv)['warnings']
    v3 = get_model('deeplabv3plus-r101', 19)
    rep = load_weights(v3, tmp_path/'resnet101.pth')
    assert rep['backbone_coverage'] == 1.0 and all(k.startswith(('aspp.', 'decoder.', 'classifier.')) for k in rep['missing'])
    assert torch.equal(v3.backbone.layer3[22].conv3.weight, tv['layer3.22.conv3.weight'])


@pytest.mark.parametrize('name', ['deeplabv2-tiny', 'deeplabv3plus-r50', 'swiftnet-rn18', 'swiftnet-lite0', 'unet-r50'])
def test_model_contract(name):
    "Every registered architecture: logits at the input size, features, a backward pass, a 10x head, frozen BN for real."
    m = get_model(name, 7).train()
    x = torch.rand(2, 3, 65, 97)
    logits, feats = m(x, return_features=True)
    assert logits.shape == (2, 7, 65, 97) and feats.ndim == 4
    logits.mean().backward()
    assert all(p.grad is not None for p in m.parameters())
    back, head = param_groups(m, 0.01)
    assert head['lr'] == 0.1 and len(back['params']) + len(head['params']) == len(list(m.parameters()))
    f = get_model(name, 7, freeze_bn=True).train()
    stats = {k: v.clone() for k, v in f.state_dict().items() if 'running' in k and not is_head(f, k)}
    f(x).sum().backward()
    assert stats and all(torch.equal(v, f.state_dict()[k]) for k, v in stats.items())


def test_deeplabv3plus_structure():
    m = get_model('deeplabv3plus-r101', 21)
    assert round(count_params(m)/1e6, 1) == 59.3
    assert [len(getattr(m.backbone, f'layer{i}')) for i in range(1, 5)] == [3, 4, 23, 3]
    assert [c[0].dilation[0] for c in m.aspp.convs[1:]] == [6, 12, 18] and m.backbone.layer4[0].conv2.stride == (1, 1)
    m8 = get_model('deeplabv3plus-r50', 21, output_stride=8)
    assert [c[0].dilation[0] for c in m8.aspp.convs[1:]] == [12, 24, 36] and m8.backbone.layer3[0].conv2.stride == (1, 1)
    with pytest.raises(ParameterError, match='output_stride=32 is not one of: 8, 16'):
        get_model('deeplabv3plus-r50', 21, output_stride=32)


# --- SwiftNet-RN18 -------------------------------------------------------------------------------------------------

def _swiftnet_head(m):
    return [*m.spp.parameters(), *m.upsample.parameters(), *m.classifier.parameters()]


def test_swiftnet_odd_sizes_and_features():
    "Logits at the input size for odd sizes (also a batch of one in eval mode); 128-channel features at stride 4."
    m = get_model('swiftnet-rn18', 19).eval()
    with torch.no_grad():
        logits, feats = m(torch.rand(1, 3, 97, 131), return_features=True)
        assert logits.shape == (1, 19, 97, 131) and feats.shape == (1, 128, 25, 33)
        assert m(torch.rand(1, 3, 33, 47)).shape == (1, 19, 33, 47)
    m.train()
    logits, feats = m(torch.rand(2, 3, 64, 200), return_features=True)
    assert logits.shape == (2, 19, 64, 200) and feats.shape == (2, 128, 16, 50)
    assert m(torch.rand(1, 3, 64, 64)).shape == (1, 19, 64, 64)   # no 1x1 SPP grid: one image per batch trains too


def test_swiftnet_structure():
    "11.8 M parameters (the SwiftNet paper's); torchvision's ResNet-18 key names under backbone.; SPP 128 -> 3 x 42 -> 128; ladder at strides 16, 8, 4."
    import torchvision
    m = get_model('swiftnet-rn18', 19)
    assert round(count_params(m)/1e6, 1) == 11.8 and count_params(m) == 11_797_071
    tv = [k for k in torchvision.models.resnet18(weights=None).state_dict() if not k.startswith('fc.')]
    assert [k[len('backbone.'):] for k in m.state_dict() if k.startswith('backbone.')] == tv
    assert all(k.startswith(('backbone.', 'spp.', 'upsample.', 'classifier.')) for k in m.state_dict())
    assert m.spp.bottleneck[2].out_channels == 128 and m.spp.grids == (8, 4, 2)
    assert [lv[2].out_channels for lv in m.spp.levels] == [42]*3 and m.spp.fuse[2].in_channels == 254
    assert [u.project[2].in_channels for u in m.upsample] == [256, 128, 64]
    assert all(u.blend[2].kernel_size == (3, 3) and u.blend[2].out_channels == 128 for u in m.upsample)
    assert m.classifier[2].kernel_size == (1, 1) and m.classifier[2].bias is not None and m.config['norm'] == 'imagenet'


def test_swiftnet_param_groups_head_vs_backbone():
    m = get_model('swiftnet-rn18', 19)
    back, head = param_groups(m, 1e-3)
    assert back['lr'] == 1e-3 and head['lr'] == pytest.approx(1e-2)
    ids = lambda ps: {id(p) for p in ps}
    assert ids(back['params']) == ids(m.backbone.parameters()) and ids(head['params']) == ids(_swiftnet_head(m))
    f = get_model('swiftnet-rn18', 19, freeze_bn=True)   # the encoder's frozen BatchNorm leaves the backbone group; the head's stays
    nb = sum(p.numel() for mod in f.backbone.modules() if isinstance(mod, torch.nn.BatchNorm2d) for p in mod.parameters())
    assert sum(p.numel() for g in param_groups(f, 1e-3) for p in g['params']) == count_params(f) - nb
    assert ids(param_groups(f, 1e-3)[1]['params']) == ids(_swiftnet_head(f))


def test_swiftnet_loads_torchvision_resnet18(tmp_path):
    "torchvision's resnet18 checkpoint (its key names, fc included) fills the whole backbone; the head stays as it is."
    import torchvision
    tv = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(tv, tmp_path/'resnet18.pth')
    m = get_model('swiftnet-rn18', 19)
    head_before = [p.clone() for p in _swiftnet_head(m)]
    rep = load_weights(m, tmp_path/'resnet18.pth')
    assert rep['backbone_coverage'] == 1.0 and rep['ignored'] == ['fc.weight', 'fc.bias'] and not rep['unexpected'] and not rep['warnings']
    assert sorted(rep['missing']) == sorted(k for k in m.state_dict() if not k.startswith('backbone.'))
    assert all(torch.equal(v, tv[k[len('backbone.'):]]) for k, v in m.state_dict().items() if k.startswith('backbone.'))
    assert all(torch.equal(a, b) for a, b in zip(head_before, _swiftnet_head(m)))
    src = get_model('swiftnet-rn18', 21).state_dict()   # a SwiftNet of another class count: all but the classifier's conv
    rep = load_weights(m, src)
    assert rep['backbone_coverage'] == 1.0 and rep['skipped'] == ['classifier.2.weight', 'classifier.2.bias']
    with pytest.raises(ParameterError, match=r'of the backbone \(need 100%\)'):
        load_weights(m, {k: v for k, v in tv.items() if not k.startswith('layer4.')})


def test_swiftnet_frozen_batchnorm_keeps_running_stats():
    "freeze_bn freezes the encoder's BatchNorm (pretrained statistics); the ladder's, randomly initialised, trains."
    m = get_model('swiftnet-rn18', 5, freeze_bn=True).train()
    stats = {k: v.clone() for k, v in m.state_dict().items() if 'running' in k}
    m(torch.rand(2, 3, 64, 96)).sum().backward()
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in stats.items() if k.startswith('backbone.'))
    assert not torch.equal(stats['spp.bottleneck.0.running_mean'], m.spp.bottleneck[0].running_mean)
    enc = [mod for mod in m.backbone.modules() if isinstance(mod, torch.nn.BatchNorm2d)]
    assert not any(b.training for b in enc) and all(p.grad is None for b in enc for p in b.parameters())
    assert m.spp.bottleneck[0].training and m.spp.bottleneck[0].weight.grad is not None
    assert m.classifier[2].weight.grad is not None and m.backbone.conv1.weight.grad is not None
    m.set_freeze_bn(False).train()
    m(torch.rand(2, 3, 64, 96))
    assert not torch.equal(stats['backbone.bn1.running_mean'], m.backbone.bn1.running_mean)


def test_swiftnet_eval_is_deterministic():
    "Eval mode: the same logits on a second pass, and the same for an image alone as in a batch."
    torch.manual_seed(0)
    m = get_model('swiftnet-rn18', 7).eval()
    x = torch.rand(2, 3, 65, 97)
    with torch.no_grad():
        a, b, one = m(x), m(x), m(x[1:])
    assert torch.equal(a, b) and torch.allclose(a[1:], one, atol=1e-5)


def test_model_benchmark_smoke(tmp_path):
    "benchmarks/models.py runs at its smoke size and writes its JSON (the figures themselves are not checked here)."
    import json, subprocess, sys
    from conftest import ROOT
    out = tmp_path/'models.json'
    res = subprocess.run([sys.executable, str(ROOT/'benchmarks'/'models.py'), '--smoke', '--models', 'swiftnet-rn18', 'deeplabv2-tiny',
                          '--reference', 'deeplabv2-tiny', '--out', str(out)], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    d = json.loads(out.read_text())
    assert d['smoke'] and d['sizes']['eval'] == [1, 3, 64, 128] and d['sizes']['train'] == [2, 3, 32, 64]
    r = d['models']['swiftnet-rn18']
    assert r['params'] == 11_797_071 and r['params'] == r['backbone_params'] + r['head_params']
    assert r['eval']['median_ms'] > 0 and r['train']['median_ms'] > 0 and d['models']['deeplabv2-tiny']['eval_speedup_vs_reference'] == 1.0
