/**
 * Calls to the NUX server extension (`<base_url>/nux/...`).
 *
 * A user's mistake comes back as problems (the same payloads the CLI prints); they are thrown
 * as a `NuxRequestError` so callers show them on cells, never as a raw traceback.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { IProblem } from './workbook';

export class NuxRequestError extends Error {
  constructor(
    readonly status: number,
    readonly problems: IProblem[]
  ) {
    super(problems.map(p => p.message).join('; ') || `request failed (${status})`);
  }
}

export async function requestAPI<T>(endpoint: string, init: RequestInit = {}): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'nux', endpoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new NuxRequestError(0, [
      {
        code: 'network',
        message: 'the Jupyter server cannot be reached',
        fix: 'check that JupyterLab is still running'
      }
    ]);
  }
  const text = await response.text();
  let data: unknown = null;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const answer = (data ?? {}) as { problems?: unknown; message?: unknown };
    const problems: IProblem[] = Array.isArray(answer.problems)
      ? (answer.problems as IProblem[])
      : [
          {
            code: `http-${response.status}`,
            message:
              typeof answer.message === 'string' && answer.message
                ? answer.message
                : response.statusText,
            fix: 'see the Jupyter server log'
          }
        ];
    throw new NuxRequestError(response.status, problems);
  }
  return data as T;
}

export function postAPI<T>(endpoint: string, body: unknown): Promise<T> {
  return requestAPI<T>(endpoint, {
    method: 'POST',
    body: JSON.stringify(body)
  });
}
