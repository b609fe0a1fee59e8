// The HTTP client helper the services share (a small internal package in a real
// monorepo): JSON over axios, a per-call timeout, and one error type for "the
// service we called did not give us what we needed".
import axios from 'axios';

export class UpstreamError extends Error {
  readonly service: string;
  readonly url: string;
  readonly status?: number;
  body?: string;

  constructor(message: string, opts: { service: string; url: string; status?: number; cause?: unknown }) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'UpstreamError';
    this.service = opts.service;
    this.url = opts.url;
    this.status = opts.status;
  }
}

export class UpstreamClient {
  constructor(
    readonly service: string,
    private readonly baseUrl: string,
    private readonly timeoutMs = 2000,
  ) {}

  async getJson<T = any>(path: string, opts: { timeoutMs?: number } = {}): Promise<T> {
    return this.request<T>('GET', path, undefined, opts);
  }

  async postJson<T = any>(path: string, body: unknown, opts: { timeoutMs?: number } = {}): Promise<T> {
    return this.request<T>('POST', path, body, opts);
  }

  private async request<T>(method: string, path: string, body: unknown, opts: { timeoutMs?: number }): Promise<T> {
    const url = this.baseUrl + path;
    let res;
    try {
      res = await axios.request<string>({
        method,
        url,
        data: body,
        timeout: opts.timeoutMs ?? this.timeoutMs,
        headers: { accept: 'application/json' },
        // The body is parsed below, by us: axios would hand back a string
        // silently when it is not JSON.
        responseType: 'text',
        transformResponse: [(data: string) => data],
        validateStatus: () => true,
      });
    } catch (err) {
      throw new UpstreamError(`${this.service} request failed: ${(err as Error).message}`, {
        service: this.service,
        url,
        cause: err,
      });
    }
    if (res.status >= 400) {
      const err = new UpstreamError(`${this.service} responded ${res.status} ${res.statusText}`, {
        service: this.service,
        url,
        status: res.status,
      });
      err.body = String(res.data ?? '').slice(0, 200);
      throw err;
    }
    return JSON.parse(res.data) as T;
  }
}

// Retries transient upstream failures (5xx, network errors) with a short backoff.
export async function withRetry<T>(fn: (attempt: number) => Promise<T>, attempts = 3, delayMs = 40): Promise<T> {
  let last: unknown;
  for (let attempt = 1; attempt <= attempts; attempt += 1) {
    try {
      return await fn(attempt);
    } catch (err) {
      last = err;
      const retryable = err instanceof UpstreamError && (err.status === undefined || err.status >= 500);
      if (!retryable || attempt === attempts) break;
      console.warn(`attempt ${attempt}/${attempts} failed (${(err as Error).message}); retrying`);
      await new Promise((resolve) => setTimeout(resolve, delayMs * attempt));
    }
  }
  throw last;
}
