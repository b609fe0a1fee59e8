'use strict';
// A tiny in-house feature-flag client. Each evaluation is reported the way an
// OpenFeature tracing hook reports it: a `feature_flag.evaluation` event on the
// active span.
const { trace } = require('@opentelemetry/api');

// flag -> { variants by tenant, fallback }
const FLAGS = {
  'catalog.shipping-v2': { tenants: { umbrella: 'v2', hooli: 'v2' }, fallback: 'v1' },
  'catalog.dimensions-cache': { tenants: { acme: 'redis', hooli: 'redis' }, fallback: 'off' },
  'pricing.signed-quotes': { tenants: {}, fallback: 'on' },
  'edge.stock-retries': { tenants: {}, fallback: '3' },
};

function evaluateFlag(key, tenant) {
  const flag = FLAGS[key];
  const variant = flag ? (flag.tenants[tenant] ?? flag.fallback) : 'off';
  trace.getActiveSpan()?.addEvent('feature_flag.evaluation', {
    'feature_flag.key': key,
    'feature_flag.result.variant': variant,
    'feature_flag.provider.name': 'zoo-flags',
  });
  return variant;
}

module.exports = { evaluateFlag, FLAGS };
