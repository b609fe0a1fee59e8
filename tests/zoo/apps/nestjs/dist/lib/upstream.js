"use strict";
var __importDefault = (this && this.__importDefault) || function (mod) {
    return (mod && mod.__esModule) ? mod : { "default": mod };
};
Object.defineProperty(exports, "__esModule", { value: true });
exports.UpstreamClient = exports.UpstreamError = void 0;
exports.withRetry = withRetry;
// The HTTP client helper the services share (a small internal package in a real
// monorepo): JSON over axios, a per-call timeout, and one error type for "the
// service we called did not give us what we needed".
const axios_1 = __importDefault(require("axios"));
class UpstreamError extends Error {
    service;
    url;
    status;
    body;
    constructor(message, opts) {
        super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
        this.name = 'UpstreamError';
        this.service = opts.service;
        this.url = opts.url;
        this.status = opts.status;
    }
}
exports.UpstreamError = UpstreamError;
class UpstreamClient {
    service;
    baseUrl;
    timeoutMs;
    constructor(service, baseUrl, timeoutMs = 2000) {
        this.service = service;
        this.baseUrl = baseUrl;
        this.timeoutMs = timeoutMs;
    }
    async getJson(path, opts = {}) {
        return this.request('GET', path, undefined, opts);
    }
    async postJson(path, body, opts = {}) {
        return this.request('POST', path, body, opts);
    }
    async request(method, path, body, opts) {
        const url = this.baseUrl + path;
        let res;
        try {
            res = await axios_1.default.request({
                method,
                url,
                data: body,
                timeout: opts.timeoutMs ?? this.timeoutMs,
                headers: { accept: 'application/json' },
                // The body is parsed below, by us: axios would hand back a string
                // silently when it is not JSON.
                responseType: 'text',
                transformResponse: [(data) => data],
                validateStatus: () => true,
            });
        }
        catch (err) {
            throw new UpstreamError(`${this.service} request failed: ${err.message}`, {
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
        return JSON.parse(res.data);
    }
}
exports.UpstreamClient = UpstreamClient;
// Retries transient upstream failures (5xx, network errors) with a short backoff.
async function withRetry(fn, attempts = 3, delayMs = 40) {
    let last;
    for (let attempt = 1; attempt <= attempts; attempt += 1) {
        try {
            return await fn(attempt);
        }
        catch (err) {
            last = err;
            const retryable = err instanceof UpstreamError && (err.status === undefined || err.status >= 500);
            if (!retryable || attempt === attempts)
                break;
            console.warn(`attempt ${attempt}/${attempts} failed (${err.message}); retrying`);
            await new Promise((resolve) => setTimeout(resolve, delayMs * attempt));
        }
    }
    throw last;
}
