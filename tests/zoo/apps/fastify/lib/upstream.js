'use strict';
// The HTTP client helper the services share: JSON over axios, a per-call
// timeout, the tenant forwarded, and one error type for "the service we called
// did not give us what we needed".
const axios = require('axios');

class UpstreamError extends Error {
  constructor(message, { service, url, upstreamStatus, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'UpstreamError';
    this.service = service;
    this.url = url;
    this.upstreamStatus = upstreamStatus;
  }
}

const http = axios.create({ headers: { accept: 'application/json' } });

async function callService(service, url, { method = 'GET', data, tenant, timeout = 2000 } = {}) {
  try {
    const res = await http.request({ url, method, data, timeout, headers: tenant ? { 'x-tenant': tenant } : {} });
    return res.data;
  } catch (err) {
    if (err.response) {
      throw new UpstreamError(`${service} responded ${err.response.status} ${err.response.statusText}`, {
        service,
        url,
        upstreamStatus: err.response.status,
        cause: err,
      });
    }
    throw new UpstreamError(`${service} request failed: ${err.message}`, { service, url, cause: err });
  }
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

module.exports = { UpstreamError, callService, withRetry };
