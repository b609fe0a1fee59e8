'use strict';
// Edge service for faultline's real-world scenarios.
//
// Runs under the stock OpenTelemetry Node SDK auto-instrumentation:
//   node --require @opentelemetry/auto-instrumentations-node/register app.js
// configured only through the standard OTEL_* environment variables.
//
// Settings (env): APP_PORT, ORDERS_URL, PROFILES_URL.

const express = require('express');
const { trace, context, propagation } = require('@opentelemetry/api');

const PORT = Number(process.env.APP_PORT || 3000);
const ORDERS_URL = process.env.ORDERS_URL || 'http://127.0.0.1:8000';
const PROFILES_URL = process.env.PROFILES_URL || 'http://127.0.0.1:8003';

const app = express();

// Trace id for the caller, and the tenant on the server span; the tenant also
// travels downstream as W3C baggage (`app.tenant`).
app.use((req, res, next) => {
  const span = trace.getActiveSpan();
  if (span) {
    res.setHeader('x-trace-id', span.spanContext().traceId);
    const tenant = req.get('x-tenant');
    if (tenant) {
      span.setAttribute('app.tenant', tenant);
      const bag = propagation.createBaggage({ 'app.tenant': { value: tenant } });
      return context.with(propagation.setBaggage(context.active(), bag), next);
    }
  }
  return next();
});

function mapProfileResponse(profile) {
  return {
    id: profile.id,
    displayName: profile.name,
    theme: profile.preferences.theme,
    locale: profile.preferences.locale,
  };
}

async function getJson(url) {
  const res = await fetch(url);
  if (!res.ok) {
    throw new Error(`upstream ${new URL(url).pathname} answered ${res.status}`);
  }
  return res.json();
}

app.get('/api/profile/:id', async (req, res) => {
  const record = await getJson(`${PROFILES_URL}/internal/profiles/${req.params.id}`);
  res.json(mapProfileResponse(record));
});

app.get('/api/orders/:id', async (req, res) => {
  const order = await getJson(`${ORDERS_URL}/orders/${req.params.id}`);
  res.json({ edge: 'ok', ...order });
});

// Error handler as most express apps have one: log and answer a generic 500.
// (Recording the exception is left to the stock instrumentation.)
// eslint-disable-next-line no-unused-vars
app.use((err, req, res, next) => {
  console.error(`[edge] ${req.method} ${req.originalUrl}: ${err.stack}`);
  res.status(500).json({ error: 'internal error' });
});

const server = app.listen(PORT, '127.0.0.1', () => {
  console.log(`[edge] listening on 127.0.0.1:${PORT}`);
});

// The auto-instrumentation's register hook flushes the SDK on SIGTERM but, by
// installing a listener, also suppresses the default exit: close the server so
// the event loop drains once the exporter is done.
process.on('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
});
