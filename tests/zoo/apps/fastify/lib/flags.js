'use strict';
// A tiny in-house feature-flag client. Each evaluation is reported the way an
// OpenFeature tracing hook reports it: a `feature_flag.evaluation` event on the
// active span.
const { trace } = require('@opentelemetry/api');

const FLAGS = {
  'catalog.address-v2': { tenants: { globex: 'on' }, fallback: 'off' },
  'catalog.dims-cache': { tenants: { acme: 'redis', hooli: 'redis' }, fallback: 'off' },
  'pricing.rounding-mode': { tenants: { umbrella: 'bankers' }, fallback: 'half-up' },
  'edge.retry-budget': { tenants: {}, fallback: '3' },
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

module.exports = { evaluateFlag };
