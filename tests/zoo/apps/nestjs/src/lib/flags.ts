// The in-house feature-flag client: static rules per tenant. Every evaluation is
// reported the way an OpenFeature tracing hook reports it, as a
// `feature_flag.evaluation` event on the active span.
import { trace } from '@opentelemetry/api';

interface Rule {
  tenants: Record<string, string>;
  fallback: string;
}

const RULES: Record<string, Rule> = {
  'catalog.shipping-v2': { tenants: { initech: 'v2', globex: 'v2' }, fallback: 'v1' },
  'pricing.signed-quotes': { tenants: { umbrella: 'on' }, fallback: 'off' },
  'edge.reviews-widget': { tenants: { globex: 'on' }, fallback: 'off' },
  'edge.checkout-freeze': { tenants: { initech: 'frozen' }, fallback: 'open' },
};

export function evaluateFlag(key: string, tenant: string): string {
  const rule = RULES[key];
  const variant = rule ? rule.tenants[tenant] ?? rule.fallback : 'off';
  trace.getActiveSpan()?.addEvent('feature_flag.evaluation', {
    'feature_flag.key': key,
    'feature_flag.result.variant': variant,
    'feature_flag.variant': variant,
    'feature_flag.provider.name': 'zoo-flags',
  });
  return variant;
}
