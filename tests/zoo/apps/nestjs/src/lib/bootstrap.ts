// Starts one service: the Nest app on Express, the request context, and an
// orderly stop on SIGTERM (the SDK's own SIGTERM handler flushes the spans;
// closing the app lets the process end once that is done).
import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { requestContext, traceRequests } from './context';

export async function bootstrap(module: unknown, name: string): Promise<void> {
  const app = await NestFactory.create<NestExpressApplication>(module as any, { logger: ['error', 'warn'] });
  traceRequests(app.getHttpServer());
  app.use(requestContext);
  const port = Number(process.env.APP_PORT || 3000);
  await app.listen(port, '127.0.0.1');
  console.log(`${name} listening on 127.0.0.1:${port}`);
  process.once('SIGTERM', () => {
    setTimeout(() => process.exit(0), 2500).unref();
    app.close().catch((err) => console.error('close failed', err));
  });
}
