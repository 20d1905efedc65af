/**
 * NUX in JupyterLab: the DAG panel in the right sidebar, kind badges and problems on `%%nux`
 * cells, the catalog picker, the tune panel and "Export to production".
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

import { markCells } from './cell-marks';
import { addToolbarButtons, registerCommands } from './commands';
import { DagPanel } from './dag-panel';
import { reattachExport } from './export';
import { WorkbookSession } from './session';
import { NuxSettings } from './settings';

const PLUGIN_ID = 'nux-widgets:plugin';

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'NUX: chain vetted cells, see the DAG, run, tune and export from JupyterLab.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ISettingRegistry, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    registry: ISettingRegistry | null,
    palette: ICommandPalette | null
  ) => {
    const settings = new NuxSettings();
    if (registry) {
      registry
        .load(PLUGIN_ID)
        .then(loaded => settings.watch(loaded))
        .catch(reason => console.error('nux-widgets: cannot load settings', reason));
    }
    const sessions = new WeakMap<NotebookPanel, WorkbookSession>();
    const session = (panel: NotebookPanel): WorkbookSession => {
      let found = sessions.get(panel);
      if (!found) {
        const created = new WorkbookSession(panel, settings);
        created.changed.connect(() => markCells(created));
        panel.content.model?.cells.changed.connect(() => markCells(created));
        sessions.set(panel, created);
        // An export of this workbook may have run on while no page showed it.
        void panel.context.ready.then(() => reattachExport(created));
        found = created;
      }
      return found;
    };
    const dag = new DagPanel();
    app.shell.add(dag, 'right', { rank: 650 });
    tracker.widgetAdded.connect((_, panel) => {
      addToolbarButtons(app, panel);
      session(panel);
    });
    tracker.currentChanged.connect((_, panel) => {
      dag.setSession(panel ? session(panel) : null);
    });
    // A `%%nux` cell run in the kernel: its stage's trace shows on the graph.
    NotebookActions.executed.connect((_, { notebook, cell }) => {
      const panel = tracker.find(p => p.content === notebook);
      if (panel) {
        session(panel).cellExecuted(cell.model);
      }
    });
    if (tracker.currentWidget) {
      dag.setSession(session(tracker.currentWidget));
    }
    registerCommands({ app, tracker, dag, settings, session }, palette);
  }
};

export default plugin;
