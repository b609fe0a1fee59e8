'use strict';
// catalog: products, tenants' shipping settings, stock, bundles, reports and
// exports. PostgreSQL (pg) and Redis (ioredis); calls pricing (one instance per
// region) and a reviews service.
//
// Env: APP_PORT, APP_PG_URL, APP_REDIS_URL, PRICING_URL, PRICING_EU_URL, REVIEWS_URL.
const express = require('express');
const Redis = require('ioredis');
const { requestContext } = require('../lib/context');
const { evaluateFlag } = require('../lib/flags');
const { requestJson } = require('../lib/upstream');
const { HttpError, ValidationError, ServiceUnavailableError, errorResponder } = require('../lib/errors');
const { pools } = require('../lib/db');
const { listen } = require('../lib/server');

const db = pools(process.env.APP_PG_URL);
const redis = new Redis(process.env.APP_REDIS_URL, { maxRetriesPerRequest: 1 });
const PRICING_URL = process.env.PRICING_URL;
const PRICING_EU_URL = process.env.PRICING_EU_URL;
const REVIEWS_URL = process.env.REVIEWS_URL;

const app = express();
app.use(express.json());
app.use(requestContext);

async function tenantRow(id) {
  const { rows } = await db.main.query('SELECT id, region, country, settings FROM tenants WHERE id = $1', [id]);
  if (!rows.length) throw new HttpError(404, `unknown tenant ${id}`);
  return rows[0];
}

async function productRow(sku) {
  const { rows } = await db.main.query('SELECT sku, name, price_cents, weight_g FROM products WHERE sku = $1', [sku]);
  if (!rows.length) throw new HttpError(404, `unknown product ${sku}`);
  return rows[0];
}

// Scenario null_tenant_field: tenants.settings.shipping is null for a tenant whose
// onboarding never finished (initech); the handler reads `.zone` of it.
app.get('/products/:sku', async (req, res) => {
  const tenant = await tenantRow(req.tenant);
  const product = await productRow(req.params.sku);
  const shippingV2 = evaluateFlag('catalog.shipping-v2', req.tenant) === 'v2';
  const { shipping } = tenant.settings;
  res.json({
    sku: product.sku,
    name: product.name,
    priceCents: product.price_cents,
    shipping: { zone: shipping.zone, carrier: shipping.carrier, engine: shippingV2 ? 'v2' : 'v1' },
  });
});

// Scenario malformed_json: pricing's bulk endpoint answers 200 with a body that is
// not JSON; requestJson's res.json() throws SyntaxError here, in catalog.
app.get('/quotes/bulk', async (req, res) => {
  const quotes = await requestJson('pricing', `${PRICING_URL}/quote/bulk?skus=${encodeURIComponent(req.query.skus)}`);
  res.json({ quotes: quotes.quotes, count: quotes.quotes.length });
});

// Scenario region_config: the tenant's region picks the pricing instance; the
// eu-west-1 one has no standard tax rate configured and throws.
app.get('/quotes/:sku', async (req, res) => {
  const tenant = await tenantRow(req.tenant);
  const product = await productRow(req.params.sku);
  const base = tenant.region === 'eu' ? PRICING_EU_URL : PRICING_URL;
  const quote = await requestJson(
    'pricing',
    `${base}/quote/${product.sku}?cents=${product.price_cents}&country=${tenant.country}`,
  );
  res.json({ sku: product.sku, name: product.name, quote });
});

// Scenario responder_throws: a cart line keeps a back reference to its cart (for
// the totals); the ValidationError's details carry the bad lines, and the error
// responder's res.json() cannot serialise them (circular) -> 500 instead of 422.
app.post('/cart/validate', async (req, res) => {
  const cart = { tenant: req.tenant, lines: [] };
  for (const item of req.body.items || []) {
    cart.lines.push({ sku: item.sku, qty: item.qty, cart });
  }
  const invalid = cart.lines.filter((l) => !Number.isInteger(l.qty) || l.qty <= 0);
  if (invalid.length) throw new ValidationError(`${invalid.length} cart line(s) invalid`, { invalid });
  const { rows } = await db.main.query('SELECT sku FROM products WHERE sku = ANY($1)', [cart.lines.map((l) => l.sku)]);
  res.json({ ok: true, lines: cart.lines.length, known: rows.length });
});

// Scenario pg_statement_timeout: the window scan costs ~days/180 s; the API role's
// statement_timeout is 1.5 s, so a 365-day report is cancelled by PostgreSQL.
app.get('/reports/slow-movers', async (req, res) => {
  const days = Number(req.query.days || 30);
  const { rows } = await db.main.query(
    'WITH scan AS (SELECT pg_sleep($1::int / 180.0)) SELECT p.sku, p.name FROM products p, scan ORDER BY p.sku LIMIT 5',
    [days],
  );
  res.json({ days, slowMovers: rows });
});

// Scenario connection_refused: the reviews service is configured at an address
// nothing listens on.
app.get('/products/:sku/reviews', async (req, res) => {
  const reviews = await requestJson('reviews', `${REVIEWS_URL}/reviews/${req.params.sku}`);
  res.json({ sku: req.params.sku, reviews });
});

// Scenario pool_exhaustion: exports use a pool of ONE connection (300 ms
// acquisition timeout); an export holds it for 0.8 s.
app.get('/exports/:kind', async (req, res) => {
  const { rows } = await db.exports.query(
    'SELECT sku, name, price_cents FROM products, pg_sleep(0.8) WHERE $1::text IS NOT NULL ORDER BY sku',
    [req.params.kind],
  );
  res.json({ kind: req.params.kind, rows: rows.length });
});

// Scenario partner_timeout: FX rates from pricing with a 300 ms budget; pricing's
// live FX lookup takes a second for any currency but USD.
app.get('/products/:sku/fx', async (req, res) => {
  const product = await productRow(req.params.sku);
  const currency = String(req.query.currency || 'USD');
  const fx = await requestJson('pricing', `${PRICING_URL}/rates/fx?currency=${currency}`, { timeoutMs: 300 });
  res.json({ sku: product.sku, currency, priceMinor: Math.round(product.price_cents * fx.rate) });
});

// Scenario no_exception_500: a stale inventory feed is reported as a bare 500
// with a JSON body; nothing is thrown.
app.get('/inventory/sync', async (req, res) => {
  const { rows } = await db.main.query(
    "SELECT warehouse, now() - synced_at > interval '1 hour' AS stale FROM inventory_sync WHERE warehouse = $1",
    [String(req.query.warehouse || 'w1')],
  );
  if (!rows.length || rows[0].stale) {
    return res.status(500).json({ ok: false, error: 'inventory feed stale' });
  }
  return res.json({ ok: true, warehouse: rows[0].warehouse });
});

// Scenario retries_store: stock levels are a Redis hash per sku; a legacy job
// wrote one of them as a plain string -> WRONGTYPE -> 503 (the caller retries).
app.get('/stock/:sku', async (req, res) => {
  let stock;
  try {
    stock = await redis.hgetall(`stock:${req.params.sku}`);
  } catch (err) {
    throw new ServiceUnavailableError('stock store unavailable', err);
  }
  res.json({ sku: req.params.sku, warehouses: stock });
});

// Scenario recovered_then_defect: the flag sends the tenant to the Redis cache
// first; the cache key of SKU-ZETA is a hash (WRONGTYPE), which is caught and the
// handler falls back to PostgreSQL (fine), then reads .widthCm of a null column.
app.get('/products/:sku/dimensions', async (req, res) => {
  const sku = req.params.sku;
  if (evaluateFlag('catalog.dimensions-cache', req.tenant) === 'redis') {
    try {
      const cached = await redis.get(`product:${sku}`);
      if (cached) return res.json(JSON.parse(cached));
    } catch (err) {
      console.warn(`[catalog] dimensions cache unavailable (${err.message}); reading PostgreSQL`);
    }
  }
  const { rows } = await db.main.query('SELECT sku, dimensions FROM products WHERE sku = $1', [sku]);
  if (!rows.length) throw new HttpError(404, `unknown product ${sku}`);
  const { dimensions } = rows[0];
  const body = { sku, widthCm: dimensions.widthCm, heightCm: dimensions.heightCm, depthCm: dimensions.depthCm };
  return res.json(body);
});

// Scenario n_plus_one_then_defect: one query per bundle item (N+1), then the total
// reads .listCents of a product whose pricing column is null.
app.get('/bundles/:id', async (req, res) => {
  const { rows } = await db.main.query('SELECT id, skus FROM bundles WHERE id = $1', [req.params.id]);
  if (!rows.length) throw new HttpError(404, `unknown bundle ${req.params.id}`);
  const items = [];
  for (const sku of rows[0].skus) {
    const r = await db.main.query('SELECT sku, name, pricing FROM products WHERE sku = $1', [sku]);
    items.push(r.rows[0]);
  }
  const totalCents = items.reduce((sum, p) => sum + p.pricing.listCents, 0);
  res.json({ id: rows[0].id, items: items.length, totalCents });
});

app.use(errorResponder('catalog'));

listen(app, 'catalog', async () => {
  redis.disconnect();
  await Promise.all([db.main.end(), db.exports.end()]);
});
