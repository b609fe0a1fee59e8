'use strict';
// edge: the public API. Every route calls catalog through the shared requestJson
// helper; any failure below becomes an UpstreamError, which the error responder
// answers as a plain 500 (the common translation: no 502/503/504).
//
// Env: APP_PORT, CATALOG_URL.
const express = require('express');
const { requestContext } = require('../lib/context');
const { evaluateFlag } = require('../lib/flags');
const { requestJson, withRetry } = require('../lib/upstream');
const { errorResponder } = require('../lib/errors');
const { listen } = require('../lib/server');

const CATALOG_URL = process.env.CATALOG_URL;
const catalog = (path, opts = {}) => requestJson('catalog', `${CATALOG_URL}${path}`, { timeoutMs: 5000, ...opts });
const q = (req) => {
  const s = new URLSearchParams(req.query).toString();
  return s ? `?${s}` : '';
};

const app = express();
app.use(express.json());
app.use(requestContext);

app.get('/api/products/:sku', async (req, res) => {
  res.json(await catalog(`/products/${req.params.sku}`));
});

app.get('/api/quotes/bulk', async (req, res) => {
  res.json(await catalog(`/quotes/bulk${q(req)}`));
});

app.get('/api/quotes/:sku', async (req, res) => {
  res.json(await catalog(`/quotes/${req.params.sku}`));
});

app.post('/api/cart/validate', async (req, res) => {
  res.json(await catalog('/cart/validate', { method: 'POST', body: req.body }));
});

app.get('/api/reports/slow-movers', async (req, res) => {
  res.json(await catalog(`/reports/slow-movers${q(req)}`));
});

app.get('/api/products/:sku/reviews', async (req, res) => {
  res.json(await catalog(`/products/${req.params.sku}/reviews`));
});

app.get('/api/exports/:kind', async (req, res) => {
  res.json(await catalog(`/exports/${req.params.kind}`));
});

app.get('/api/products/:sku/fx', async (req, res) => {
  res.json(await catalog(`/products/${req.params.sku}/fx${q(req)}`));
});

// The inventory status is proxied as is: catalog's status and body go back to
// the caller unchanged (no exception either side).
app.get('/api/inventory/sync', async (req, res) => {
  const upstream = await fetch(`${CATALOG_URL}/inventory/sync${q(req)}`, { signal: AbortSignal.timeout(5000) });
  res.status(upstream.status).json(await upstream.json());
});

// Stock is retried (the flag says how many attempts) on a 5xx from catalog.
app.get('/api/stock/:sku', async (req, res) => {
  const attempts = Number(evaluateFlag('edge.stock-retries', req.tenant));
  res.json(await withRetry(() => catalog(`/stock/${req.params.sku}`), { attempts }));
});

app.get('/api/products/:sku/dimensions', async (req, res) => {
  res.json(await catalog(`/products/${req.params.sku}/dimensions`));
});

app.get('/api/bundles/:id', async (req, res) => {
  res.json(await catalog(`/bundles/${req.params.id}`));
});

app.use(errorResponder('edge'));

listen(app, 'edge');
