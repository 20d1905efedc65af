/** The extension's commands, their palette entries and the notebook toolbar buttons. */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { ICommandPalette, showErrorMessage, ToolbarButton } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';

import { addCatalogCell } from './catalog-picker';
import { DagPanel } from './dag-panel';
import { exportToProduction } from './export';
import { problemsOf, WorkbookSession } from './session';
import { NuxSettings } from './settings';
import { openTunePanel } from './tune-panel';
import { renderProblem } from './workbook';

export namespace CommandIDs {
  export const openDag = 'nux:open-dag';
  export const addCell = 'nux:add-catalog-cell';
  export const run = 'nux:run-workbook';
  export const validate = 'nux:validate';
  export const tune = 'nux:tune';
  export const exportProject = 'nux:export';
}

export interface ICommandContext {
  app: JupyterFrontEnd;
  tracker: INotebookTracker;
  dag: DagPanel;
  settings: NuxSettings;
  session: (panel: NotebookPanel) => WorkbookSession;
}

export function registerCommands(ctx: ICommandContext, palette: ICommandPalette | null): void {
  const { app, tracker, dag, settings } = ctx;
  const current = (): WorkbookSession | null =>
    tracker.currentWidget ? ctx.session(tracker.currentWidget) : null;
  const enabled = () => tracker.currentWidget !== null;

  app.commands.addCommand(CommandIDs.openDag, {
    label: 'NUX: Show the workbook graph',
    execute: () => app.shell.activateById(dag.id)
  });
  app.commands.addCommand(CommandIDs.addCell, {
    label: 'NUX: Add a stage from the catalog',
    caption: 'Add a %%nux cell from the vetted catalog',
    isEnabled: enabled,
    execute: async () => {
      const session = current();
      if (!session) {
        return null;
      }
      try {
        return await addCatalogCell(
          session.panel,
          session.validation?.graph ?? null,
          settings.values.catalogPath
        );
      } catch (error) {
        await showErrorMessage('NUX catalog', problemsOf(error).map(renderProblem).join('\n'));
        return null;
      }
    }
  });
  app.commands.addCommand(CommandIDs.run, {
    label: 'NUX: Run the workbook',
    isEnabled: enabled,
    execute: () => dag.runWorkbook()
  });
  app.commands.addCommand(CommandIDs.validate, {
    label: 'NUX: Check the workbook',
    isEnabled: enabled,
    execute: () => current()?.validate()
  });
  app.commands.addCommand(CommandIDs.tune, {
    label: 'NUX: Tune the workbook',
    isEnabled: enabled,
    execute: () => {
      const session = current();
      if (!session) {
        return;
      }
      const widget = openTunePanel(session, settings);
      app.shell.add(widget, 'main', { mode: 'split-right' });
    }
  });
  app.commands.addCommand(CommandIDs.exportProject, {
    label: 'NUX: Export to production',
    isEnabled: enabled,
    execute: () => {
      const session = current();
      return session ? exportToProduction(session, settings) : null;
    }
  });
  if (palette) {
    for (const command of Object.values(CommandIDs)) {
      palette.addItem({ command, category: 'NUX' });
    }
  }
}

/** The notebook toolbar's NUX buttons. */
export function addToolbarButtons(app: JupyterFrontEnd, panel: NotebookPanel): void {
  const button = (name: string, label: string, command: string) =>
    new ToolbarButton({
      className: `nux-toolbar-${name}`,
      label,
      tooltip: app.commands.caption(command) || app.commands.label(command),
      onClick: () => void app.commands.execute(command)
    });
  panel.toolbar.insertAfter('cellType', 'nux-add', button('add', '+ NUX', CommandIDs.addCell));
  panel.toolbar.insertAfter('nux-add', 'nux-tune', button('tune', 'Tune', CommandIDs.tune));
  panel.toolbar.insertAfter(
    'nux-tune',
    'nux-export',
    button('export', 'Export to production', CommandIDs.exportProject)
  );
}
