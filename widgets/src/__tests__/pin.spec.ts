import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

import { paramsByStage, pinParams } from '../pin';

describe('pinParams', () => {
  it('sets params in a declarative cell and keeps the rest', () => {
    const source =
      '%%nux model answer\nuses: llm.local/gemma-3-270m\ninputs: [question]\n' +
      'params: {max_tokens: 48, temperature: 0.1}\ntune: {temperature: {float: [0.0, 1.0]}}';
    const pinned = pinParams(source, { temperature: 0.35, prompt: 'qa-v2' })!;
    expect(pinned.split('\n')[0]).toBe('%%nux model answer');
    const body = parse(pinned.split('\n').slice(1).join('\n')) as Record<string, unknown>;
    expect(body.params).toEqual({ max_tokens: 48, temperature: 0.35, prompt: 'qa-v2' });
    expect(body.tune).toEqual({ temperature: { float: [0, 1] } });
  });

  it("replaces a code cell's keyword default", () => {
    const source =
      '%%nux code shout\n#| tune: {times: {int: [1, 3]}}\n' +
      'def shout(clean: str, *, times: int = 2, sep: str = "") -> str:\n    return clean';
    expect(pinParams(source, { times: 3, sep: '-' })).toBe(
      '%%nux code shout\n#| tune: {times: {int: [1, 3]}}\n' +
        'def shout(clean: str, *, times: int = 3, sep: str = "-") -> str:\n    return clean'
    );
    expect(pinParams(source, { missing: 1 })).toBeNull();
    expect(pinParams('print(1)', { times: 1 })).toBeNull();
  });

  it('splits stage.param names', () => {
    expect(
      Object.fromEntries(paramsByStage({ 'answer.temperature': 0.2, 'retrieve.top_k': 4 }))
    ).toEqual({ answer: { temperature: 0.2 }, retrieve: { top_k: 4 } });
  });
});
