/**
 * One open workbook: its latest validation (graph + problems), each stage's latest run, and
 * the calls that refresh them. Validation re-runs, debounced, whenever the notebook's content
 * changes. Stage runs come from the panel's Run button and from `%%nux` cells the kernel ran
 * (their outputs carry a run record), so both show on the DAG panel.
 */
import { ICellModel, isCodeCellModel } from '@jupyterlab/cells';
import { NotebookPanel } from '@jupyterlab/notebook';
import { ISignal, Signal } from '@lumino/signaling';

import { NuxRequestError, postAPI } from './request';
import { NuxSettings } from './settings';
import {
  IProblem,
  IRunRecord,
  IRunResult,
  IStageRun,
  IValidation,
  mergeRun,
  runRecordOf,
  sinks
} from './workbook';

export class WorkbookSession {
  constructor(
    readonly panel: NotebookPanel,
    private readonly settings: NuxSettings
  ) {
    void panel.context.ready.then(() => {
      panel.content.model?.contentChanged.connect(this.schedule, this);
      // The saved outputs of `%%nux` cells: what the kernel ran before the notebook was opened.
      for (const cell of panel.content.model?.cells ?? []) {
        this.readRuns(cell);
      }
      void this.validate();
    });
    panel.disposed.connect(() => {
      window.clearTimeout(this.timer);
      this.disposed = true;
    });
  }

  validation: IValidation | null = null;
  /** The latest run started from the panel (its answer is shown under the graph). */
  run: IRunResult | null = null;
  /** Each stage's latest trace, from the panel or from a `%%nux` cell run in the kernel. */
  ran: ReadonlyMap<string, IStageRun> = new Map();
  /** The latest run recorded by a `%%nux` cell. */
  kernelRun: IRunRecord | null = null;
  /** Problems from the last request that failed as a whole (bad inputs, no spec). */
  requestProblems: IProblem[] = [];
  running = false;

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get path(): string {
    return this.panel.context.path;
  }

  /** The request body every route takes: the path and the notebook as it is now. */
  body(extra: Record<string, unknown> = {}): Record<string, unknown> {
    const catalog = this.settings.values.catalogPath;
    return {
      path: this.path,
      notebook: this.panel.content.model?.toJSON(),
      ...(catalog ? { catalog } : {}),
      ...extra
    };
  }

  schedule(): void {
    window.clearTimeout(this.timer);
    this.timer = window.setTimeout(
      () => void this.validate(),
      this.settings.values.validateDelayMs
    );
  }

  async validate(): Promise<IValidation | null> {
    if (this.disposed) {
      return null;
    }
    // Answers can arrive out of order while the user types: only the newest one counts.
    const ticket = ++this.ticket;
    try {
      const validation = await postAPI<IValidation>('validate', this.body());
      if (ticket !== this.ticket) {
        return this.validation;
      }
      this.validation = validation;
      this.requestProblems = [];
    } catch (error) {
      if (ticket !== this.ticket) {
        return this.validation;
      }
      this.requestProblems = problemsOf(error);
    }
    this._changed.emit();
    return this.validation;
  }

  async execute(inputs: Record<string, unknown>): Promise<IRunResult | null> {
    this.running = true;
    this._changed.emit();
    try {
      const targets = this.validation ? sinks(this.validation.graph) : [];
      this.run = await postAPI<IRunResult>(
        'run',
        this.body(targets.length ? { inputs, targets } : { inputs })
      );
      this.ran = mergeRun(this.ran, this.run);
      this.requestProblems = [];
    } catch (error) {
      this.requestProblems = problemsOf(error);
    } finally {
      this.running = false;
    }
    await this.validate();
    return this.run;
  }

  /**
   * A cell finished executing in the kernel: take the run records its outputs carry (a
   * `%%nux` cell's trace), then validate, so statuses compare with the cells as they are now.
   */
  cellExecuted(cell: ICellModel): void {
    if (this.readRuns(cell)) {
      void this.validate();
    }
  }

  private readRuns(cell: ICellModel): boolean {
    if (!isCodeCellModel(cell)) {
      return false;
    }
    let found = false;
    for (let i = 0; i < cell.outputs.length; i++) {
      const record = runRecordOf(cell.outputs.get(i).data);
      if (record) {
        this.ran = mergeRun(this.ran, record);
        this.kernelRun = record;
        found = true;
      }
    }
    return found;
  }

  private timer = 0;
  private ticket = 0;
  private disposed = false;
  private _changed = new Signal<this, void>(this);
}

export function problemsOf(error: unknown): IProblem[] {
  if (error instanceof NuxRequestError) {
    return error.problems;
  }
  return [
    {
      code: 'client',
      message: error instanceof Error ? error.message : String(error),
      fix: 'reload the page'
    }
  ];
}
