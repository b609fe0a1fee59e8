"use strict";
Object.defineProperty(exports, "__esModule", { value: true });
exports.ValidationError = exports.AppError = void 0;
// Errors of the app's own domain that carry an HTTP status and details for the
// client (rendered by AllExceptionsFilter).
class AppError extends Error {
    status;
    code;
    details;
    constructor(message, status, code, details) {
        super(message);
        this.status = status;
        this.code = code;
        this.details = details;
        this.name = new.target.name;
    }
}
exports.AppError = AppError;
class ValidationError extends AppError {
    constructor(message, details) {
        super(message, 422, 'validation_failed', details);
    }
}
exports.ValidationError = ValidationError;
