/**
 * One open workbook: its latest validation (graph + problems), its latest run, and the calls
 * that refresh them. Validation re-runs, debounced, whenever the notebook's content changes.
 */
import { NotebookPanel } from '@jupyterlab/notebook';
import { ISignal, Signal } from '@lumino/signaling';

import { NuxRequestError, postAPI } from './request';
import { NuxSettings } from './settings';
import { IProblem, IRunResult, IValidation, sinks } from './workbook';

export class WorkbookSession {
  constructor(
    readonly panel: NotebookPanel,
    private readonly settings: NuxSettings
  ) {
    panel.context.ready.then(() => {
      panel.content.model?.contentChanged.connect(this.schedule, this);
      void this.validate();
    });
    panel.disposed.connect(() => {
      window.clearTimeout(this.timer);
      this.disposed = true;
    });
  }

  validation: IValidation | null = null;
  run: IRunResult | null = null;
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
      this.requestProblems = [];
    } catch (error) {
      this.requestProblems = problemsOf(error);
    } finally {
      this.running = false;
    }
    await this.validate();
    return this.run;
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
