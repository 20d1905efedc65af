/**
 * "Export to production": runs the export on the server as a job, then shows the acceptance
 * result, the files written, the next steps (`pulumi up`) and a link to the project as a zip.
 */
import { Dialog, Notification, showDialog } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { Widget } from '@lumino/widgets';

import { followJob, IJob, startJob } from './jobs';
import { problemsOf, WorkbookSession } from './session';
import { NuxSettings } from './settings';
import { renderProblem } from './workbook';

function section(title: string, body: HTMLElement): HTMLElement {
  const wrap = document.createElement('section');
  const head = document.createElement('h4');
  head.textContent = title;
  wrap.append(head, body);
  return wrap;
}

/** The dialog body for a finished export job. */
export function exportReport(job: IJob): Widget {
  const widget = new Widget();
  widget.addClass('nux-export-report');
  widget.node.dataset.status = job.status;
  if (job.status !== 'done' || !job.result) {
    const list = document.createElement('ul');
    for (const problem of job.problems) {
      const li = document.createElement('li');
      li.className = 'nux-problem';
      li.textContent = renderProblem(problem);
      list.appendChild(li);
    }
    widget.node.appendChild(section('The export did not finish', list));
    return widget;
  }
  const result = job.result;
  if (result.acceptance) {
    const pre = document.createElement('pre');
    pre.className = 'nux-export-acceptance';
    pre.textContent = JSON.stringify(result.acceptance, null, 2);
    widget.node.appendChild(section('Acceptance', pre));
  }
  const files = document.createElement('ul');
  files.className = 'nux-export-files';
  for (const file of (result.files as string[]) ?? []) {
    const li = document.createElement('li');
    li.textContent = file;
    files.appendChild(li);
  }
  widget.node.appendChild(section(`Written to ${result.out_dir ?? ''}`, files));
  const steps = document.createElement('pre');
  steps.className = 'nux-export-steps';
  steps.textContent = ((result.next_steps as string[]) ?? []).join('\n');
  widget.node.appendChild(section('Next steps', steps));
  if (result.archive) {
    const settings = ServerConnection.makeSettings();
    const link = document.createElement('a');
    link.className = 'nux-export-download';
    link.href = URLExt.join(settings.baseUrl, 'nux', 'jobs', job.id, 'archive');
    link.download = '';
    link.textContent = 'Download the project (zip)';
    widget.node.appendChild(link);
  }
  return widget;
}

export async function exportToProduction(
  session: WorkbookSession,
  settings: NuxSettings
): Promise<IJob | null> {
  const values = settings.values;
  let job: IJob;
  try {
    await session.panel.context.save();
    job = await startJob(
      'export',
      session.body({
        out_dir: values.exportOutDir,
        stack: values.exportStack,
        evaluate: values.exportWithEval
      })
    );
  } catch (error) {
    const list = document.createElement('ul');
    for (const problem of problemsOf(error)) {
      const li = document.createElement('li');
      li.className = 'nux-problem';
      li.textContent = renderProblem(problem);
      list.appendChild(li);
    }
    const body = new Widget({ node: list });
    await showDialog({ title: 'Export to production', body, buttons: [Dialog.okButton()] });
    return null;
  }
  const note = Notification.emit('Exporting to production…', 'in-progress', {
    autoClose: false
  });
  const done = await followJob(job.id, (_job, fresh) => {
    const last = fresh[fresh.length - 1];
    if (last && typeof last.message === 'string') {
      Notification.update({ id: note, message: `Export: ${last.message}` });
    }
  });
  Notification.update({
    id: note,
    message: done.status === 'done' ? 'Exported to production' : 'The export did not finish',
    type: done.status === 'done' ? 'success' : 'error',
    autoClose: 5000
  });
  await showDialog({
    title: 'Export to production',
    body: exportReport(done),
    buttons: [Dialog.okButton()]
  });
  return done;
}
