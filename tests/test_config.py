"""Settings: settings.ini, overridden by CLASSMIX_LAB_* environment variables, overridden by arguments."""
from pathlib import Path
import pytest
from classmix_lab.config import load_settings, ParameterError, find_settings_file, resolve_device
from conftest import ROOT
from classmix_lab.experiment import ExperimentParams


def test_the_projects_settings_file_is_found_from_inside_the_clone(monkeypatch):
    monkeypatch.chdir(ROOT/'nbs')
    assert find_settings_file() == ROOT/'settings.ini'
    s = load_settings()
    assert s.root('camvid') == (ROOT/'..'/'shared'/'data'/'camvid').resolve()   # relative to the file, not the cwd


def test_precedence_file_environment_arguments(tmp_path, monkeypatch):
    f = tmp_path/'conf'/'settings.ini'; f.parent.mkdir()
    f.write_text('[classmix_lab]\nruns_dir = my_runs\ndevice = cpu\ncityscapes_root = /data/cs\n')
    monkeypatch.delenv('CLASSMIX_LAB_RUNS_DIR'); monkeypatch.delenv('CLASSMIX_LAB_DEVICE')
    s = load_settings(f)
    assert s.runs_dir == tmp_path/'conf'/'my_runs' and s.device == 'cpu' and s.root('cityscapes') == Path('/data/cs')
    monkeypatch.setenv('CLASSMIX_LAB_DEVICE', 'cuda:1'); monkeypatch.setenv('CLASSMIX_LAB_CITYSCAPES_ROOT', '/fast/cs')
    s = load_settings(f)
    assert s.device == 'cuda:1' and s.root('cityscapes') == Path('/fast/cs')
    assert load_settings(f, device='cpu', runs_dir='/tmp/r').device == 'cpu'
    assert load_settings(f, runs_dir='/tmp/r').runs_dir == Path('/tmp/r')


def test_bad_settings_are_named(tmp_path, monkeypatch):
    f = tmp_path/'settings.ini'
    f.write_text('[classmix_lab]\ncolour = red\n')
    with pytest.raises(ParameterError, match="unknown setting 'colour'"):
        load_settings(f)
    f.write_text('[other]\nx = 1\n')
    with pytest.raises(ParameterError, match=r'has no \[classmix_lab\] section'):
        load_settings(f)
    monkeypatch.setenv('CLASSMIX_LAB_SETTINGS', str(tmp_path/'missing.ini'))
    with pytest.raises(ParameterError, match="CLASSMIX_LAB_SETTINGS=.*missing.ini': no such settings file"):
        find_settings_file()


def test_devices():
    assert str(resolve_device('cpu')) == 'cpu' and resolve_device('auto').type in ('cpu', 'cuda')
    with pytest.raises(ParameterError, match="device='gpu0' is not one of: auto, cpu, cuda, cuda:N"):
        resolve_device('gpu0')


def test_the_parameters_fall_into_groups_and_a_group_holds_its_own_alone():
    "Every parameter is in one group; a helper given a group (`p.group('data')`) can read nothing else, nor change it."
    from dataclasses import fields, FrozenInstanceError
    from classmix_lab.experiment import PARAM_GROUPS
    grouped = [k for keys in PARAM_GROUPS.values() for k in keys]
    assert sorted(grouped) == sorted(f.name for f in fields(ExperimentParams)), 'each parameter in exactly one group'
    p = ExperimentParams(dataset='camvid', image_scale=0.5, lr=0.01, workers=0, labeled='30', model='swiftnet-lite0')
    d = p.group('data')
    assert (d.dataset, d.image_scale) == ('camvid', 0.5) and not hasattr(d, 'lr') and not hasattr(d, 'labeled')
    assert p.group('training').lr == 0.01 and p.group('run').workers == 0 and p.group('split').labeled == '30'
    assert p.group('model').model == 'swiftnet-lite0' and type(d).__name__ == 'DataParams'
    with pytest.raises(FrozenInstanceError): d.dataset = 'voc'
    with pytest.raises(ParameterError, match="group='optim' is not one of: data, split, model, training, run"): p.group('optim')
