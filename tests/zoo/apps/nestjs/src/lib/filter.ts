// The global exception filter every service registers (APP_FILTER): Nest's
// HttpExceptions keep their status, the app's own AppErrors answer their status
// with their details, anything else is logged and answered 500.
import { ArgumentsHost, Catch, ExceptionFilter, HttpException, Logger } from '@nestjs/common';
import { trace } from '@opentelemetry/api';
import type { Request, Response } from 'express';
import { AppError } from './errors';

@Catch()
export class AllExceptionsFilter implements ExceptionFilter {
  private readonly logger = new Logger('AllExceptionsFilter');

  catch(exception: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    const req = http.getRequest<Request>();
    const res = http.getResponse<Response>();
    const traceId = trace.getActiveSpan()?.spanContext().traceId;

    if (exception instanceof HttpException) {
      const body = exception.getResponse();
      res.status(exception.getStatus()).json({
        ...(typeof body === 'string' ? { message: body } : (body as object)),
        traceId,
      });
      return;
    }
    if (exception instanceof AppError) {
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
}
