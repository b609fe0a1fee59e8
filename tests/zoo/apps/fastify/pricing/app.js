'use strict';
// pricing: quotes (with the deployment's rounding rule), FX rates, bulk quotes.
// One instance per region.
//
// Env: APP_PORT, APP_ROUNDING ("<mode>:<digits>"), APP_FX_DELAY_MS.
const { createApp, start } = require('../lib/server');
const { evaluateFlag } = require('../lib/flags');

const FX_DELAY_MS = Number(process.env.APP_FX_DELAY_MS || 1000);
const LIST_PRICES = { 'SKU-100': 1999, 'SKU-101': 2499, 'SKU-102': 899, 'SKU-103': 12900 };

const app = createApp();

// Scenario malformed_json: the bulk body is streamed by hand; on a sku missing
// from the price list the writer stops, leaving the JSON unterminated (200).
app.get('/quote/bulk', async function bulkQuote(request, reply) {
  const skus = String(request.query.skus || '').split(',').filter(Boolean);
  let body = '{"quotes":[';
  for (const [i, sku] of skus.entries()) {
    if (!(sku in LIST_PRICES)) break;
    body += `${i ? ',' : ''}{"sku":"${sku}","cents":${LIST_PRICES[sku]}}`;
    if (i === skus.length - 1) body += ']}';
  }
  return reply.type('application/json').send(body);
});

// Scenario region_config: the eu-west-1 deployment has no APP_ROUNDING.
app.get('/quote/:sku', async function quote(request) {
  const cents = Number(request.query.cents);
  const mode = evaluateFlag('pricing.rounding-mode', request.tenant);
  const [, digits] = process.env.APP_ROUNDING.split(':');
  const gross = Number((cents * 1.07).toFixed(Number(digits)));
  return { sku: request.params.sku, netCents: cents, grossCents: Math.round(gross), rounding: mode };
});

// Scenario partner_timeout: anything but USD asks the (simulated) FX feed, slow.
app.get('/rates/fx', async function fxRate(request) {
  const currency = String(request.query.currency || 'USD');
  if (currency !== 'USD') await new Promise((resolve) => setTimeout(resolve, FX_DELAY_MS));
  return { currency, rate: currency === 'USD' ? 1 : 0.92 };
});

start(app, 'pricing');
