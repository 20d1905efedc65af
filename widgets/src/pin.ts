/**
 * Pinning a tuning trial: its parameters written back into the stage cells. A declarative cell
 * gets `params.<name>` set in its YAML; a code cell gets the default of its function's keyword
 * parameter replaced.
 */
import { parseDocument } from 'yaml';

import { parseHeader } from './workbook';

function pyLiteral(value: unknown): string {
  if (typeof value === 'string') {
    return JSON.stringify(value);
  }
  if (typeof value === 'boolean') {
    return value ? 'True' : 'False';
  }
  if (value === null) {
    return 'None';
  }
  return JSON.stringify(value);
}

/** The cell's source with `params` set, or null when the parameter is not found. */
export function pinParams(source: string, params: Record<string, unknown>): string | null {
  const header = parseHeader(source);
  if (!header) {
    return null;
  }
  const newline = source.indexOf('\n');
  const first = newline < 0 ? source : source.slice(0, newline);
  const body = newline < 0 ? '' : source.slice(newline + 1);
  const isYaml = /^\s*uses\s*:/m.test(body) && !/^\s*def\s/m.test(body);
  if (isYaml) {
    const doc = parseDocument(body);
    for (const [name, value] of Object.entries(params)) {
      doc.setIn(['params', name], value);
    }
    return `${first}\n${doc.toString({ flowCollectionPadding: false }).trimEnd()}`;
  }
  let text = body;
  for (const [name, value] of Object.entries(params)) {
    const pattern = new RegExp(`(\\b${name}\\s*(?::\\s*[^=,)]+?)?\\s*=\\s*)([^,)\\n]+)`);
    if (!pattern.test(text)) {
      return null;
    }
    text = text.replace(pattern, (_m, lead: string) => `${lead}${pyLiteral(value)}`);
  }
  return `${first}\n${text}`;
}

/** `{"answer.temperature": 0.2}` -> `{answer: {temperature: 0.2}}`. */
export function paramsByStage(flat: Record<string, unknown>): Map<string, Record<string, unknown>> {
  const byStage = new Map<string, Record<string, unknown>>();
  for (const [key, value] of Object.entries(flat)) {
    const dot = key.indexOf('.');
    if (dot < 0) {
      continue;
    }
    const stage = key.slice(0, dot);
    const params = byStage.get(stage) ?? {};
    params[key.slice(dot + 1)] = value;
    byStage.set(stage, params);
  }
  return byStage;
}
