"""The project's own rules: classmix_lab/ is what nbdev-export makes of nbs/, notebooks are clean, templates keep
their papermill parameters."""
import json, shutil, subprocess, sys
from pathlib import Path
import pytest
from conftest import ROOT

BIN = Path(sys.executable).parent


def _py_files(d):
    return {p.relative_to(d).as_posix(): p.read_text() for p in Path(d).rglob('*.py') if '__pycache__' not in p.parts}


def test_package_is_what_nbdev_export_makes(tmp_path):
    "Exporting nbs/ into a copy of the project reproduces classmix_lab/ exactly (no hand edits, nothing stale)."
    for f in ('pyproject.toml', 'settings.ini'): shutil.copy(ROOT/f, tmp_path/f)
    shutil.copytree(ROOT/'nbs', tmp_path/'nbs')
    (tmp_path/'classmix_lab').mkdir(); shutil.copy(ROOT/'classmix_lab'/'__init__.py', tmp_path/'classmix_lab'/'__init__.py')
    res = subprocess.run([str(BIN/'nbdev-export')], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    made, have = _py_files(tmp_path/'classmix_lab'), _py_files(ROOT/'classmix_lab')
    assert sorted(made) == sorted(have), f"modules differ: export makes {sorted(set(made) ^ set(have))}"
    stale = [f for f in made if made[f] != have[f]]
    assert not stale, f"nbdev-export would change {stale}: run `make export` and commit"


def test_notebooks_are_clean(tmp_path):
    "nbdev-clean would change no notebook (no outputs, counts or stray metadata; papermill's tags are kept)."
    shutil.copy(ROOT/'pyproject.toml', tmp_path/'pyproject.toml'); shutil.copytree(ROOT/'nbs', tmp_path/'nbs')
    res = subprocess.run([str(BIN/'nbdev-clean')], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    dirty = [p.relative_to(tmp_path).as_posix() for p in sorted((tmp_path/'nbs').rglob('*.ipynb'))
             if p.read_bytes() != (ROOT/p.relative_to(tmp_path)).read_bytes()]
    assert not dirty, f"run `make clean-notebooks`: nbdev-clean changes {dirty}"


@pytest.mark.parametrize('name', ['experiment', 'pretrain', 'dataset_stats', 'mask_gallery'])
def test_templates_have_a_parameters_cell(name):
    d = json.loads((ROOT/'nbs'/'experiments'/f'{name}.ipynb').read_text())
    tagged = [c for c in d['cells'] if 'parameters' in c.get('metadata', {}).get('tags', [])]
    assert len(tagged) == 1 and 'out_dir' in ''.join(tagged[0]['source'])


def test_experiment_template_parameters_match_the_library():
    "The experiment notebook's parameters are exactly ExperimentParams' fields (plus compare_with)."
    from dataclasses import fields, asdict
    from classmix_lab.experiment import ExperimentParams
    d = json.loads((ROOT/'nbs'/'experiments'/'experiment.ipynb').read_text())
    src = ''.join(next(c for c in d['cells'] if 'parameters' in c.get('metadata', {}).get('tags', []))['source'])
    names = {l.split('=')[0].strip() for l in src.splitlines() if '=' in l and not l.startswith('#')}
    assert names == {f.name for f in fields(ExperimentParams)} | {'compare_with'}
    values = {}
    exec(src, {}, values)   # the cell is plain assignments: its values are the defaults a notebook run without parameters gets
    values.pop('compare_with')
    lib = asdict(ExperimentParams())
    assert values == lib, {k: (values[k], lib[k]) for k in lib if values[k] != lib[k]}
    assert all(type(values[k]) is type(lib[k]) for k in lib), {k: (type(values[k]), type(lib[k])) for k in lib if type(values[k]) is not type(lib[k])}


def test_readme_commands_are_the_ci_commands():
    readme, ci = (ROOT/'README.md').read_text(), (ROOT/'.ci'/'run').read_text()
    assert 'make test' in ci and 'make test' in readme and 'make demo' in readme

def test_readme_result_tables_are_the_index():
    "Every result table of the README is a generated block that matches reports/index.json (`classmix-lab index --readme` remakes them)."
    from classmix_lab.index import readme_tables, read_index, _TABLE
    text = (ROOT/'README.md').read_text()
    blocks = [m.group('args') for m in _TABLE.finditer(text)]
    assert {'sweep=french', 'sweep=methods', 'sweep=camvid'} <= {a.split()[0] for a in blocks}, blocks
    assert readme_tables(text, read_index(ROOT/'reports')) == text, 'README tables differ from reports/index.json: run classmix-lab index --readme'
    in_tables = {i for m in _TABLE.finditer(text) for i in range(text[:m.start()].count('\n'), text[:m.end()].count('\n') + 1)}
    loose = [i + 1 for i, l in enumerate(text.split('\n')) if l.startswith('| ') and 'mIoU' in l and i not in in_tables]
    assert not loose, f'README lines {loose}: a result table outside a generated block'


def _imports(path:Path, pkg:str='classmix_lab') -> set:
    "The package's modules one module imports, at its top or inside a function (relative or absolute)."
    import ast
    mod = '.'.join(path.relative_to(ROOT).with_suffix('').parts)
    base = mod.rsplit('.', 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parent = base.split('.')[:len(base.split('.')) - node.level + 1]
                target = '.'.join(parent + ([node.module] if node.module else []))
            else: target = node.module or ''
            names = [target] + [f'{target}.{a.name}' for a in node.names]
        elif isinstance(node, ast.Import): names = [a.name for a in node.names]
        else: continue
        out |= {n for n in names if n.startswith(pkg + '.') and (ROOT/(n.replace('.', '/') + '.py')).is_file()}
    return out - {mod}


def test_the_package_has_no_import_circle():
    "No module imports, even lazily inside a function, a module that imports it back (directly or through others)."
    graph = {'.'.join(p.relative_to(ROOT).with_suffix('').parts): _imports(p) for p in (ROOT/'classmix_lab').rglob('*.py') if p.name != '_modidx.py'}
    def cycle_from(start):
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start: return path + [nxt]
                if nxt not in path: stack.append((nxt, path + [nxt]))
    cycles = [c for c in map(cycle_from, graph) if c]
    assert not cycles, ' -> '.join(min(cycles, key=len))
