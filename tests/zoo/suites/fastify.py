"""Suite `fastify`: Fastify 5 (async handlers, a root `setErrorHandler` per
service, a plugin-scoped one for checkout, a response schema) under the stock
OpenTelemetry Node auto-instrumentation 0.71.0 -- the last bundle that ships
`@opentelemetry/instrumentation-fastify` (off by default there, so the services
list their instrumentations in OTEL_NODE_ENABLED_INSTRUMENTATIONS; later
bundles dropped it for `@fastify/otel`, which needs code to register).
edge -> catalog -> pricing (us-east-1 and eu-west-1), PostgreSQL through `pg`,
Redis through `ioredis`, HTTP through axios. Apps and the bugs in code terms:
tests/zoo/apps/fastify/README.md."""

import shutil
import threading
import time
from collections import OrderedDict
from pathlib import Path

from zoo import Service

FRAMEWORK = "fastify"
APP = Path(__file__).resolve().parent.parent / "apps" / "fastify"

EDGE = "fastify-edge"
CATALOG = "fastify-catalog"
PRICING = "fastify-pricing"
RELEASE = {EDGE: "4.2.0", CATALOG: "2.7.5", PRICING: "1.9.3"}
ENVIRONMENT = "production"
INSTRUMENTATIONS = "http,fastify,pg,ioredis,net,dns,undici,pino"


def setup(env_dir, venv_setup, npm_setup):
    return [npm_setup(env_dir, APP)]


SCHEMA = """
CREATE TABLE tenant_profiles (id text PRIMARY KEY, region text NOT NULL, billing_address jsonb);
INSERT INTO tenant_profiles VALUES
  ('acme',     'us', '{"country": "US", "city": "Denver"}'),
  ('globex',   'us', NULL),
  ('umbrella', 'eu', '{"country": "FR", "city": "Lyon"}'),
  ('hooli',    'eu', '{"country": "DE", "city": "Berlin"}');
CREATE TABLE products (sku text PRIMARY KEY, labels jsonb NOT NULL, price_cents int NOT NULL, currency text NOT NULL,
                       dimensions jsonb, legacy_code text);
INSERT INTO products
SELECT 'SKU-' || i,
       CASE WHEN i = 115 THEN jsonb_build_object('de', 'Produkt ' || i)
            ELSE jsonb_build_object('en', 'Product ' || i) END,
       500 + i * 41, CASE WHEN i = 109 THEN 'EURO' ELSE 'USD' END,
       jsonb_build_array(i % 40, 10, 5), 'lx-' || i
FROM generate_series(100, 120) AS i;
INSERT INTO products VALUES ('SKU-ZETA', '{"en": "Zeta lamp"}', 4900, 'USD', NULL, NULL);
CREATE TABLE bundles (id text PRIMARY KEY, skus text[] NOT NULL);
INSERT INTO bundles VALUES
  ('BND-1',  ARRAY['SKU-100', 'SKU-101', 'SKU-102']),
  ('BND-10', ARRAY['SKU-100', 'SKU-101', 'SKU-102', 'SKU-103', 'SKU-104', 'SKU-105', 'SKU-106', 'SKU-107',
                   'SKU-108', 'SKU-109']);
CREATE TABLE inventory_sync (warehouse text PRIMARY KEY, synced_at timestamptz NOT NULL);
INSERT INTO inventory_sync VALUES ('w1', now()), ('w2', now() - interval '3 hours');
CREATE TABLE stock_us (sku text PRIMARY KEY, qty int NOT NULL);
CREATE TABLE stock_eu (sku text PRIMARY KEY, qty int NOT NULL);
INSERT INTO stock_us VALUES ('SKU-100', 12), ('SKU-101', 0);
INSERT INTO stock_eu VALUES ('SKU-100', 3);
"""

# Redis: the dimensions cache is a hash per sku (field `json`); one legacy key is
# a list.
REDIS_SEED = [
    ["HSET", "dims:SKU-100", "json", '{"sku":"SKU-100","widthCm":20,"heightCm":10,"depthCm":5}'],
    ["RPUSH", "dims:SKU-ZETA", "30", "12", "12"],
]


def prepare_stores(stores):
    stores.psql(SCHEMA)
    stores.redis_commands(REDIS_SEED)


def _node(app_file):
    def cmd(env_dir):
        return ([shutil.which("node") or "node", "--require", "@opentelemetry/auto-instrumentations-node/register",
                 str(APP / app_file)], str(Path(env_dir) / "node"))
    return cmd


def services(env_dir):
    base = {"NODE_PATH": str(Path(env_dir) / "node" / "node_modules"),
            "OTEL_NODE_ENABLED_INSTRUMENTATIONS": INSTRUMENTATIONS}
    return [
        Service("edge", _node("edge/app.js"), EDGE, RELEASE[EDGE], ENVIRONMENT, "us-east-1",
                dict(base, CATALOG_URL="{catalog_url}")),
        Service("catalog", _node("catalog/app.js"), CATALOG, RELEASE[CATALOG], ENVIRONMENT, "us-east-1",
                dict(base, APP_PG_URL="{pg_url}", APP_REDIS_URL="{redis_url}", PRICING_URL="{pricing_url}",
                     PRICING_EU_URL="{pricing_eu_url}", REVIEWS_URL="{dead_url}")),
        Service("pricing", _node("pricing/app.js"), PRICING, RELEASE[PRICING], ENVIRONMENT, "us-east-1",
                dict(base, APP_ROUNDING="half-up:2")),
        # The same release in eu-west-1, deployed without APP_ROUNDING.
        Service("pricing_eu", _node("pricing/app.js"), PRICING, RELEASE[PRICING], ENVIRONMENT, "eu-west-1",
                dict(base)),
    ]


# ------------------------------------------------------------------ labels
def H(tenant):
    return {"x-tenant": tenant}


def cohort(service, tenant, flags=(), region="us-east-1"):
    return {"release": RELEASE[service], "environment": ENVIRONMENT, "region": region, "tenant": tenant,
            "feature_flags": sorted(flags)}


def defect(service, names, bug, coh, why, kind=None):
    lab = {"classification": "deterministic_handler_defect", "origin": {"service": service, "names": names},
           "bug": bug, "cohort": coh, "why": why}
    if kind:
        lab["origin"]["kind"] = kind
    return lab


def dependency(service, kind, names, bug, coh, why, blame=None):
    lab = {"classification": "late_dependency_failure", "origin": {"service": service, "names": names},
           "bug": bug, "cohort": coh, "why": why}
    if kind:
        lab["origin"]["kind"] = kind
    if blame:
        lab["blame"] = blame
    return lab



def rejected(service, kind, names, bug, coh, why):
    """The store answered by rejecting a command wrong for the data (a missing table,
    Redis WRONGTYPE): the same request shape fails the same way and no retry helps, so
    the contract files it as the handler's data-path defect, at the store call."""
    lab = dependency(service, kind, names, bug, coh, why)
    lab["classification"] = "deterministic_handler_defect"
    return lab

def handler_origin(service, route, handler, bug, coh, why):
    """Origin of an exception thrown in an async route handler: instrumentation-fastify's
    `request handler - <handler function name>` (INTERNAL, exception event + status
    ERROR), or the route's SERVER span (status ERROR, no event)."""
    method, path = route.split(" ", 1)
    return defect(service, [f"request handler - {handler}", f"{method} {path}"], bug, coh, why)


# Span names as this SDK version emits them (read from the capture): http CLIENT
# spans are named by the method; pg query spans `pg.query:<first word> <database>`.
HTTP_GET = ["GET"]
PG_SELECT = ["pg.query:SELECT zoo"]


# --------------------------------------------------------------- scenarios
def null_profile_field(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/products/SKU-100", headers=H("acme"))
    rec.call(e, "GET", "/api/products/SKU-101", headers=H("hooli"))
    for _ in range(n):
        rec.call(e, "GET", "/api/products/SKU-100", expect=500, headers=H("globex"), label=handler_origin(
            CATALOG, "GET /products/:sku", "getProduct", "fastify.catalog.billing-address-null",
            cohort(CATALOG, "globex", ["catalog.address-v2=on"]),
            "catalog's getProduct reads profile.billing_address.country; globex has no billing address "
            "(null) -> TypeError; edge wraps the 500 in UpstreamError"))


def region_config(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/quotes/SKU-102", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/api/quotes/SKU-102", expect=500, headers=H("umbrella"), label=handler_origin(
            PRICING, "GET /quote/:sku", "quote", "fastify.pricing.rounding-env-missing",
            cohort(PRICING, "umbrella", ["pricing.rounding-mode=bankers"], region="eu-west-1"),
            "pricing in eu-west-1 is deployed without APP_ROUNDING: process.env.APP_ROUNDING.split throws "
            "TypeError; catalog and edge each wrap the 500 in UpstreamError"))


def responder_throws(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "POST", "/api/checkout/validate", headers=H("acme"),
             body={"lines": [{"sku": "SKU-100", "qty": 1}]})
    for _ in range(n):
        rec.call(e, "POST", "/api/checkout/validate", expect=500, headers=H("hooli"),
                 body={"lines": [{"sku": "SKU-100", "qty": -1}]},
                 label=defect(CATALOG, ["request handler - validateCheckout", "POST /checkout/validate"],
                              "fastify.catalog.checkout-error-handler", cohort(CATALOG, "hooli"),
                              "validateCheckout throws CheckoutRejected (422); the checkout plugin's error "
                              "handler reads error.cause.response.data.message and has no cause: TypeError in the "
                              "error handler, which Fastify passes to the root handler -> 500. The SDK records "
                              "that TypeError (not the CheckoutRejected) on the handler span"))


def response_schema(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/products/SKU-104/summary", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/api/products/SKU-115/summary", expect=500, headers=H("acme"), label={
            "classification": "inconclusive", "origin": None, "bug": None, "cohort": cohort(EDGE, "acme"),
            "why": "SKU-115 has only a German label, so productSummary returns name undefined and the route's "
                   "response schema makes Fastify's serializer throw '\"name\" is required!'; Fastify hands that "
                   "to the error handler without reply.send(err), so instrumentation-fastify ends the handler "
                   "span without it: catalog's spans show no exception and no failed call (the code bug is "
                   "catalog's, the trace cannot tell)"})


def pg_query_timeout(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/reports/slow-movers?days=30", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/api/reports/slow-movers?days=365", expect=500, headers=H("acme"), label=dependency(
            CATALOG, "client", PG_SELECT, "fastify.catalog.pg-query-timeout", cohort(CATALOG, "acme"),
            "the 365-day scan (pg_sleep ~2 s) outlasts the reports pool's client-side query_timeout of 1.5 s: "
            "pg rejects with 'Query read timeout', catalog 500, edge wraps",
            blame={"service": CATALOG, "names": PG_SELECT}))


def connection_refused(cluster, rec, n):
    e = cluster.url("edge")
    for _ in range(n):
        rec.call(e, "GET", "/api/products/SKU-103/reviews", expect=500, headers=H("umbrella"), label=dependency(
            CATALOG, None, HTTP_GET + ["tcp.connect"], "fastify.catalog.reviews-refused", cohort(CATALOG, "umbrella"),
            "catalog's REVIEWS_URL points at a port nobody listens on: axios fails with ECONNREFUSED, "
            "callService wraps it in UpstreamError, catalog 500, edge wraps"))


def pool_exhaustion(cluster, rec, n):
    e = cluster.url("edge")
    for _ in range(n):
        holder = threading.Thread(target=rec.call, args=(e, "GET", "/api/exports/orders"),
                                  kwargs=dict(expect=200, headers=H("acme")))
        holder.start()
        time.sleep(0.15)
        rec.call(e, "GET", "/api/exports/invoices", expect=500, headers=H("hooli"), label=dependency(
            CATALOG, "client", ["pg-pool.connect"], "fastify.catalog.export-pool-timeout", cohort(CATALOG, "hooli"),
            "the exports pool has one connection, held 0.8 s by a concurrent export; this request's "
            "pool.connect() gives up after 300 ms ('timeout exceeded when trying to connect') and no statement "
            "is sent, but instrumentation-pg makes the wait a CLIENT span pg-pool.connect with status ERROR "
            "and an exception: the trace shows a failed, timed-out dependency call that took catalog's whole "
            "budget",
            blame={"service": CATALOG, "names": ["pg-pool.connect"]}))
        holder.join()


def partner_timeout(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/products/SKU-104/fx?currency=USD", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/api/products/SKU-104/fx?currency=EUR", expect=500, headers=H("umbrella"),
                 label=dependency(
                     CATALOG, "client", HTTP_GET, "fastify.catalog.fx-timeout", cohort(CATALOG, "umbrella"),
                     "catalog gives pricing's FX lookup 300 ms (axios timeout); pricing takes 1 s for EUR: "
                     "axios aborts ('timeout of 300ms exceeded'), UpstreamError, catalog 500, edge wraps",
                     # The 300 ms are spent in pricing's handler (its 1 s sleep), which
                     # catalog's axios call waits on: that handler burned the budget.
                     blame={"service": PRICING, "names": ["request handler - fxRate"]}))


def no_exception_500(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/inventory/sync?warehouse=w1", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/api/inventory/sync?warehouse=w2", expect=500, headers=H("globex"), label={
            "classification": "inconclusive", "origin": None, "bug": None, "cohort": cohort(EDGE, "globex"),
            "why": "catalog answers reply.code(500) with a JSON body when the w2 inventory feed is stale (nothing "
                   "thrown, the query succeeded); edge passes status and body through"})


def retries_store(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/stock/SKU-100?warehouse=us", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/api/stock/SKU-100?warehouse=ap", expect=500, headers=H("acme"), label=rejected(
            CATALOG, "client", PG_SELECT, "fastify.catalog.stock-table-missing",
            cohort(CATALOG, "acme", ["edge.retry-budget=3"]),
            "the stock_ap table was never migrated: the SELECT fails with 42P01, catalog answers 503 "
            "(StoreUnavailable); edge retries 3 times then answers 500"))


def recovered_then_defect(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/products/SKU-100/dimensions", headers=H("acme"))
    rec.call(e, "GET", "/api/products/SKU-101/dimensions", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/api/products/SKU-ZETA/dimensions", expect=500, headers=H("acme"),
                 label=handler_origin(
                     CATALOG, "GET /products/:sku/dimensions", "productDimensions", "fastify.catalog.dimensions-null",
                     cohort(CATALOG, "acme", ["catalog.dims-cache=redis"]),
                     "the Redis HGET of dims:SKU-ZETA fails (WRONGTYPE, the key is a list) and is caught; the "
                     "PostgreSQL fallback succeeds; then destructuring the null dimensions throws TypeError"))


def malformed_json(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/quotes/bulk?skus=SKU-100,SKU-101", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/api/quotes/bulk?skus=SKU-100,SKU-110", expect=500, headers=H("hooli"),
                 label=handler_origin(
                     CATALOG, "GET /quotes/bulk", "bulkQuotes", "fastify.catalog.bulk-quotes-undefined",
                     cohort(CATALOG, "hooli"),
                     "pricing answers 200 with JSON cut short at SKU-110 (not in its price list); axios's silent "
                     "JSON parsing hands catalog the raw string, and data.quotes.map throws TypeError in catalog's "
                     "own code: the client span succeeded, the defect is catalog trusting a 200 to be JSON"))


def lost_exception(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/legacy/price-list/SKU-100", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/api/legacy/price-list/SKU-ZETA", expect=500, headers=H("acme"), label={
            "classification": "inconclusive", "origin": None, "bug": None, "cohort": cohort(EDGE, "acme"),
            "why": "catalog's legacyPriceList throws TypeError (legacy_code is null for SKU-ZETA), but its plugin's "
                   "synchronous error handler answers with reply.send(), which ends the instrumentation's spans "
                   "without the error: catalog's spans record no exception and no failed call, so the trace "
                   "cannot show why catalog answered 500 (edge's UpstreamError only restates the status)"})


def n_plus_one_then_defect(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/bundles/BND-1", headers=H("umbrella"))
    for _ in range(n):
        rec.call(e, "GET", "/api/bundles/BND-10", expect=500, headers=H("umbrella"), label=handler_origin(
            CATALOG, "GET /bundles/:id", "getBundle", "fastify.catalog.bundle-currency-invalid",
            cohort(CATALOG, "umbrella"),
            "getBundle loads the bundle's 10 products one query each (N+1, all succeed), then "
            "Intl.NumberFormat throws RangeError on SKU-109's currency 'EURO'"))


SCENARIOS = OrderedDict([
    ("null_profile_field", null_profile_field),
    ("region_config", region_config),
    ("responder_throws", responder_throws),
    ("response_schema", response_schema),
    ("pg_query_timeout", pg_query_timeout),
    ("connection_refused", connection_refused),
    ("pool_exhaustion", pool_exhaustion),
    ("partner_timeout", partner_timeout),
    ("no_exception_500", no_exception_500),
    ("retries_store", retries_store),
    ("recovered_then_defect", recovered_then_defect),
    ("malformed_json", malformed_json),
    ("n_plus_one_then_defect", n_plus_one_then_defect),
    ("lost_exception", lost_exception),
])

# pricing's FX handler keeps running for ~1 s after catalog gave up on it.
SETTLE = 1.5
