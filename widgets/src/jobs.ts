/** Background jobs on the server (tune, export, batch runs): start, follow, stop. */
import { postAPI, requestAPI } from './request';
import { IProblem } from './workbook';

export type JobStatus = 'queued' | 'running' | 'done' | 'error' | 'stopped';

export interface IJobEvent {
  seq: number;
  time: number;
  [key: string]: unknown;
}

export interface IJob {
  id: string;
  kind: string;
  status: JobStatus;
  /** Seconds since the epoch (the server's clock). */
  created: number;
  finished: number | null;
  events: IJobEvent[];
  last_seq: number;
  result: Record<string, unknown> | null;
  problems: IProblem[];
}

export function startJob(kind: string, body: Record<string, unknown>): Promise<IJob> {
  return postAPI<IJob>(`jobs/${kind}`, body);
}

export function stopJob(id: string): Promise<IJob> {
  return postAPI<IJob>(`jobs/${id}/stop`, {});
}

export interface IJobList {
  kinds: string[];
  jobs: (IJob & { params: Record<string, unknown> })[];
}

/** The server's jobs, newest first; `kind` and `path` keep one workbook's jobs of one kind. */
export function listJobs(filter: { kind?: string; path?: string } = {}): Promise<IJobList> {
  const query = new URLSearchParams(
    Object.entries(filter).filter((entry): entry is [string, string] => !!entry[1])
  ).toString();
  return requestAPI<IJobList>(query ? `jobs?${query}` : 'jobs');
}

/** The newest job of a kind for a workbook path (jobs outlive the browser tab). */
export async function latestJob(kind: string, path: string): Promise<IJob | null> {
  const { jobs } = await listJobs({ kind, path });
  return jobs[0] ?? null;
}

export function isActive(job: IJob): boolean {
  return job.status === 'queued' || job.status === 'running';
}

/**
 * Poll a job until it ends, handing each new batch of progress events to `onUpdate`. The job
 * lives on the server: stopping the poll (closing the tab) does not stop the job.
 */
export async function followJob(
  id: string,
  onUpdate: (job: IJob, fresh: IJobEvent[]) => void,
  intervalMs = 1000
): Promise<IJob> {
  let after = 0;
  for (;;) {
    const job = await requestAPI<IJob>(`jobs/${id}?after=${after}`);
    after = job.last_seq;
    onUpdate(job, job.events);
    if (!isActive(job)) {
      return job;
    }
    await new Promise(resolve => setTimeout(resolve, intervalMs));
  }
}
