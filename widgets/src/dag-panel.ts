/**
 * The DAG panel (right sidebar): the open workbook's graph, nodes by kind and edges from
 * inputs, each stage's status, latency and cost after a run, and its problems. Clicking a node
 * scrolls to its cell.
 */
import { NotebookPanel } from '@jupyterlab/notebook';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { askInputs } from './run-inputs';
import { WorkbookSession } from './session';
import {
  IProblem,
  ITrace,
  layoutGraph,
  NODE_HEIGHT,
  NODE_WIDTH,
  nodeStatuses,
  problemsByCell,
  renderProblem,
  SIDE_LANE
} from './workbook';

const SVG = 'http://www.w3.org/2000/svg';

export const dagIcon = new LabIcon({
  name: 'nux-widgets:dag',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 16 16">' +
    '<g class="jp-icon3" fill="#616161"><circle cx="8" cy="2.5" r="2"/>' +
    '<circle cx="3" cy="13.5" r="2"/><circle cx="13" cy="13.5" r="2"/>' +
    '<path d="M7.3 4.2 3.6 11.6l.9.5 3.7-7.4zM8.7 4.2l3.7 7.4.9-.5-3.7-7.4z"/></g></svg>'
});

function svg<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | number>
): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) {
    el.setAttribute(key, String(value));
  }
  return el;
}

/** Text that fits a node (about 7 px per character at the node's font size). */
function clip(text: string, max = Math.floor((NODE_WIDTH - 12) / 5.6)): string {
  return text.length <= max ? text : text.slice(0, max - 1) + '…';
}

function duration(ms: number): string {
  return ms < 1000 ? `${ms.toFixed(0)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function money(value: number): string {
  if (!value) {
    return '';
  }
  return value >= 0.01 ? `$${value.toFixed(2)}` : `$${Number(value.toPrecision(2))}`;
}

export class DagPanel extends Widget {
  constructor() {
    super();
    this.id = 'nux-dag-panel';
    this.addClass('nux-dag-panel');
    this.title.icon = dagIcon;
    this.title.caption = 'NUX workbook graph';
    this.header = document.createElement('div');
    this.header.className = 'nux-dag-header';
    this.runButton = document.createElement('button');
    this.runButton.className = 'jp-Button jp-mod-styled jp-mod-accept nux-dag-run';
    this.runButton.textContent = 'Run';
    this.runButton.onclick = () => void this.runWorkbook();
    this.caption = document.createElement('span');
    this.caption.className = 'nux-dag-caption';
    this.header.append(this.caption, this.runButton);
    this.graphHost = document.createElement('div');
    this.graphHost.className = 'nux-dag-graph';
    this.problemsHost = document.createElement('ul');
    this.problemsHost.className = 'nux-dag-problems';
    this.summary = document.createElement('div');
    this.summary.className = 'nux-dag-summary';
    this.node.append(this.header, this.graphHost, this.problemsHost, this.summary);
    this.render();
  }

  /** Follow another workbook (or none). */
  setSession(session: WorkbookSession | null): void {
    this.session?.changed.disconnect(this.render, this);
    this.session = session;
    session?.changed.connect(this.render, this);
    this.render();
  }

  async runWorkbook(): Promise<void> {
    const session = this.session;
    if (!session || session.running) {
      return;
    }
    const validation = session.validation ?? (await session.validate());
    const inputs = await askInputs(
      session.path,
      validation?.graph.inputs ?? [],
      validation?.graph.input_schemas ?? {}
    );
    if (inputs !== null) {
      await session.execute(inputs);
    }
  }

  render(): void {
    const session = this.session;
    const validation = session?.validation ?? null;
    this.caption.textContent = session
      ? session.running
        ? `${session.path}: running…`
        : session.path
      : 'Open a workbook to see its graph';
    this.runButton.disabled = !session || session.running || !validation?.ok;
    this.graphHost.replaceChildren();
    this.problemsHost.replaceChildren();
    this.summary.replaceChildren();
    if (!session || !validation) {
      this.showProblems(session?.requestProblems ?? []);
      return;
    }
    this.drawGraph(session);
    const general = problemsByCell(validation.problems).get('') ?? [];
    this.showProblems([...session.requestProblems, ...general]);
    const kernelRun = session.kernelRun;
    if (kernelRun) {
      const line = document.createElement('div');
      line.className = 'nux-dag-kernel-run';
      const stages = kernelRun.traces.map(t => `${t.stage} ${t.status}`).join(', ');
      line.textContent = `kernel run ${kernelRun.run_id}: ${stages}`;
      this.summary.append(line);
    }
    const run = session.run;
    if (run) {
      const line = document.createElement('div');
      line.textContent =
        `run ${run.run_id}: ${run.ok ? 'ok' : 'failed'}, ` +
        `${run.latency_ms.toFixed(1)} ms${run.cost_usd ? ', ' + money(run.cost_usd) : ''}`;
      const output = document.createElement('pre');
      output.className = 'nux-dag-output';
      output.textContent =
        typeof run.output === 'string'
          ? run.output
          : run.output === null || run.output === undefined
            ? '(no output)'
            : JSON.stringify(run.output, null, 1);
      this.summary.append(line, output);
      if (run.errors.length) {
        const errors = document.createElement('ul');
        errors.className = 'nux-dag-run-errors';
        for (const error of run.errors) {
          const item = document.createElement('li');
          item.className = 'nux-problem';
          item.textContent = `${error.stage} failed: ${error.cause}`;
          errors.appendChild(item);
        }
        this.summary.appendChild(errors);
      }
    }
  }

  private showProblems(problems: IProblem[]): void {
    for (const problem of problems) {
      const item = document.createElement('li');
      item.className = 'nux-problem';
      item.textContent = (problem.stage ? `${problem.stage}: ` : '') + renderProblem(problem);
      this.problemsHost.appendChild(item);
    }
  }

  private drawGraph(session: WorkbookSession): void {
    const validation = session.validation!;
    const graph = validation.graph;
    const layout = layoutGraph(graph);
    const statuses = nodeStatuses(graph, session.ran, validation.stages);
    const traces = new Map<string, ITrace>(
      [...session.ran.values()].map(r => [r.trace.stage, r.trace])
    );
    const byCell = problemsByCell(validation.problems);
    const byStage = new Map<string, IProblem[]>();
    for (const problem of validation.problems) {
      if (problem.stage) {
        (byStage.get(problem.stage) ?? byStage.set(problem.stage, []).get(problem.stage)!).push(
          problem
        );
      }
    }
    const root = svg('svg', {
      class: 'nux-dag-svg',
      width: '100%',
      style: `max-width: ${layout.width}px`,
      viewBox: `0 0 ${layout.width} ${layout.height}`
    });
    const defs = svg('defs', {});
    const marker = svg('marker', {
      id: 'nux-arrow',
      viewBox: '0 0 10 10',
      refX: 9,
      refY: 5,
      markerWidth: 6,
      markerHeight: 6,
      orient: 'auto-start-reverse'
    });
    marker.appendChild(svg('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'nux-dag-arrow' }));
    defs.appendChild(marker);
    root.appendChild(defs);
    const at = new Map(layout.nodes.map(n => [n.id, n]));
    for (const edge of graph.edges) {
      const a = at.get(edge.source);
      const b = at.get(edge.target);
      if (!a || !b) {
        continue;
      }
      let d: string;
      if (b.layer - a.layer > 1) {
        // Skips a layer: leave and enter on the right, around the nodes in between.
        const x1 = a.x + NODE_WIDTH;
        const y1 = a.y + NODE_HEIGHT / 2;
        const x2 = b.x + NODE_WIDTH;
        const y2 = b.y + NODE_HEIGHT / 2;
        const lane = Math.max(x1, x2) + SIDE_LANE * 0.8;
        d = `M ${x1} ${y1} C ${lane} ${y1}, ${lane} ${y2}, ${x2} ${y2}`;
      } else {
        const x1 = a.x + NODE_WIDTH / 2;
        const y1 = a.y + NODE_HEIGHT;
        const x2 = b.x + NODE_WIDTH / 2;
        const y2 = b.y;
        const mid = (y1 + y2) / 2;
        d = `M ${x1} ${y1} C ${x1} ${mid}, ${x2} ${mid}, ${x2} ${y2}`;
      }
      const path = svg('path', {
        class: 'nux-dag-edge',
        d,
        'marker-end': 'url(#nux-arrow)',
        'data-source': edge.source,
        'data-target': edge.target
      });
      root.appendChild(path);
    }
    for (const node of layout.nodes) {
      const status = node.kind === 'input' ? 'input' : (statuses.get(node.id) ?? 'idle');
      const problems = [
        ...(node.cell ? (byCell.get(node.cell) ?? []) : []),
        ...(byStage.get(node.id) ?? []).filter(p => !p.cell || p.cell !== node.cell)
      ];
      const group = svg('g', {
        class:
          `nux-dag-node nux-kind-${node.kind} nux-status-${status}` +
          (problems.length ? ' nux-has-problems' : '') +
          (graph.output.includes(node.id) ? ' nux-output' : ''),
        transform: `translate(${node.x}, ${node.y})`,
        'data-stage': node.id,
        'data-kind': node.kind,
        'data-status': status,
        'data-problems': problems.length
      });
      group.appendChild(svg('rect', { width: NODE_WIDTH, height: NODE_HEIGHT, rx: 6, ry: 6 }));
      const label = svg('text', { x: 8, y: 15, class: 'nux-dag-label' });
      label.textContent = clip(node.id, 16);
      const sub = svg('text', { x: 8, y: 29, class: 'nux-dag-sub' });
      const trace = traces.get(node.id);
      const detail = trace
        ? [status, duration(trace.latency_ms), money(trace.cost_usd)].filter(Boolean).join(' · ')
        : node.kind === 'input'
          ? 'input'
          : `${node.kind}${node.uses && node.uses !== 'code' ? ' · ' + node.uses : ''}`;
      sub.textContent = clip(detail);
      group.append(label, sub);
      if (problems.length) {
        const badge = svg('circle', { cx: NODE_WIDTH - 8, cy: 8, r: 6, class: 'nux-dag-badge' });
        group.appendChild(badge);
      }
      const tip = svg('title', {});
      tip.textContent = [
        `${node.id} (${node.kind})`,
        detail,
        trace?.reason ?? '',
        trace?.output_preview ?? '',
        ...problems.map(renderProblem)
      ]
        .filter(Boolean)
        .join('\n');
      group.appendChild(tip);
      if (node.cell) {
        group.addEventListener('click', () => this.reveal(session.panel, node.cell!));
      }
      root.appendChild(group);
    }
    this.graphHost.appendChild(root);
  }

  private reveal(panel: NotebookPanel, cellId: string): void {
    const notebook = panel.content;
    const index = notebook.widgets.findIndex(c => c.model.id === cellId);
    if (index < 0) {
      return;
    }
    notebook.activeCellIndex = index;
    void notebook.scrollToCell(notebook.widgets[index], 'center');
  }

  private session: WorkbookSession | null = null;
  private header: HTMLDivElement;
  private caption: HTMLSpanElement;
  private runButton: HTMLButtonElement;
  private graphHost: HTMLDivElement;
  private problemsHost: HTMLUListElement;
  private summary: HTMLDivElement;
}
