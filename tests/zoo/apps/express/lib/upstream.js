'use strict';
// The HTTP client helper the three services share (a small internal package in
// a real monorepo): JSON over fetch (undici), a per-call timeout, and one error
// type for "the service we called did not give us what we needed".

class UpstreamError extends Error {
  constructor(message, { service, url, upstreamStatus, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'UpstreamError';
    this.service = service;
    this.url = url;
    this.upstreamStatus = upstreamStatus;
  }
}

async function requestJson(service, url, { method = 'GET', body, headers, timeoutMs = 2000 } = {}) {
  let res;
  try {
    res = await fetch(url, {
      method,
      headers: { accept: 'application/json', ...(body ? { 'content-type': 'application/json' } : {}), ...headers },
      body: body ? JSON.stringify(body) : undefined,
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    throw new UpstreamError(`${service} request failed: ${err.message}`, { service, url, cause: err });
  }
  if (!res.ok) {
    const text = await res.text().catch(() => '');
    const err = new UpstreamError(`${service} responded ${res.status} ${res.statusText}`, {
      service,
      url,
      upstreamStatus: res.status,
    });
    err.body = text.slice(0, 200);
    throw err;
  }
  // A 200 is trusted to be JSON (the services all say application/json).
  return res.json();
}

// Retries transient upstream failures (5xx, network errors) with a short backoff.
async function withRetry(fn, { attempts = 3, delayMs = 50, log = console } = {}) {
  let lastError;
  for (let attempt = 1; attempt <= attempts; attempt += 1) {
    try {
      return await fn(attempt);
    } catch (err) {
      lastError = err;
      const retryable = err instanceof UpstreamError && (err.upstreamStatus === undefined || err.upstreamStatus >= 500);
      if (!retryable || attempt === attempts) break;
      log.warn(`attempt ${attempt}/${attempts} failed (${err.message}); retrying in ${delayMs * attempt} ms`);
      await new Promise((resolve) => setTimeout(resolve, delayMs * attempt));
    }
  }
  throw lastError;
}

module.exports = { UpstreamError, requestJson, withRetry };
