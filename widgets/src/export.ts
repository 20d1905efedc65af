/**
 * "Export to production": runs the export on the server as a job, then shows the acceptance
 * result, the files written, the next steps (`pulumi up`) and a link to the project as a zip.
 *
 * The job outlives the tab: when a workbook opens (or its Export button is pressed) while an
 * export of it runs, or after one ended that no page has shown yet, the page follows that job
 * and shows its progress and its report.
 */
import { Dialog, Notification, showDialog } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { Widget } from '@lumino/widgets';

import { followJob, IJob, isActive, latestJob, startJob } from './jobs';
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

/** What the export job answers (`nux_widgets/exports.py`). */
interface IExportResult {
  out_dir?: string;
  files?: string[];
  acceptance?: unknown;
  next_steps?: string[];
  archive?: string;
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
  const result = job.result as IExportResult;
  if (result.acceptance) {
    const pre = document.createElement('pre');
    pre.className = 'nux-export-acceptance';
    pre.textContent = JSON.stringify(result.acceptance, null, 2);
    widget.node.appendChild(section('Acceptance', pre));
  }
  const files = document.createElement('ul');
  files.className = 'nux-export-files';
  for (const file of result.files ?? []) {
    const li = document.createElement('li');
    li.textContent = file;
    files.appendChild(li);
  }
  widget.node.appendChild(section(`Written to ${result.out_dir ?? ''}`, files));
  const steps = document.createElement('pre');
  steps.className = 'nux-export-steps';
  steps.textContent = (result.next_steps ?? []).join('\n');
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

/** A finished export whose report no page has shown is offered for this long. */
const UNSEEN_FOR_S = 3600;
const SEEN_KEY = 'nux-widgets:export-seen:';
/** Jobs this page follows now (a second Export press joins, it does not start another). */
const following = new Set<string>();

function seen(job: IJob): boolean {
  try {
    return window.localStorage.getItem(SEEN_KEY + job.id) !== null;
  } catch {
    return false;
  }
}

function markSeen(job: IJob): void {
  try {
    window.localStorage.setItem(SEEN_KEY + job.id, String(job.finished ?? ''));
  } catch {
    // Storage off (private window): the report may be offered again, nothing breaks.
  }
}

function progressText(job: IJob, message: string | null, earlier: boolean): string {
  const since = earlier ? ' (started before this page opened)' : '';
  if (job.status === 'queued') {
    return `Export to production${since}: waiting for a free job slot…`;
  }
  return message ? `Export${since}: ${message}` : `Exporting to production${since}…`;
}

/** Follow an export job: its progress in a notification, then its report in a dialog. */
export async function showExport(job: IJob, earlier: boolean): Promise<IJob | null> {
  if (following.has(job.id)) {
    return null;
  }
  following.add(job.id);
  try {
    let message: string | null = null;
    const note = Notification.emit(progressText(job, null, earlier), 'in-progress', {
      autoClose: false
    });
    const done = await followJob(job.id, (current, fresh) => {
      const last = fresh[fresh.length - 1];
      if (last && typeof last.message === 'string') {
        message = last.message;
      }
      Notification.update({ id: note, message: progressText(current, message, earlier) });
    });
    Notification.update({
      id: note,
      message: done.status === 'done' ? 'Exported to production' : 'The export did not finish',
      type: done.status === 'done' ? 'success' : 'error',
      autoClose: 5000
    });
    markSeen(done);
    await showDialog({
      title: 'Export to production',
      body: exportReport(done),
      buttons: [Dialog.okButton()]
    });
    return done;
  } finally {
    following.delete(job.id);
  }
}

/**
 * On opening a workbook: follow its export that is running, or show the report of one that
 * ended within the hour and that this browser has not shown.
 */
export async function reattachExport(session: WorkbookSession): Promise<IJob | null> {
  let job: IJob | null;
  try {
    job = await latestJob('export', session.path);
  } catch {
    return null; // an older server without jobs: nothing to pick up
  }
  if (!job) {
    return null;
  }
  const recent =
    job.finished !== null && Date.now() / 1000 - job.finished < UNSEEN_FOR_S && !seen(job);
  return isActive(job) || recent ? showExport(job, true) : null;
}

export async function exportToProduction(
  session: WorkbookSession,
  settings: NuxSettings
): Promise<IJob | null> {
  const values = settings.values;
  let job: IJob;
  try {
    const running = await latestJob('export', session.path);
    if (running && isActive(running)) {
      // One export of a workbook at a time: join the one that runs.
      return await showExport(running, true);
    }
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
  return showExport(job, false);
}
