"use strict";
Object.defineProperty(exports, "__esModule", { value: true });
exports.bootstrap = bootstrap;
// Starts one service: the Nest app on Express, the request context, and an
// orderly stop on SIGTERM (the SDK's own SIGTERM handler flushes the spans;
// closing the app lets the process end once that is done).
require("reflect-metadata");
const core_1 = require("@nestjs/core");
const context_1 = require("./context");
async function bootstrap(module, name) {
    const app = await core_1.NestFactory.create(module, { logger: ['error', 'warn'] });
    (0, context_1.traceRequests)(app.getHttpServer());
    app.use(context_1.requestContext);
    const port = Number(process.env.APP_PORT || 3000);
    await app.listen(port, '127.0.0.1');
    console.log(`${name} listening on 127.0.0.1:${port}`);
    process.once('SIGTERM', () => {
        setTimeout(() => process.exit(0), 2500).unref();
        app.close().catch((err) => console.error('close failed', err));
    });
}
