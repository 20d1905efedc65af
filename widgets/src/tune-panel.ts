/**
 * The tune panel: start and stop tuning as a server-side job, a live trial table and a Pareto
 * plot, and "pin" on a trial to write its parameters into the cells.
 */
import { MainAreaWidget } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { followJob, IJob, IJobEvent, latestJob, startJob, stopJob } from './jobs';
import { paramsByStage, pinParams } from './pin';
import { problemsOf, WorkbookSession } from './session';
import { NuxSettings } from './settings';
import { parseHeader, renderProblem } from './workbook';

interface ITrialRow {
  trial: number;
  state: string;
  params: Record<string, unknown>;
  values: Record<string, number>;
  pareto?: boolean;
}

const SVG = 'http://www.w3.org/2000/svg';

function formatValue(value: number | undefined): string {
  if (typeof value !== 'number') {
    return '';
  }
  return Number.isInteger(value) ? String(value) : Number(value.toPrecision(4)).toString();
}

export class TunePanel extends Widget {
  constructor(
    private readonly session: WorkbookSession,
    private readonly settings: NuxSettings
  ) {
    super();
    this.addClass('nux-tune-panel');
    const bar = document.createElement('div');
    bar.className = 'nux-tune-bar';
    this.startButton = document.createElement('button');
    this.startButton.className = 'jp-Button jp-mod-styled jp-mod-accept';
    this.startButton.textContent = 'Start tuning';
    this.startButton.onclick = () => void this.start();
    this.stopButton = document.createElement('button');
    this.stopButton.className = 'jp-Button jp-mod-styled jp-mod-warn';
    this.stopButton.textContent = 'Stop';
    this.stopButton.disabled = true;
    this.stopButton.onclick = () => void this.stop();
    this.status = document.createElement('span');
    this.status.className = 'nux-tune-status';
    bar.append(this.startButton, this.stopButton, this.status);
    this.plot = document.createElement('div');
    this.plot.className = 'nux-tune-plot';
    this.table = document.createElement('table');
    this.table.className = 'nux-tune-table';
    this.node.append(bar, this.plot, this.table);
    void this.attach();
  }

  /** Pick up the workbook's latest tuning job: it kept running while no tab showed it. */
  async attach(): Promise<void> {
    try {
      const job = await latestJob('tune', this.session.path);
      if (!job || this.jobId) {
        return;
      }
      this.jobId = job.id;
      this.rows = [];
      if (job.status === 'queued' || job.status === 'running') {
        this.startButton.disabled = true;
        this.stopButton.disabled = false;
      }
      this.finish(await followJob(job.id, (j, fresh) => this.onProgress(j, fresh)));
    } catch (error) {
      this.status.textContent = problemsOf(error).map(renderProblem).join('; ');
    }
  }

  async start(): Promise<void> {
    this.rows = [];
    this.jobId = 'starting';
    this.render();
    try {
      await this.session.panel.context.save();
      const job = await startJob(
        'tune',
        this.session.body({ trials: this.settings.values.tuneTrials })
      );
      this.jobId = job.id;
      this.startButton.disabled = true;
      this.stopButton.disabled = false;
      const done = await followJob(job.id, (j, fresh) => this.onProgress(j, fresh));
      this.finish(done);
    } catch (error) {
      this.status.textContent = problemsOf(error).map(renderProblem).join('; ');
      this.startButton.disabled = false;
      this.stopButton.disabled = true;
    }
  }

  async stop(): Promise<void> {
    if (this.jobId) {
      await stopJob(this.jobId);
      this.status.textContent = 'stopping…';
    }
  }

  private onProgress(job: IJob, fresh: IJobEvent[]): void {
    for (const event of fresh) {
      if (typeof event.trial === 'number') {
        this.rows.push({
          trial: event.trial,
          state: String(event.state ?? ''),
          params: (event.params as Record<string, unknown>) ?? {},
          values: (event.values as Record<string, number>) ?? {}
        });
      }
    }
    this.status.textContent = `${job.status}: ${this.rows.length} trials`;
    this.render();
  }

  private finish(job: IJob): void {
    this.startButton.disabled = false;
    this.stopButton.disabled = true;
    const pareto = new Set<number>((job.result?.pareto as number[]) ?? []);
    for (const row of this.rows) {
      row.pareto = pareto.has(row.trial);
    }
    this.status.textContent =
      job.status === 'done' || job.status === 'stopped'
        ? `${job.status}: ${this.rows.length} trials, ${pareto.size} on the Pareto front`
        : job.problems.map(renderProblem).join('; ');
    this.render();
  }

  /** Write a trial's parameters into the stage cells. */
  pin(row: ITrialRow): string[] {
    const pinned: string[] = [];
    const byStage = paramsByStage(row.params);
    for (const cell of this.session.panel.content.widgets) {
      const source = cell.model.sharedModel.getSource();
      const header = parseHeader(source);
      const params = header ? byStage.get(header.stage) : undefined;
      if (!header || !params) {
        continue;
      }
      const next = pinParams(source, params);
      if (next !== null) {
        cell.model.sharedModel.setSource(next);
        pinned.push(header.stage);
      }
    }
    this.status.textContent = `pinned trial ${row.trial} into ${pinned.join(', ') || 'no cell'}`;
    return pinned;
  }

  private render(): void {
    const objectives = [...new Set(this.rows.flatMap(r => Object.keys(r.values)))];
    const params = [...new Set(this.rows.flatMap(r => Object.keys(r.params)))];
    const head = document.createElement('tr');
    for (const title of ['trial', 'state', ...objectives, ...params, '']) {
      const th = document.createElement('th');
      th.textContent = title;
      head.appendChild(th);
    }
    const body = this.rows.map(row => {
      const tr = document.createElement('tr');
      tr.dataset.trial = String(row.trial);
      if (row.pareto) {
        tr.className = 'nux-pareto';
      }
      const cells = [
        String(row.trial),
        row.state,
        ...objectives.map(o => formatValue(row.values[o])),
        ...params.map(p => JSON.stringify(row.params[p] ?? ''))
      ];
      for (const text of cells) {
        const td = document.createElement('td');
        td.textContent = text;
        tr.appendChild(td);
      }
      const td = document.createElement('td');
      const pin = document.createElement('button');
      pin.className = 'jp-Button jp-mod-styled nux-pin';
      pin.textContent = 'pin';
      pin.onclick = () => this.pin(row);
      td.appendChild(pin);
      tr.appendChild(td);
      return tr;
    });
    this.table.replaceChildren(head, ...body);
    this.drawPlot(objectives);
  }

  private drawPlot(objectives: string[]): void {
    this.plot.replaceChildren();
    if (objectives.length < 2 || !this.rows.length) {
      return;
    }
    const [ox, oy] = objectives;
    const points = this.rows.filter(
      r => typeof r.values[ox] === 'number' && typeof r.values[oy] === 'number'
    );
    const xs = points.map(p => p.values[ox]);
    const ys = points.map(p => p.values[oy]);
    const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
    const [y0, y1] = [Math.min(...ys), Math.max(...ys)];
    const w = 320;
    const h = 200;
    const pad = 28;
    const root = document.createElementNS(SVG, 'svg');
    root.setAttribute('width', String(w));
    root.setAttribute('height', String(h));
    const sx = (v: number) => pad + ((v - x0) / (x1 - x0 || 1)) * (w - 2 * pad);
    const sy = (v: number) => h - pad - ((v - y0) / (y1 - y0 || 1)) * (h - 2 * pad);
    for (const point of points) {
      const dot = document.createElementNS(SVG, 'circle');
      dot.setAttribute('cx', String(sx(point.values[ox])));
      dot.setAttribute('cy', String(sy(point.values[oy])));
      dot.setAttribute('r', point.pareto ? '5' : '3');
      dot.setAttribute('class', point.pareto ? 'nux-pareto' : 'nux-trial');
      root.appendChild(dot);
    }
    for (const [text, x, y] of [
      [ox, w / 2, h - 6],
      [oy, 4, 12]
    ] as [string, number, number][]) {
      const label = document.createElementNS(SVG, 'text');
      label.setAttribute('x', String(x));
      label.setAttribute('y', String(y));
      label.textContent = text;
      root.appendChild(label);
    }
    this.plot.appendChild(root);
  }

  private rows: ITrialRow[] = [];
  private jobId = '';
  private startButton: HTMLButtonElement;
  private stopButton: HTMLButtonElement;
  private status: HTMLSpanElement;
  private plot: HTMLDivElement;
  private table: HTMLTableElement;
}

export function openTunePanel(
  session: WorkbookSession,
  settings: NuxSettings
): MainAreaWidget<TunePanel> {
  const content = new TunePanel(session, settings);
  const widget = new MainAreaWidget({ content });
  widget.id = `nux-tune-${session.path}`;
  widget.title.label = `Tune ${session.path.split('/').pop()}`;
  widget.title.closable = true;
  return widget;
}
