'use strict';
// Error types and the error responder every service mounts last
// (`app.use(errorResponder('catalog'))`), the way most Express apps have one:
// log the error, answer JSON with the error's own status (4xx/503 when the code
// says so, 500 otherwise). Recording the exception is left to the stock
// instrumentation.

class HttpError extends Error {
  constructor(status, message, { code, details, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'HttpError';
    this.status = status;
    this.code = code;
    this.details = details;
    this.expose = status < 500 || status === 503;
  }
}

class ValidationError extends HttpError {
  constructor(message, details) {
    super(422, message, { code: 'invalid_cart', details });
    this.name = 'ValidationError';
  }
}

class ServiceUnavailableError extends HttpError {
  constructor(message, cause) {
    super(503, message, { code: 'store_unavailable', cause });
    this.name = 'ServiceUnavailableError';
  }
}

function errorResponder(service) {
  // Four parameters: Express's signature of an error-handling middleware.
  // eslint-disable-next-line no-unused-vars
  return function errorResponder(err, req, res, next) {
    const status = Number.isInteger(err.status) ? err.status : 500;
    const body = {
      error: {
        message: err.expose ? err.message : 'internal error',
        code: err.code ?? 'internal',
        // The validation details (which items of the cart failed) go back to the
        // caller as they are.
        details: err.details,
      },
    };
    // One structured log line per failed request, with what the caller gets.
    console.error(JSON.stringify({ service, method: req.method, url: req.originalUrl, status, body, stack: err.stack }));
    res.status(status).json(body);
  };
}

module.exports = { HttpError, ValidationError, ServiceUnavailableError, errorResponder };
