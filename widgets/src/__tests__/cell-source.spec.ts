import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

import { cellSource, checkDraft, tuneDimension } from '../cell-source';
import { ICatalogEntry } from '../workbook';

const llm: ICatalogEntry = {
  id: 'llm.local/gemma-3-270m',
  kind: 'model',
  version: '1.0.0',
  description: 'A small local model',
  params: {
    prompt: { type: 'string', enum: ['qa-v1', 'qa-v2'], default: 'qa-v1' },
    temperature: { type: 'number', minimum: 0, maximum: 1, default: 0.2 },
    max_tokens: { type: 'integer', minimum: 1, maximum: 256, default: 64 },
    template: { type: 'string' }
  },
  required: ['template'],
  free_params: false,
  resources: { num_cpus: 1 },
  scale: {},
  cost: {},
  vetting: { owner: 'platform', date: '2026-11-01', data_classes: [], egress: 'none' }
};

describe('tuneDimension', () => {
  it('offers the vetted range of numbers and the choices of an enum', () => {
    expect(tuneDimension(llm.params.temperature)).toEqual({ float: [0, 1] });
    expect(tuneDimension(llm.params.max_tokens)).toEqual({ int: [1, 256] });
    expect(tuneDimension(llm.params.prompt)).toEqual({ choice: ['qa-v1', 'qa-v2'] });
    expect(tuneDimension(llm.params.template)).toBeNull();
  });
});

describe('cellSource', () => {
  it('writes the header and a YAML body the compiler reads', () => {
    const source = cellSource({
      stage: 'answer',
      entry: llm,
      inputs: ['question', 'context'],
      params: { template: 'Q: {question}\nA:', temperature: 0.2, max_tokens: 32 },
      tune: ['temperature', 'prompt']
    });
    const [header, ...rest] = source.split('\n');
    expect(header).toBe('%%nux model answer');
    expect(rest[0]).toBe('uses: llm.local/gemma-3-270m');
    expect(rest[1]).toBe('inputs: [question, context]');
    expect(parse(rest.join('\n'))).toEqual({
      uses: 'llm.local/gemma-3-270m',
      inputs: ['question', 'context'],
      // the default temperature is left to the catalog
      params: { template: 'Q: {question}\nA:', max_tokens: 32 },
      tune: { temperature: { float: [0, 1] }, prompt: { choice: ['qa-v1', 'qa-v2'] } }
    });
  });

  it('writes a function stub for a plain code cell', () => {
    const code = { ...llm, id: 'code', kind: 'code' as const, params: {}, required: [] };
    expect(
      cellSource({ stage: 'clean', entry: code, inputs: ['question'], params: {}, tune: [] })
    ).toBe('%%nux code clean\ndef clean(question: str) -> str:\n    return question');
  });
});

describe('checkDraft', () => {
  const base = { stage: 'answer', entry: llm, inputs: [], tune: [] };
  it('names what is wrong with the form', () => {
    expect(checkDraft({ ...base, stage: '2x', params: { template: 't' } }, [])).toEqual([
      'the stage id must use letters, digits and underscores, starting with a letter'
    ]);
    expect(checkDraft({ ...base, params: { template: 't' } }, ['answer'])).toEqual([
      'stage id answer is already used'
    ]);
    expect(checkDraft({ ...base, params: { temperature: 3 } }, [])).toEqual([
      'template is required',
      'temperature must be at most 1'
    ]);
    expect(checkDraft({ ...base, params: { template: 't' } }, [])).toEqual([]);
  });
});
