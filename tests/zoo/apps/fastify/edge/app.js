'use strict';
// edge: the public API. Every route calls catalog through callService (axios);
// any failure below becomes an UpstreamError, which the root error handler
// answers as a plain 500 (the common translation: no 502/503/504).
//
// Env: APP_PORT, CATALOG_URL.
const axios = require('axios');
const { createApp, start } = require('../lib/server');
const { evaluateFlag } = require('../lib/flags');
const { callService, withRetry } = require('../lib/upstream');

const { CATALOG_URL } = process.env;
const catalog = (request, path, opts = {}) =>
  callService('catalog', `${CATALOG_URL}${path}`, { tenant: request.tenant, timeout: 5000, ...opts });
const qs = (request) => {
  const s = new URLSearchParams(request.query).toString();
  return s ? `?${s}` : '';
};

const app = createApp();

app.get('/api/products/:sku', async function product(request) {
  return catalog(request, `/products/${request.params.sku}`);
});
app.get('/api/products/:sku/summary', async function productSummary(request) {
  return catalog(request, `/products/${request.params.sku}/summary`);
});
app.get('/api/quotes/bulk', async function bulkQuotes(request) {
  return catalog(request, `/quotes/bulk${qs(request)}`);
});
app.get('/api/quotes/:sku', async function quote(request) {
  return catalog(request, `/quotes/${request.params.sku}`);
});
app.post('/api/checkout/validate', async function validateCheckout(request) {
  return catalog(request, '/checkout/validate', { method: 'POST', data: request.body });
});
app.get('/api/reports/slow-movers', async function slowMovers(request) {
  return catalog(request, `/reports/slow-movers${qs(request)}`);
});
app.get('/api/products/:sku/reviews', async function productReviews(request) {
  return catalog(request, `/products/${request.params.sku}/reviews`);
});
app.get('/api/exports/:kind', async function runExport(request) {
  return catalog(request, `/exports/${request.params.kind}`);
});
app.get('/api/products/:sku/fx', async function productFx(request) {
  return catalog(request, `/products/${request.params.sku}/fx${qs(request)}`);
});
app.get('/api/products/:sku/dimensions', async function productDimensions(request) {
  return catalog(request, `/products/${request.params.sku}/dimensions`);
});
app.get('/api/legacy/price-list/:sku', async function legacyPriceList(request) {
  return catalog(request, `/legacy/price-list/${request.params.sku}`);
});
app.get('/api/bundles/:id', async function bundle(request) {
  return catalog(request, `/bundles/${request.params.id}`);
});

// Stock is retried (the flag says how many attempts) on a 5xx from catalog.
app.get('/api/stock/:sku', async function stock(request) {
  const attempts = Number(evaluateFlag('edge.retry-budget', request.tenant));
  return withRetry(() => catalog(request, `/stock/${request.params.sku}${qs(request)}`), { attempts });
});

// The inventory status is proxied as is (status and body), no exception.
app.get('/api/inventory/sync', async function inventorySync(request, reply) {
  const res = await axios.get(`${CATALOG_URL}/inventory/sync${qs(request)}`, {
    headers: { 'x-tenant': request.tenant },
    validateStatus: () => true,
    timeout: 5000,
  });
  return reply.code(res.status).send(res.data);
});

start(app, 'edge');
