"""The mask explorer in a real JupyterLab: a headless server, Debian's Chromium driven by Playwright, the explorer
notebook run from the Run menu, a control changed, the drawn image changed."""
import hashlib, json, os, secrets, shutil, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest
from conftest import ROOT

pytestmark = pytest.mark.browser
NOTEBOOK = ROOT/'nbs'/'explore'/'explore_masks.ipynb'
SMALL = "dataset_kwargs = {'synthstreets': dict(style='real', height=48, width=96, n_train=8, n_val=4)}"


def _chromium():
    for p in ('/usr/bin/chromium', '/usr/bin/chromium-browser'):
        if Path(p).is_file(): return p


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def _notebook_copy(dest:Path) -> Path:
    "The shipped explorer notebook with a small SynthStreets in its parameters cell."
    nb = json.loads(NOTEBOOK.read_text())
    cell = next(c for c in nb['cells'] if 'parameters' in c.get('metadata', {}).get('tags', []))
    src = ''.join(cell['source']).splitlines()
    assert any(l.startswith('dataset_kwargs =') for l in src), 'the explorer notebook lost its dataset_kwargs parameter'
    cell['source'] = '\n'.join(SMALL if l.startswith('dataset_kwargs =') else l for l in src)
    out = dest/NOTEBOOK.name
    out.write_text(json.dumps(nb))
    return out


def _run_all(page):
    page.locator('.lm-MenuBar-item', has_text='Run').first.click()
    page.locator('.lm-Menu-item', has_text='Run All Cells').first.click()


def _run_all_until(page, target, timeout:float):
    """Run All Cells from the Run menu until `target` shows. A kernel dialog is accepted; the run is asked for again
    while nothing runs and a cell has not run (requests sent while the kernel's connection is still settling can be
    lost); and the page is loaded afresh when a widget shows 'model not found', since a widget manager that lost the
    kernel's comm messages does not recover by running the cells again."""
    prompts = page.locator('.jp-CodeCell .jp-InputPrompt')
    lost = page.locator('.jp-OutputArea-output', has_text='Error displaying widget')
    deadline, asked = time.time() + timeout, 0.
    while not target.is_visible():
        dialog = page.locator('.jp-Dialog')
        if dialog.count() and dialog.first.is_visible(): dialog.first.locator('.jp-mod-accept').first.click()
        texts = [t.strip() for t in prompts.all_inner_texts()]
        if '[*]:' not in texts and time.time() - asked > 10:
            if lost.count() > 0: page.reload(); _wait_for_kernel(page); _run_all(page); asked = time.time()
            elif any(t in ('[ ]:', '') for t in texts): _run_all(page); asked = time.time()
        if time.time() > deadline: raise TimeoutError(f'nothing showed {target} within {timeout} s')
        page.wait_for_timeout(500)


def _wait_for_kernel(page):
    page.wait_for_selector('.jp-NotebookPanel .jp-Cell', state='visible')
    page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]')


@pytest.fixture
def lab(tmp_path):
    "A JupyterLab server on a free localhost port with a token, its files and settings in tmp_path; stopped after."
    port, token = _free_port(), secrets.token_hex(16)
    work = tmp_path/'work'; work.mkdir()
    _notebook_copy(work)
    for name, value in (('notebook-extension/tracker', dict(autoStartDefaultKernel=True)),       # no kernel dialog
                        ('apputils-extension/notification', dict(fetchNews='false', checkForUpdates=False)),  # no news toast
                        ('docmanager-extension/plugin', dict(autosave=False))):   # a reload shows the file as it came
        f = tmp_path/'settings'/'@jupyterlab'/f'{name}.jupyterlab-settings'
        f.parent.mkdir(parents=True, exist_ok=True); f.write_text(json.dumps(value))
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path/'config'), JUPYTER_RUNTIME_DIR=str(tmp_path/'runtime'),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path/'settings'), JUPYTERLAB_WORKSPACES_DIR=str(tmp_path/'workspaces'),
               IPYTHONDIR=str(tmp_path/'ipython'), MPLBACKEND='Agg')
    log = open(tmp_path/'jupyter.log', 'w')
    proc = subprocess.Popen([sys.executable, '-m', 'jupyterlab', '--no-browser', '--ip=127.0.0.1', f'--port={port}',
                             f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={work}', '--ServerApp.port_retries=0',
                             '--allow-root', '--LabApp.news_url=', '--LabApp.extension_manager=readonly',
                             '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate'],
                            cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f'http://127.0.0.1:{port}'
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f'{url}/api/status?token={token}', timeout=5): break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    pytest.fail(f'JupyterLab did not start:\n{(tmp_path/"jupyter.log").read_text()[-3000:]}')
                time.sleep(0.5)
        yield url, token, tmp_path
    finally:
        try: urllib.request.urlopen(urllib.request.Request(f'{url}/api/shutdown?token={token}', method='POST'), timeout=10)
        except OSError: pass
        try: proc.wait(20)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait(10)
        log.close()


def test_explorer_redraws_when_a_control_changes(lab):
    exe = _chromium()
    if exe is None: pytest.skip('Chromium is not installed (apt-get install chromium)')
    pw = pytest.importorskip('playwright.sync_api', reason='playwright is not installed (pip install playwright)')
    url, token, tmp = lab
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=['--no-sandbox', '--disable-gpu', '--disable-background-networking'])
        try:
            page = browser.new_page(viewport=dict(width=1500, height=1000))
            page.set_default_timeout(180_000)   # a loaded CI machine imports torch slowly
            page.on('dialog', lambda d: d.accept())   # a reload of a notebook with unsaved changes asks first
            page.goto(f'{url}/lab/tree/{NOTEBOOK.name}?token={token}')
            _wait_for_kernel(page)
            image = page.locator('.jp-OutputArea-output img.widget-image').first
            _run_all_until(page, image, timeout=420)
            page.wait_for_function("() => { const i = document.querySelector('img.widget-image'); return i && i.complete && i.naturalWidth > 0; }")
            status = page.locator('.jp-OutputArea-output .widget-html-content', has_text='classmix').first
            status.wait_for()
            before_src, before_png = image.get_attribute('src'), image.screenshot()
            mask = page.locator('.widget-dropdown', has_text='mask').locator('select')
            mask.select_option(label='cowmix')
            page.wait_for_function("old => { const i = document.querySelector('img.widget-image'); return i && i.src !== old && i.complete && i.naturalWidth > 0; }",
                                   arg=before_src)
            page.locator('.jp-OutputArea-output .widget-html-content', has_text='cowmix').first.wait_for()
            after_png = image.screenshot()
            (tmp/'before.png').write_bytes(before_png); (tmp/'after.png').write_bytes(after_png)
            assert hashlib.sha256(before_png).digest() != hashlib.sha256(after_png).digest()
            assert page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]', has_text='Traceback').count() == 0
        except Exception:
            page.screenshot(path=str(tmp/'failure.png'), full_page=True)   # left in the test's tmp_path
            raise
        finally:
            browser.close()
