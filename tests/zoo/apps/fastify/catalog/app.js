'use strict';
// catalog: products, tenant profiles, stock, bundles, reports, exports and
// checkout validation. PostgreSQL (pg) and Redis (ioredis); calls pricing (one
// instance per region) and a reviews service, through axios.
//
// Env: APP_PORT, APP_PG_URL, APP_REDIS_URL, PRICING_URL, PRICING_EU_URL, REVIEWS_URL.
const Redis = require('ioredis');
const { createApp, start } = require('../lib/server');
const { evaluateFlag } = require('../lib/flags');
const { callService } = require('../lib/upstream');
const { NotFoundError, CheckoutRejected, StoreUnavailable } = require('../lib/errors');
const { pools } = require('../lib/db');

const db = pools(process.env.APP_PG_URL);
const redis = new Redis(process.env.APP_REDIS_URL, { maxRetriesPerRequest: 1 });
const { PRICING_URL, PRICING_EU_URL, REVIEWS_URL } = process.env;

const app = createApp();

async function tenantProfile(id) {
  const { rows } = await db.main.query('SELECT id, region, billing_address FROM tenant_profiles WHERE id = $1', [id]);
  if (!rows.length) throw new NotFoundError(`unknown tenant ${id}`);
  return rows[0];
}

async function product(sku) {
  const { rows } = await db.main.query('SELECT sku, labels, price_cents, currency FROM products WHERE sku = $1', [sku]);
  if (!rows.length) throw new NotFoundError(`unknown product ${sku}`);
  return rows[0];
}

// Scenario null_profile_field: globex signed up without a billing address
// (billing_address is null); the tax country is read from it.
app.get('/products/:sku', async function getProduct(request) {
  const profile = await tenantProfile(request.tenant);
  const p = await product(request.params.sku);
  const addressV2 = evaluateFlag('catalog.address-v2', request.tenant) === 'on';
  return {
    sku: p.sku,
    name: p.labels.en,
    priceCents: p.price_cents,
    taxCountry: profile.billing_address.country,
    addressFormat: addressV2 ? 'v2' : 'v1',
  };
});

// Scenario response_schema: the summary's response schema requires `name`; a
// product imported with only a German label gives name undefined and Fastify's
// serializer (fast-json-stringify) throws.
app.get('/products/:sku/summary', {
  schema: {
    response: {
      200: {
        type: 'object',
        required: ['sku', 'name', 'priceCents'],
        properties: { sku: { type: 'string' }, name: { type: 'string' }, priceCents: { type: 'integer' } },
      },
    },
  },
}, async function productSummary(request) {
  const p = await product(request.params.sku);
  return { sku: p.sku, name: p.labels.en, priceCents: p.price_cents };
});

// Scenario malformed_json: pricing's bulk endpoint answers 200 with truncated
// JSON; axios (silentJSONParsing) hands back the raw string and `.quotes` is
// undefined here, in catalog.
app.get('/quotes/bulk', async function bulkQuotes(request) {
  const data = await callService('pricing', `${PRICING_URL}/quote/bulk?skus=${encodeURIComponent(request.query.skus)}`, {
    tenant: request.tenant,
  });
  return { quotes: data.quotes.map((q) => ({ sku: q.sku, cents: q.cents })) };
});

// Scenario region_config: eu tenants are quoted by the eu-west-1 pricing, whose
// deployment lacks APP_ROUNDING.
app.get('/quotes/:sku', async function getQuote(request) {
  const profile = await tenantProfile(request.tenant);
  const p = await product(request.params.sku);
  const base = profile.region === 'eu' ? PRICING_EU_URL : PRICING_URL;
  const quote = await callService('pricing', `${base}/quote/${p.sku}?cents=${p.price_cents}`, { tenant: request.tenant });
  return { sku: p.sku, quote };
});

// Scenario responder_throws: the checkout plugin has its own error handler that
// shows the partner's message of a failed partner call; it assumes every error
// has an axios `cause`, and a CheckoutRejected has none -> TypeError inside the
// error handler; Fastify hands that to the root error handler -> 500, not 422.
app.register(async function checkout(scope) {
  scope.setErrorHandler(function checkoutErrors(error, request, reply) {
    const partnerMessage = error.cause.response.data.message;
    reply.code(error.statusCode || 502).send({ error: error.message, partner: partnerMessage });
  });
  scope.post('/checkout/validate', async function validateCheckout(request) {
    const lines = request.body?.lines || [];
    const bad = lines.filter((l) => !Number.isInteger(l.qty) || l.qty <= 0);
    if (bad.length) throw new CheckoutRejected(`${bad.length} checkout line(s) rejected`, { bad });
    const { rows } = await db.main.query('SELECT count(*)::int AS n FROM products WHERE sku = ANY($1)', [
      lines.map((l) => l.sku),
    ]);
    return { ok: true, known: rows[0].n };
  });
});

// Scenario lost_exception: the legacy price-list API (its own plugin, an older
// team's code) has a synchronous error handler that answers with reply.send();
// the handler reads .toUpperCase() of a null legacy code (SKU-ZETA has none).
app.register(async function legacyApi(scope) {
  scope.setErrorHandler(function legacyErrors(error, request, reply) {
    request.log.error({ err: error }, 'legacy price list failed');
    reply.code(500).send({ status: 'ERROR', message: 'price list unavailable' });
  });
  scope.get('/legacy/price-list/:sku', async function legacyPriceList(request) {
    const { rows } = await db.main.query('SELECT sku, legacy_code, price_cents FROM products WHERE sku = $1', [
      request.params.sku,
    ]);
    if (!rows.length) throw new NotFoundError(`unknown product ${request.params.sku}`);
    return { code: rows[0].legacy_code.toUpperCase(), cents: rows[0].price_cents };
  });
});

// Scenario pg_query_timeout: the scan costs ~days/180 s; the reports pool's
// client-side query_timeout is 1.5 s ("Query read timeout").
app.get('/reports/slow-movers', async function slowMovers(request) {
  const days = Number(request.query.days || 30);
  const { rows } = await db.reports.query(
    'SELECT p.sku FROM products p, (SELECT pg_sleep($1::int / 180.0)) AS scan ORDER BY p.sku LIMIT 5',
    [days],
  );
  return { days, slowMovers: rows.map((r) => r.sku) };
});

// Scenario connection_refused: REVIEWS_URL is a port nobody listens on.
app.get('/products/:sku/reviews', async function productReviews(request) {
  const reviews = await callService('reviews', `${REVIEWS_URL}/reviews/${request.params.sku}`, { tenant: request.tenant });
  return { sku: request.params.sku, reviews };
});

// Scenario pool_exhaustion: one export connection, held 0.8 s by an export.
app.get('/exports/:kind', async function runExport(request) {
  const { rows } = await db.exports.query(
    'SELECT sku, price_cents FROM products, pg_sleep(0.8) WHERE $1::text IS NOT NULL ORDER BY sku',
    [request.params.kind],
  );
  return { kind: request.params.kind, rows: rows.length };
});

// Scenario partner_timeout: 300 ms budget for pricing's FX rate (1 s for non-USD).
app.get('/products/:sku/fx', async function productFx(request) {
  const p = await product(request.params.sku);
  const currency = String(request.query.currency || 'USD');
  const fx = await callService('pricing', `${PRICING_URL}/rates/fx?currency=${currency}`, {
    tenant: request.tenant,
    timeout: 300,
  });
  return { sku: p.sku, currency, priceMinor: Math.round(p.price_cents * fx.rate) };
});

// Scenario no_exception_500: a stale feed is answered 500 with a body; no throw.
app.get('/inventory/sync', async function inventorySync(request, reply) {
  const { rows } = await db.main.query(
    "SELECT warehouse, now() - synced_at > interval '1 hour' AS stale FROM inventory_sync WHERE warehouse = $1",
    [String(request.query.warehouse || 'w1')],
  );
  if (!rows.length || rows[0].stale) return reply.code(500).send({ ok: false, error: 'inventory feed stale' });
  return { ok: true, warehouse: rows[0].warehouse };
});

// Scenario retries_store: stock lives in one table per warehouse region; the
// `ap` table was never migrated -> 42P01 -> 503 (the edge retries).
app.get('/stock/:sku', async function stockLevel(request) {
  const warehouse = String(request.query.warehouse || 'us').replace(/[^a-z]/g, '');
  try {
    const { rows } = await db.main.query(`SELECT qty FROM stock_${warehouse} WHERE sku = $1`, [request.params.sku]);
    return { sku: request.params.sku, warehouse, qty: rows[0]?.qty ?? 0 };
  } catch (err) {
    throw new StoreUnavailable('stock store unavailable', err);
  }
});

// Scenario recovered_then_defect: the flag sends the tenant to the Redis cache
// first; dims:SKU-ZETA is a list (WRONGTYPE for HGET), caught, PostgreSQL
// fallback fine, then the null dimensions array is destructured.
app.get('/products/:sku/dimensions', async function productDimensions(request) {
  const sku = request.params.sku;
  if (evaluateFlag('catalog.dims-cache', request.tenant) === 'redis') {
    try {
      const cached = await redis.hget(`dims:${sku}`, 'json');
      if (cached) return JSON.parse(cached);
    } catch (err) {
      request.log.warn(`dimensions cache unavailable (${err.message}); reading PostgreSQL`);
    }
  }
  const { rows } = await db.main.query('SELECT sku, dimensions FROM products WHERE sku = $1', [sku]);
  if (!rows.length) throw new NotFoundError(`unknown product ${sku}`);
  const [widthCm, heightCm, depthCm] = rows[0].dimensions;
  return { sku, widthCm, heightCm, depthCm };
});

// Scenario n_plus_one_then_defect: one query per bundle item (N+1), then each
// price is formatted in the item's currency; SKU-109 was imported with 'EURO'.
app.get('/bundles/:id', async function getBundle(request) {
  const { rows } = await db.main.query('SELECT id, skus FROM bundles WHERE id = $1', [request.params.id]);
  if (!rows.length) throw new NotFoundError(`unknown bundle ${request.params.id}`);
  const items = [];
  for (const sku of rows[0].skus) {
    const r = await db.main.query('SELECT sku, price_cents, currency FROM products WHERE sku = $1', [sku]);
    items.push(r.rows[0]);
  }
  return {
    id: rows[0].id,
    items: items.map((p) => ({
      sku: p.sku,
      price: new Intl.NumberFormat('en-US', { style: 'currency', currency: p.currency }).format(p.price_cents / 100),
    })),
  };
});

start(app, 'catalog', async () => {
  redis.disconnect();
  await db.end();
});
