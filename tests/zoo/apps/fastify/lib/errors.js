'use strict';
// Error types (Fastify's convention: `statusCode` on the error) and the root
// error handler every service installs with `setErrorHandler`: log, answer JSON
// with the error's status (4xx/503 when the code says so, 500 otherwise).
// Recording the exception is left to the stock instrumentation.

class AppError extends Error {
  constructor(statusCode, message, { code, details, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'AppError';
    this.statusCode = statusCode;
    this.code = code;
    this.details = details;
  }
}

class NotFoundError extends AppError {
  constructor(message) {
    super(404, message, { code: 'not_found' });
    this.name = 'NotFoundError';
  }
}

class CheckoutRejected extends AppError {
  constructor(message, details) {
    super(422, message, { code: 'checkout_rejected', details });
    this.name = 'CheckoutRejected';
  }
}

class StoreUnavailable extends AppError {
  constructor(message, cause) {
    super(503, message, { code: 'store_unavailable', cause });
    this.name = 'StoreUnavailable';
  }
}

// Async, returning the body (Fastify sends what an async error handler returns).
// The style matters to the instrumentation, see README "What the SDK emitted".
async function errorHandler(error, request, reply) {
  const status = error.statusCode >= 400 && error.statusCode < 600 ? error.statusCode : 500;
  request.log.error({ err: error, tenant: request.tenant }, `${request.method} ${request.url} -> ${status}`);
  reply.code(status);
  return {
    error: status < 500 || status === 503 ? error.message : 'internal error',
    code: error.code ?? 'internal',
  };
}

module.exports = { AppError, NotFoundError, CheckoutRejected, StoreUnavailable, errorHandler };
