// classmix_lab's JupyterLab plugin, written as the prebuilt (federated) extension JupyterLab loads: a container
// `_JUPYTERLAB[name]` with `init(shareScope)` and `get('./extension')`. It needs no build step and imports nothing.
//
// What it fixes: a Run (Run All, Shift+Enter, the Run menu) asked for while a notebook's kernel is still starting
// (status bar: "No Kernel | Initializing") is dropped by JupyterLab: the cells are cleared and none is sent to the
// kernel (jupyterlab/jupyterlab#8490). The early request can also open a second kernel connection, on which widget
// models get lost. Here every run command waits until the current notebook's session is ready and its kernel has
// answered (kernel_info_reply), at most WAIT_MS, and then runs as asked. A run asked for once the kernel is up is not
// delayed.
var _JUPYTERLAB;
(function () {
  'use strict';
  var NAME = 'classmix-lab-run-when-ready';
  var WAIT_MS = 120000;
  var RUNS = /^(notebook:run-|runmenu:run)/;   // the notebook's run commands and the Run menu's

  function within(promise, ms) {
    return Promise.race([Promise.resolve(promise).catch(function () {}), new Promise(function (done) { setTimeout(done, ms); })]);
  }

  function answered(ctx) {
    var kernel = ctx.session && ctx.session.kernel;
    return ctx.isReady && !!kernel && kernel.connectionStatus === 'connected' && kernel.status !== 'unknown' && kernel.status !== 'starting';
  }

  async function kernelUp(ctx) {
    if (!ctx.isReady) await within(ctx.ready, WAIT_MS);
    var kernel = ctx.session && ctx.session.kernel;
    if (kernel && !kernel.isDisposed) await within(kernel.info, WAIT_MS);
  }

  var plugin = {
    id: NAME + ':plugin',
    description: 'Runs asked for while a notebook kernel starts wait for it instead of being dropped.',
    autoStart: true,
    requires: [],
    activate: function (app) {
      var commands = app.commands;
      var execute = commands.execute.bind(commands);
      commands.execute = function (id, args) {
        var widget = RUNS.test(id) ? app.shell.currentWidget : null;
        var ctx = widget && widget.sessionContext;
        if (!ctx || ctx.isDisposed || answered(ctx)) return execute(id, args);
        console.info(NAME + ': ' + id + ' waits for the kernel of ' + ctx.path);
        return kernelUp(ctx).then(function () { return execute(id, args); });
      };
    }
  };

  (_JUPYTERLAB = _JUPYTERLAB || {})[NAME] = {
    init: function () { return Promise.resolve(); },
    get: function (module) {
      if (module !== './extension') return Promise.reject(new Error(NAME + ' has no module ' + module));
      return Promise.resolve(function () { return { __esModule: true, default: plugin }; });
    }
  };
})();
