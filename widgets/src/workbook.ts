/**
 * The workbook as the browser sees it: the payloads the server sends (problems, graph, traces,
 * catalog) and the pure functions over them (cell headers, graph layout, node statuses).
 */

export type StageKind = 'model' | 'data' | 'code';
export type NodeKind = StageKind | 'input';
export type NodeStatus = 'idle' | 'ok' | 'stale' | 'error' | 'skipped';

export interface IProblem {
  code: string;
  message: string;
  fix?: string;
  cell?: string;
  stage?: string;
  line?: number;
  field?: string;
}

export interface IGraphNode {
  id: string;
  kind: NodeKind;
  cell: string | null;
  uses?: string;
  index?: number;
  tunable?: string[];
}

export interface IGraphEdge {
  source: string;
  target: string;
}

export interface IGraph {
  inputs: string[];
  input_schemas?: Record<string, { type?: string }>;
  nodes: IGraphNode[];
  edges: IGraphEdge[];
  output: string[];
}

export interface IValidation {
  ok: boolean;
  problems: IProblem[];
  graph: IGraph;
  hash?: string;
  stages?: Record<string, string>;
}

export interface ITrace {
  stage: string;
  status: 'ok' | 'error' | 'skipped';
  latency_ms: number;
  tokens_in: number;
  tokens_out: number;
  cost_usd: number;
  cache_hit: boolean;
  output_preview: string;
  reason: string;
}

/** The run route's answer: the run record with the answer and the run's totals. */
export interface IRunResult extends IRunRecord {
  ok: boolean;
  output: unknown;
  latency_ms: number;
  cost_usd: number;
  errors: { stage: string; cause: string }[];
  hash: string;
}

export interface IParamSchema {
  type?: string;
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
  default?: unknown;
  description?: string;
  pattern?: string;
}

export interface ICatalogEntry {
  id: string;
  kind: StageKind;
  version: string;
  description: string;
  params: Record<string, IParamSchema>;
  required: string[];
  free_params: boolean;
  resources: Record<string, unknown>;
  scale: Record<string, unknown>;
  cost: Record<string, number>;
  vetting: {
    owner: string;
    date: string;
    data_classes: string[];
    egress: string;
    notes?: string;
  };
}

export interface ICatalog {
  name: string;
  version: string;
  path: string;
  components: ICatalogEntry[];
}

const HEADER = /^%%nux(?:[ \t]+(\S+))?(?:[ \t]+(\S+))?/;

/** `%%nux <kind> <id>` on a cell's first line -> kind and stage id (null when not a stage). */
export function parseHeader(source: string): { kind: string; stage: string } | null {
  const first = source.split('\n', 1)[0];
  const match = HEADER.exec(first);
  if (!match) {
    return null;
  }
  return { kind: match[1] ?? '', stage: match[2] ?? '' };
}

export interface IPlacedNode extends IGraphNode {
  layer: number;
  slot: number;
  x: number;
  y: number;
}

export interface ILayout {
  nodes: IPlacedNode[];
  width: number;
  height: number;
}

export const NODE_WIDTH = 136;
export const NODE_HEIGHT = 36;
const GAP_X = 16;
const GAP_Y = 34;
/** Room on the right for edges that skip a layer (drawn around the nodes between). */
export const SIDE_LANE = 48;

/**
 * Top-down layered layout: a node's layer is the longest path to it from a source, so every
 * edge points down. Cycles (a workbook problem the server reports) are cut where met.
 */
export function layoutGraph(graph: IGraph): ILayout {
  const ids = new Set(graph.nodes.map(n => n.id));
  const parents = new Map<string, string[]>();
  for (const node of graph.nodes) {
    parents.set(node.id, []);
  }
  for (const edge of graph.edges) {
    if (ids.has(edge.source) && ids.has(edge.target)) {
      parents.get(edge.target)!.push(edge.source);
    }
  }
  const layer = new Map<string, number>();
  const visiting = new Set<string>();
  const depth = (id: string): number => {
    const known = layer.get(id);
    if (known !== undefined) {
      return known;
    }
    if (visiting.has(id)) {
      return 0;
    }
    visiting.add(id);
    let d = 0;
    for (const p of parents.get(id) ?? []) {
      d = Math.max(d, depth(p) + 1);
    }
    visiting.delete(id);
    layer.set(id, d);
    return d;
  };
  const rows: IGraphNode[][] = [];
  for (const node of graph.nodes) {
    const d = depth(node.id);
    (rows[d] = rows[d] ?? []).push(node);
  }
  const widest = Math.max(1, ...rows.map(r => (r ? r.length : 0)));
  const inner = widest * NODE_WIDTH + (widest + 1) * GAP_X;
  const width = inner + SIDE_LANE;
  const placed: IPlacedNode[] = [];
  rows.forEach((row, d) => {
    if (!row) {
      return;
    }
    const rowWidth = row.length * NODE_WIDTH + (row.length - 1) * GAP_X;
    const left = (inner - rowWidth) / 2;
    row.forEach((node, slot) => {
      placed.push({
        ...node,
        layer: d,
        slot,
        x: left + slot * (NODE_WIDTH + GAP_X),
        y: GAP_Y / 2 + d * (NODE_HEIGHT + GAP_Y)
      });
    });
  });
  const height = rows.length * (NODE_HEIGHT + GAP_Y);
  return { nodes: placed, width, height };
}

/** The mime type of the run record a `%%nux` cell's output carries (the kernel's magic). */
export const RUN_MIME = 'application/vnd.nux.run+json';

/** A run as both the server's run route and the kernel's `%%nux` magic describe it. */
export interface IRunRecord {
  run_id: string;
  traces: ITrace[];
  /** The hash of every stage of the spec the run compiled, by stage id. */
  stages: Record<string, string>;
}

/** A stage's latest trace and the stage hashes of the run that produced it. */
export interface IStageRun {
  trace: ITrace;
  run_id: string;
  stages: Record<string, string>;
}

/** Each stage's latest run, with `run` (from the panel or a kernel cell) laid over `ran`. */
export function mergeRun(
  ran: ReadonlyMap<string, IStageRun>,
  run: IRunRecord
): Map<string, IStageRun> {
  const merged = new Map(ran);
  for (const trace of run.traces ?? []) {
    merged.set(trace.stage, { trace, run_id: run.run_id, stages: run.stages ?? {} });
  }
  return merged;
}

/** A run record from a cell output's data (null when it carries none or a malformed one). */
export function runRecordOf(data: unknown): IRunRecord | null {
  const record = (data as Record<string, unknown> | null)?.[RUN_MIME] as
    Partial<IRunRecord> | undefined;
  if (
    !record ||
    typeof record.run_id !== 'string' ||
    !Array.isArray(record.traces) ||
    typeof record.stages !== 'object'
  ) {
    return null;
  }
  return record as IRunRecord;
}

/** Every stage upstream of `id` in the graph (not `id` itself). */
export function ancestors(graph: IGraph, id: string): Set<string> {
  const parents = new Map<string, string[]>();
  for (const edge of graph.edges) {
    (parents.get(edge.target) ?? parents.set(edge.target, []).get(edge.target)!).push(edge.source);
  }
  const seen = new Set<string>();
  const stack = [...(parents.get(id) ?? [])];
  while (stack.length) {
    const next = stack.pop()!;
    if (!seen.has(next) && next !== id) {
      seen.add(next);
      stack.push(...(parents.get(next) ?? []));
    }
  }
  return seen;
}

/**
 * Each stage's status: its latest trace, or `stale` when the stage or anything upstream of it
 * changed since that trace (a hash now differs from the one the stage ran with: an edit, or an
 * upstream stage re-run in its new version), or `idle` when it never ran.
 */
export function nodeStatuses(
  graph: IGraph,
  ran: ReadonlyMap<string, IStageRun>,
  current: Record<string, string> | undefined
): Map<string, NodeStatus> {
  const statuses = new Map<string, NodeStatus>();
  for (const node of graph.nodes) {
    if (node.kind === 'input') {
      continue;
    }
    const last = ran.get(node.id);
    if (!last) {
      statuses.set(node.id, 'idle');
      continue;
    }
    const changed = [node.id, ...ancestors(graph, node.id)].some(id => {
      const ranWith = last.stages[id];
      const now = current?.[id];
      return now !== undefined && ranWith !== undefined && now !== ranWith;
    });
    statuses.set(node.id, changed ? 'stale' : last.trace.status);
  }
  return statuses;
}

/** Problems grouped by the cell they belong to (those with no cell under the empty key). */
export function problemsByCell(problems: IProblem[]): Map<string, IProblem[]> {
  const byCell = new Map<string, IProblem[]>();
  for (const problem of problems) {
    const key = problem.cell ?? '';
    (byCell.get(key) ?? byCell.set(key, []).get(key)!).push(problem);
  }
  return byCell;
}

/** One line for a problem: `line 3: message (fix: ...)`. */
export function renderProblem(problem: IProblem): string {
  const where = problem.line !== undefined ? `line ${problem.line}: ` : '';
  const fix = problem.fix ? ` (fix: ${problem.fix})` : '';
  return `${where}${problem.message}${fix}`;
}

/** The stages a full run must reach: the outputs and every stage nothing else reads. */
export function sinks(graph: IGraph): string[] {
  const read = new Set(graph.edges.map(e => e.source));
  const stages = graph.nodes.filter(n => n.kind !== 'input').map(n => n.id);
  return stages.filter(id => graph.output.includes(id) || !read.has(id));
}

/**
 * A typed input value from the text the user wrote: strings stay text, anything else is read
 * as JSON when it parses (`3`, `true`, `["a"]`), and left as text for the server to report.
 */
export function inputValue(text: string, schema: { type?: string } | undefined): unknown {
  if (!schema || schema.type === undefined || schema.type === 'string') {
    return text;
  }
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
