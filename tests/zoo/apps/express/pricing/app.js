'use strict';
// pricing: quotes (net + tax), FX rates, bulk quotes. One instance per region;
// each reads its tax table from APP_TAX_TABLE (JSON), set per deployment.
//
// Env: APP_PORT, APP_TAX_TABLE, APP_FX_DELAY_MS.
const express = require('express');
const { requestContext } = require('../lib/context');
const { evaluateFlag } = require('../lib/flags');
const { errorResponder } = require('../lib/errors');
const { listen } = require('../lib/server');

// The eu-west-1 deployment's table was copied from a staging config that only
// had the reduced rate: `standard` is missing there.
const TAX_TABLE = JSON.parse(process.env.APP_TAX_TABLE || '{}');
const FX_DELAY_MS = Number(process.env.APP_FX_DELAY_MS || 1000);
const LIST_PRICES = { 'SKU-100': 1999, 'SKU-101': 2499, 'SKU-102': 899, 'SKU-103': 12900 };

const app = express();
app.use(requestContext);

// Scenario malformed_json: the bulk quote body is built by hand for speed; a sku
// missing from the price list gives `NaN`, which is not JSON.
app.get('/quote/bulk', (req, res) => {
  const skus = String(req.query.skus || '').split(',').filter(Boolean);
  const parts = skus.map((sku) => `{"sku":"${sku}","cents":${Math.round(LIST_PRICES[sku] * 1.0)}}`);
  res.type('application/json').send(`{"quotes":[${parts.join(',')}]}`);
});

// Scenario region_config: `TAX_TABLE.standard` is undefined in eu-west-1.
app.get('/quote/:sku', (req, res) => {
  const cents = Number(req.query.cents);
  const signed = evaluateFlag('pricing.signed-quotes', req.tenant) === 'on';
  const rate = TAX_TABLE.standard.rate;
  const taxCents = Math.round(cents * rate);
  res.json({
    sku: req.params.sku,
    netCents: cents,
    taxCents,
    grossCents: cents + taxCents,
    signature: signed ? `sig-${req.params.sku}-${cents + taxCents}` : undefined,
  });
});

// Scenario partner_timeout: anything but USD asks the (simulated) FX feed, slow.
app.get('/rates/fx', async (req, res) => {
  const currency = String(req.query.currency || 'USD');
  if (currency !== 'USD') await new Promise((resolve) => setTimeout(resolve, FX_DELAY_MS));
  res.json({ currency, rate: currency === 'USD' ? 1 : 0.92 });
});

app.use(errorResponder('pricing'));

listen(app, 'pricing');
