"use strict";
var __decorate = (this && this.__decorate) || function (decorators, target, key, desc) {
    var c = arguments.length, r = c < 3 ? target : desc === null ? desc = Object.getOwnPropertyDescriptor(target, key) : desc, d;
    if (typeof Reflect === "object" && typeof Reflect.decorate === "function") r = Reflect.decorate(decorators, target, key, desc);
    else for (var i = decorators.length - 1; i >= 0; i--) if (d = decorators[i]) r = (c < 3 ? d(r) : c > 3 ? d(target, key, r) : d(target, key)) || r;
    return c > 3 && r && Object.defineProperty(target, key, r), r;
};
Object.defineProperty(exports, "__esModule", { value: true });
exports.AllExceptionsFilter = void 0;
// The global exception filter every service registers (APP_FILTER): Nest's
// HttpExceptions keep their status, the app's own AppErrors answer their status
// with their details, anything else is logged and answered 500.
const common_1 = require("@nestjs/common");
const api_1 = require("@opentelemetry/api");
const errors_1 = require("./errors");
let AllExceptionsFilter = class AllExceptionsFilter {
    logger = new common_1.Logger('AllExceptionsFilter');
    catch(exception, host) {
        const http = host.switchToHttp();
        const req = http.getRequest();
        const res = http.getResponse();
        const traceId = api_1.trace.getActiveSpan()?.spanContext().traceId;
        if (exception instanceof common_1.HttpException) {
            const body = exception.getResponse();
            res.status(exception.getStatus()).json({
                ...(typeof body === 'string' ? { message: body } : body),
                traceId,
            });
            return;
        }
        if (exception instanceof errors_1.AppError) {
            res.status(exception.status).json({
                error: exception.code,
                message: exception.message,
                details: exception.details,
                traceId,
            });
            return;
        }
        const err = exception instanceof Error ? exception : new Error(String(exception));
        this.logger.error(`${req.method} ${req.originalUrl} failed: ${err.name}: ${err.message}`, err.stack);
        res.status(500).json({ error: 'internal_error', message: err.message, traceId });
    }
};
exports.AllExceptionsFilter = AllExceptionsFilter;
exports.AllExceptionsFilter = AllExceptionsFilter = __decorate([
    (0, common_1.Catch)()
], AllExceptionsFilter);
