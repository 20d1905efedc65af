import { describe, expect, it } from 'vitest';

import {
  IGraph,
  inputValue,
  IRunResult,
  layoutGraph,
  mergeRun,
  nodeStatuses,
  parseHeader,
  problemsByCell,
  renderProblem,
  RUN_MIME,
  runRecordOf,
  sinks
} from '../workbook';

const graph: IGraph = {
  inputs: ['question'],
  output: ['answer'],
  nodes: [
    { id: 'question', kind: 'input', cell: null },
    { id: 'retrieve', kind: 'data', cell: 'c1' },
    { id: 'context', kind: 'code', cell: 'c2' },
    { id: 'answer', kind: 'model', cell: 'c3' },
    { id: 'audit', kind: 'code', cell: 'c4' }
  ],
  edges: [
    { source: 'question', target: 'retrieve' },
    { source: 'retrieve', target: 'context' },
    { source: 'question', target: 'answer' },
    { source: 'context', target: 'answer' },
    { source: 'retrieve', target: 'audit' }
  ]
};

describe('parseHeader', () => {
  it.each([
    ['%%nux model answer\nuses: x', { kind: 'model', stage: 'answer' }],
    ['%%nux code clean', { kind: 'code', stage: 'clean' }],
    ['%%nux', { kind: '', stage: '' }],
    ['print(1)\n%%nux code x', null],
    ['# %%nux code x', null]
  ])('%j', (source, expected) => {
    expect(parseHeader(source)).toEqual(expected);
  });
});

describe('layoutGraph', () => {
  it('puts every edge from a higher layer to a lower one', () => {
    const layout = layoutGraph(graph);
    const at = new Map(layout.nodes.map(n => [n.id, n]));
    for (const edge of graph.edges) {
      expect(at.get(edge.source)!.layer).toBeLessThan(at.get(edge.target)!.layer);
      expect(at.get(edge.source)!.y).toBeLessThan(at.get(edge.target)!.y);
    }
    expect(at.get('answer')!.layer).toBe(3);
    expect(layout.nodes).toHaveLength(5);
  });

  it('does not overlap nodes of one layer and survives a cycle', () => {
    const layout = layoutGraph({
      ...graph,
      edges: [...graph.edges, { source: 'answer', target: 'retrieve' }]
    });
    const keys = layout.nodes.map(n => `${n.x},${n.y}`);
    expect(new Set(keys).size).toBe(keys.length);
  });
});

describe('nodeStatuses', () => {
  const run: IRunResult = {
    run_id: 'r1',
    ok: true,
    output: 'x',
    latency_ms: 3,
    cost_usd: 0,
    errors: [],
    hash: 'h',
    stages: { retrieve: 'a', context: 'b', answer: 'c', audit: 'd' },
    traces: [
      { stage: 'retrieve', status: 'ok' },
      { stage: 'context', status: 'ok' },
      { stage: 'answer', status: 'error' },
      { stage: 'audit', status: 'skipped' }
    ].map(t => ({
      latency_ms: 1,
      tokens_in: 0,
      tokens_out: 0,
      cost_usd: 0,
      cache_hit: false,
      output_preview: '',
      reason: '',
      ...t
    })) as IRunResult['traces']
  };

  const ran = mergeRun(new Map(), run);

  it('is idle before any run', () => {
    expect([...nodeStatuses(graph, new Map(), undefined).values()]).toEqual([
      'idle',
      'idle',
      'idle',
      'idle'
    ]);
  });

  it('follows the traces', () => {
    const now = { retrieve: 'a', context: 'b', answer: 'c', audit: 'd' };
    expect(Object.fromEntries(nodeStatuses(graph, ran, now))).toEqual({
      retrieve: 'ok',
      context: 'ok',
      answer: 'error',
      audit: 'skipped'
    });
  });

  it('marks a stage whose spec changed, and every stage below it, as stale', () => {
    const now = { retrieve: 'a', context: 'B', answer: 'c', audit: 'd' };
    expect(Object.fromEntries(nodeStatuses(graph, ran, now))).toEqual({
      retrieve: 'ok',
      context: 'stale',
      answer: 'stale',
      audit: 'skipped'
    });
  });

  it('takes a later run of one stage (a kernel cell) over the earlier full run', () => {
    // context re-ran in its new version B: it is ok again, answer (ran with b) is stale.
    const kernel = {
      run_id: 'k1',
      stages: { retrieve: 'a', context: 'B' },
      traces: [{ ...run.traces[1], latency_ms: 7 }]
    };
    const later = mergeRun(ran, kernel);
    const now = { retrieve: 'a', context: 'B', answer: 'c', audit: 'd' };
    expect(Object.fromEntries(nodeStatuses(graph, later, now))).toEqual({
      retrieve: 'ok',
      context: 'ok',
      answer: 'stale',
      audit: 'skipped'
    });
    expect(later.get('context')!.trace.latency_ms).toBe(7);
    expect(later.get('answer')!.run_id).toBe('r1');
  });

  it('reads the run record a %%nux cell output carries, and nothing else', () => {
    const record = { run_id: 'k2', stages: { context: 'b' }, traces: [] };
    expect(runRecordOf({ [RUN_MIME]: record, 'text/html': '<table>' })).toEqual(record);
    expect(runRecordOf({ 'text/html': '<table>' })).toBeNull();
    expect(runRecordOf({ [RUN_MIME]: { run_id: 3 } })).toBeNull();
    expect(runRecordOf(null)).toBeNull();
  });
});

describe('sinks and problems', () => {
  it('runs the outputs and every stage nothing reads', () => {
    expect(sinks(graph).sort()).toEqual(['answer', 'audit']);
  });

  it('groups problems by cell and renders them on one line', () => {
    const byCell = problemsByCell([
      { code: 'a', message: 'm1', cell: 'c1', line: 3, fix: 'f' },
      { code: 'b', message: 'm2' }
    ]);
    expect(byCell.get('c1')!.map(renderProblem)).toEqual(['line 3: m1 (fix: f)']);
    expect(byCell.get('')!.map(renderProblem)).toEqual(['m2']);
  });
});

describe('inputValue', () => {
  it('keeps text for string inputs and reads JSON for the rest', () => {
    expect(inputValue('3', { type: 'string' })).toBe('3');
    expect(inputValue('3', { type: 'integer' })).toBe(3);
    expect(inputValue('["a", 1]', { type: 'array' })).toEqual(['a', 1]);
    expect(inputValue('not json', { type: 'object' })).toBe('not json');
    expect(inputValue('x', undefined)).toBe('x');
  });
});
