"""The sim-pretrained weights shipped in the package: safe to load, complete, and made from the current generator."""
import torch
from classmix_lab.experiment import PRETRAINED, pretrained_path
from classmix_lab.model import get_model, load_weights
from classmix_lab.synthstreets import GENERATOR_VERSION, CLASSES


def test_shipped_weights_load_safely_and_cover_the_model():
    for name, spec in PRETRAINED.items():
        path = pretrained_path(name)
        obj = torch.load(path, map_location='cpu', weights_only=True)   # no pickled objects beyond plain types
        assert obj['model'] == spec['model'] and obj['num_classes'] == len(obj['classes'])
        model = get_model(spec['model'], obj['num_classes'])
        rep = load_weights(model, path)
        assert rep['backbone_coverage'] == 1.0 and not rep['missing'] and not rep['unexpected'], rep
        assert all(torch.equal(model.state_dict()[k], v) for k, v in obj['state_dict'].items())


def test_shipped_weights_match_the_generator():
    obj = torch.load(pretrained_path('synthstreets-sim'), map_location='cpu', weights_only=True)
    # SynthStreets changed since the weights were made: remake them with `classmix-lab pretrain --force`
    assert obj['meta']['generator_version'] == GENERATOR_VERSION
    assert obj['classes'] == list(CLASSES) and obj['meta']['params']['style'] == 'sim'
    # BatchNorm saw the training batches and nothing else (a forward pass in train mode after training would count one more)
    assert all(int(v) == obj['meta']['params']['iterations'] for k, v in obj['state_dict'].items() if k.endswith('num_batches_tracked'))


def test_camvid_start_predicts_camvid_classes_from_the_current_generator():
    from classmix_lab.datasets import CAMVID_CLASSES
    obj = torch.load(pretrained_path('synthstreets-camvid'), map_location='cpu', weights_only=True)
    assert obj['classes'] == list(CAMVID_CLASSES) and obj['meta']['params']['classes'] == 'camvid'
    assert obj['meta']['generator_version'] == GENERATOR_VERSION       # else: `classmix-lab pretrain synthstreets-camvid --force`
    assert (obj['meta']['params']['height'], obj['meta']['params']['width']) == (180, 240)   # CamVid's half resolution, as `sweeps.CAMVID`
    assert set(obj['meta']['target_miou']) == {'CamVid train', 'CamVid val'}
