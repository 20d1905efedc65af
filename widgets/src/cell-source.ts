/**
 * Writing a `%%nux` cell from the catalog form: the header, then the YAML body the compiler
 * reads (`uses`, `inputs`, `params`, `tune`), or a function stub for a plain code cell.
 */
import { stringify } from 'yaml';

import { ICatalogEntry, IParamSchema } from './workbook';

export interface IStageDraft {
  stage: string;
  entry: ICatalogEntry;
  inputs: string[];
  params: Record<string, unknown>;
  tune: string[];
}

const STAGE_ID = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Whether a parameter can be searched by the tuner, and the range the catalog vets. */
export function tuneDimension(schema: IParamSchema): Record<string, unknown[]> | null {
  if (Array.isArray(schema.enum) && schema.enum.length > 1) {
    return { choice: [...schema.enum] };
  }
  const bounded = typeof schema.minimum === 'number' && typeof schema.maximum === 'number';
  if (schema.type === 'integer' && bounded) {
    return { int: [schema.minimum, schema.maximum] };
  }
  if (schema.type === 'number' && bounded) {
    return { float: [schema.minimum, schema.maximum] };
  }
  return null;
}

/** Problems with the form as filled, one message each (empty when the cell can be written). */
export function checkDraft(draft: IStageDraft, taken: string[]): string[] {
  const problems: string[] = [];
  if (!STAGE_ID.test(draft.stage)) {
    problems.push('the stage id must use letters, digits and underscores, starting with a letter');
  } else if (taken.includes(draft.stage)) {
    problems.push(`stage id ${draft.stage} is already used`);
  }
  for (const name of draft.entry.required) {
    const value = draft.params[name];
    if (value === undefined || value === '') {
      problems.push(`${name} is required`);
    }
  }
  for (const [name, value] of Object.entries(draft.params)) {
    const schema = draft.entry.params[name];
    if (!schema || typeof value !== 'number') {
      continue;
    }
    if (typeof schema.minimum === 'number' && value < schema.minimum) {
      problems.push(`${name} must be at least ${schema.minimum}`);
    }
    if (typeof schema.maximum === 'number' && value > schema.maximum) {
      problems.push(`${name} must be at most ${schema.maximum}`);
    }
  }
  return problems;
}

function functionStub(draft: IStageDraft): string {
  const args = draft.inputs.map(name => `${name}: str`).join(', ');
  const body = draft.inputs.length ? draft.inputs[0] : '""';
  return `def ${draft.stage}(${args}) -> str:\n    return ${body}\n`;
}

/** The cell's full source for a filled form. */
export function cellSource(draft: IStageDraft): string {
  const header = `%%nux ${draft.entry.kind} ${draft.stage}`;
  if (draft.entry.id === 'code') {
    return `${header}\n${functionStub(draft)}`.trimEnd();
  }
  const body: Record<string, unknown> = { uses: draft.entry.id };
  if (draft.inputs.length) {
    body.inputs = draft.inputs;
  }
  const params: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(draft.params)) {
    if (value === undefined || value === '') {
      continue;
    }
    if (draft.entry.params[name]?.default === value) {
      continue;
    }
    params[name] = value;
  }
  if (Object.keys(params).length) {
    body.params = params;
  }
  const tune: Record<string, unknown> = {};
  for (const name of draft.tune) {
    const schema = draft.entry.params[name];
    const dimension = schema ? tuneDimension(schema) : null;
    if (dimension) {
      tune[name] = dimension;
    }
  }
  if (Object.keys(tune).length) {
    body.tune = tune;
  }
  const lines = Object.entries(body).map(
    ([key, value]) =>
      `${key}: ${stringify(value, {
        collectionStyle: 'flow',
        flowCollectionPadding: false,
        lineWidth: 0
      }).trimEnd()}`
  );
  return [header, ...lines].join('\n');
}
