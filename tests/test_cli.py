"""The console script: bad input gives one clear line naming the parameter and what it accepts, and exit status 2."""
import os, subprocess, sys
from pathlib import Path
import pytest

CLI = str(Path(sys.executable).parent/'classmix-lab')


def cli(*args, env=None):
    return subprocess.run([CLI, *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300)


@pytest.mark.parametrize('args, message', [
    (['run', 'method=fixmatch'], "method='fixmatch' is not one of: supervised, classmix"),
    (['run', 'dataset=kitti'], "dataset='kitti' is not one of: synthstreets"),
    (['run', 'labeled=601'], "labeled=601 must be between 1 and 600 (the images in synthstreets train), a fraction in (0, 1] or 'all'"),
    (['run', 'out_dir=/proc/no/such'], "out_dir='/proc/no/such' cannot be created"),
    (['run', 'iterations=lots'], "iterations='lots' must be an integer"),
    (['run', 'colour=red'], "unknown parameter 'colour'"),
    (['sweep', 'grid', 'method=supervised,mixup'], "method='mixup' is not one of: supervised, classmix"),
    (['ablation', '--seeds', 'one'], "seeds='one' must be like '0', '0,1,2' or '0-9'"),
    (['evaluate', '/no/such/run'], "/no/such/run/metrics.json: no metrics; is /no/such/run a finished run?"),
    (['dacs', '--name', 'sim to real'], "sweep='sim to real' must be letters, digits, '_', '.', '+' or '-'"),
    (['pretrain', 'imagenet'], "'imagenet' is neither a start to pretrain (synthstreets-sim, synthstreets-camvid) nor key=value"),
    (['camvid', 'splits=0,12'], "splits='0,12': the committed CamVid splits are 0-9"),
])
def test_bad_input_is_one_clear_line(args, message):
    res = cli(*args)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f'classmix-lab: error: {message}'), res.stderr


def test_runs_dir_that_cannot_be_created(tmp_path):
    res = cli('run', 'method=supervised', env=dict(CLASSMIX_LAB_RUNS_DIR='/proc/forbidden'))
    assert res.returncode == 2
    assert res.stderr.strip() == "classmix-lab: error: runs_dir='/proc/forbidden/runs' cannot be created: No such file or directory"


def test_help_lists_the_commands():
    out = cli('--help').stdout
    for c in ('demo', 'run', 'sweep', 'index', 'pretrain'): assert c in out


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    "The main job, shortened to 2 iterations a run: four reports, an index, and the index's path printed last."
    res = cli('demo', '--iterations', '2')
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    reports = Path(os.environ['CLASSMIX_LAB_REPORTS_DIR'])
    assert res.stdout.strip().splitlines()[-1] == f"report: {reports/'index.html'}"
    import json
    runs = json.loads((reports/'index.json').read_text())['runs']
    assert [(r['run'], r['status']) for r in runs] == [('sim-pretrained', 'ok'), ('supervised', 'ok'), ('full-supervision', 'ok'), ('classmix', 'ok')]
    assert runs[0]['miou'] == runs[0]['start_miou'] == runs[1]['start_miou']     # every run starts from the same weights
    assert runs[3]['n_labeled'] == 12 and runs[2]['n_labeled'] == 600
    for r in runs: assert (reports/r['report']).is_file()
    for line in ('[1/4] demo/sim-pretrained', '[4/4] demo/classmix', 'it 2/2'):
        assert line in res.stdout                                                # progress in the terminal


@pytest.mark.slow   # trains a run to evaluate
def test_evaluate_prints_and_writes_a_runs_scores_on_another_split(tmp_path):
    from conftest import TINY
    from classmix_lab.experiment import ExperimentParams, run_experiment
    m = run_experiment(ExperimentParams.from_dict({**TINY, 'labeled': '4', 'iterations': 1, 'batch_size': 2, 'method': 'supervised',
                                                   'out_dir': str(tmp_path/'run')}), progress=None).metrics
    res = cli('evaluate', str(tmp_path/'run'), 'split=val')
    assert res.returncode == 0, res.stderr
    assert f"mIoU {m['miou']:.2f}" in res.stdout and 'road' in res.stdout
    assert (tmp_path/'run'/'eval_synthstreets_val.json').is_file()
    bad = cli('evaluate', str(tmp_path/'run'), 'split=test')
    assert bad.returncode == 2 and "split='test'" in bad.stderr


@pytest.mark.slow   # several CLI processes
def test_index_readme_remakes_the_table_blocks_from_the_index(tmp_path):
    "`index --readme PATH` rewrites each table block's body from index.json, leaves the prose alone, and says when nothing changed."
    import json
    from classmix_lab.index import markdown_table
    recs = [r for r in json.loads((Path(__file__).parents[1]/'reports'/'index.json').read_text())['runs'] if r['sweep'] == 'french']
    reports = tmp_path/'reports'; reports.mkdir()
    (reports/'index.json').write_text(json.dumps(dict(runs=recs)))
    readme = tmp_path/'NOTES.md'
    readme.write_text("# Notes\n\nprose before\n\n<!-- table sweep=french columns=miou,runs -->\n| stale | 0 |\n<!-- /table -->\n\nprose after\n")
    env = dict(CLASSMIX_LAB_REPORTS_DIR=str(reports))
    res = cli('index', '--readme', str(readme), env=env)
    assert res.returncode == 0, res.stderr
    assert 'table sweep=french columns=miou,runs remade' in res.stdout
    text = readme.read_text()
    assert text == ("# Notes\n\nprose before\n\n<!-- table sweep=french columns=miou,runs -->\n" + markdown_table(recs, 'french', ('miou', 'runs'))
                    + "\n<!-- /table -->\n\nprose after\n")
    assert '| CutMix |' in text and 'stale' not in text
    again = cli('index', '--readme', str(readme), env=env)
    assert again.returncode == 0 and 'its tables already match the index' in again.stdout and readme.read_text() == text
    missing = cli('index', '--readme', str(tmp_path/'nope.md'), env=env)
    assert missing.returncode == 2 and f"--readme {tmp_path/'nope.md'}: no such file" in missing.stderr
