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
  events: IJobEvent[];
  last_seq: number;
  result: Record<string, any> | null;
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

export function listJobs(): Promise<IJobList> {
  return requestAPI<IJobList>('jobs');
}

/** The newest job of a kind for a workbook path (jobs outlive the browser tab). */
export async function latestJob(kind: string, path: string): Promise<IJob | null> {
  const { jobs } = await listJobs();
  return jobs.find(j => j.kind === kind && j.params.path === path) ?? null;
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
    if (job.status !== 'queued' && job.status !== 'running') {
      return job;
    }
    await new Promise(resolve => setTimeout(resolve, intervalMs));
  }
}
