"""Suite `express`: Express 5 (async handlers, `next(err)` by the router, one
error-responder middleware per service) under the stock OpenTelemetry Node
auto-instrumentation. edge -> catalog -> pricing (two pricing deployments:
us-east-1 and eu-west-1), PostgreSQL through `pg`, Redis through `ioredis`,
HTTP through fetch (undici). Apps and the bugs in code terms:
tests/zoo/apps/express/README.md."""

import shutil
import threading
import time
from collections import OrderedDict
from pathlib import Path

from zoo import Service

FRAMEWORK = "express"
APP = Path(__file__).resolve().parent.parent / "apps" / "express"

EDGE = "express-edge"
CATALOG = "express-catalog"
PRICING = "express-pricing"
RELEASE = {EDGE: "2.14.0", CATALOG: "1.31.2", PRICING: "3.4.0"}
ENVIRONMENT = "production"


def setup(env_dir, venv_setup, npm_setup):
    return [npm_setup(env_dir, APP)]


SCHEMA = """
CREATE TABLE tenants (id text PRIMARY KEY, region text NOT NULL, country text NOT NULL, settings jsonb NOT NULL);
INSERT INTO tenants VALUES
  ('acme',     'us', 'US', '{"shipping": {"zone": "US-EAST", "carrier": "ups"}}'),
  ('initech',  'us', 'US', '{"shipping": null}'),
  ('umbrella', 'eu', 'FR', '{"shipping": {"zone": "EU-WEST", "carrier": "dhl"}}'),
  ('hooli',    'eu', 'DE', '{"shipping": {"zone": "EU-CENTRAL", "carrier": "dhl"}}');
CREATE TABLE products (sku text PRIMARY KEY, name text NOT NULL, price_cents int NOT NULL, weight_g int,
                       dimensions jsonb, pricing jsonb);
INSERT INTO products
SELECT 'SKU-' || i, 'Product ' || i, 500 + i * 37, 100 + i,
       CASE WHEN i = 112 THEN NULL ELSE jsonb_build_object('widthCm', i % 40, 'heightCm', 10, 'depthCm', 5) END,
       CASE WHEN i = 109 THEN NULL ELSE jsonb_build_object('listCents', 500 + i * 37) END
FROM generate_series(100, 120) AS i;
INSERT INTO products VALUES ('SKU-ZETA', 'Zeta lamp', 4900, 800, NULL, '{"listCents": 4900}');
CREATE TABLE bundles (id text PRIMARY KEY, skus text[] NOT NULL);
INSERT INTO bundles VALUES
  ('BND-1',  ARRAY['SKU-100', 'SKU-101', 'SKU-102']),
  ('BND-10', ARRAY['SKU-100', 'SKU-101', 'SKU-102', 'SKU-103', 'SKU-104', 'SKU-105', 'SKU-106', 'SKU-107',
                   'SKU-108', 'SKU-109']);
CREATE TABLE inventory_sync (warehouse text PRIMARY KEY, synced_at timestamptz NOT NULL);
INSERT INTO inventory_sync VALUES ('w1', now()), ('w2', now() - interval '3 hours');
"""

# Redis: stock hashes, one legacy string where a hash is expected, and a product
# cache entry stored as a hash where the code expects a string.
REDIS_SEED = [
    ["HSET", "stock:SKU-100", "w1", "12", "w2", "4"],
    ["HSET", "stock:SKU-101", "w1", "0", "w2", "9"],
    ["SET", "stock:SKU-105", "17"],
    ["HSET", "product:SKU-ZETA", "widthCm", "30"],
    ["SET", "product:SKU-100", '{"sku":"SKU-100","widthCm":20,"heightCm":10,"depthCm":5}'],
]


def prepare_stores(stores):
    stores.psql(SCHEMA)
    stores.redis_commands(REDIS_SEED)


def _node(app_file):
    def cmd(env_dir):
        node_env = Path(env_dir) / "node"
        return ([shutil.which("node") or "node", "--require", "@opentelemetry/auto-instrumentations-node/register",
                 str(APP / app_file)], str(node_env))
    return cmd


def services(env_dir):
    node_path = {"NODE_PATH": str(Path(env_dir) / "node" / "node_modules")}
    return [
        Service("edge", _node("edge/app.js"), EDGE, RELEASE[EDGE], ENVIRONMENT, "us-east-1",
                dict(node_path, CATALOG_URL="{catalog_url}")),
        Service("catalog", _node("catalog/app.js"), CATALOG, RELEASE[CATALOG], ENVIRONMENT, "us-east-1",
                dict(node_path, APP_PG_URL="{pg_url}", APP_REDIS_URL="{redis_url}", PRICING_URL="{pricing_url}",
                     PRICING_EU_URL="{pricing_eu_url}", REVIEWS_URL="{dead_url}")),
        Service("pricing", _node("pricing/app.js"), PRICING, RELEASE[PRICING], ENVIRONMENT, "us-east-1",
                dict(node_path, APP_TAX_TABLE='{{"standard": {{"rate": 0.07}}, "reduced": {{"rate": 0.02}}}}')),
        # (env values go through str.format: literal braces are doubled.)
    # The same release deployed in eu-west-1 with a tax table lacking `standard`.
        Service("pricing_eu", _node("pricing/app.js"), PRICING, RELEASE[PRICING], ENVIRONMENT, "eu-west-1",
                dict(node_path, APP_TAX_TABLE='{{"reduced": {{"rate": 0.055}}}}')),
    ]


# ------------------------------------------------------------------ labels
def H(tenant):
    return {"x-tenant": tenant}


def cohort(service, tenant, flags=(), region="us-east-1"):
    return {"release": RELEASE[service], "environment": ENVIRONMENT, "region": region, "tenant": tenant,
            "feature_flags": sorted(flags)}


# Span names as this SDK version emits them (read from the capture): pg names a
# query span `pg.query:<first word of the statement> <database>`.
PG_REPORT = ["pg.query:WITH zoo"]
UNDICI = ["GET"]


def defect(service, names, bug, coh, why, kind=None):
    return {"classification": "deterministic_handler_defect",
            "origin": {"service": service, "kind": kind or "internal", "names": names},
            "bug": bug, "cohort": coh, "why": why}


def dependency(service, kind, names, bug, coh, why, blame=None):
    lab = {"classification": "late_dependency_failure", "origin": {"service": service, "kind": kind, "names": names},
           "bug": bug, "cohort": coh, "why": why}
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

def handler_origin(service, route, bug, coh, why):
    """Origin of an exception thrown in an async handler. The SDK records it on three
    INTERNAL spans: instrumentation-express's `request handler` (status ERROR), and
    instrumentation-router's `request handler - <route>` below it and its route
    layer `middleware - patched` above it (exception events, status unset); the
    SERVER span of the route (status ERROR, no event) is acceptable too."""
    method, path = route.split(" ", 1)
    lab = defect(service, ["request handler", f"request handler - {path}", "middleware - patched",
                           f"{method} {path}"], bug, coh, why)
    lab["origin"].pop("kind")  # handler spans are INTERNAL, the SERVER span is server: both acceptable
    return lab


# --------------------------------------------------------------- scenarios
def null_tenant_field(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/products/SKU-100", headers=H("acme"))
    rec.call(e, "GET", "/api/products/SKU-101", headers=H("umbrella"))
    for _ in range(n):
        rec.call(e, "GET", "/api/products/SKU-100", expect=500, headers=H("initech"), label=handler_origin(
            CATALOG, "GET /products/:sku", "express.catalog.shipping-null",
            cohort(CATALOG, "initech", ["catalog.shipping-v2=v1"]),
            "catalog's GET /products/:sku reads tenant.settings.shipping.zone; shipping is null for initech "
            "(TypeError), edge wraps the 500 in UpstreamError"))


def region_config(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/quotes/SKU-102", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/api/quotes/SKU-102", expect=500, headers=H("umbrella"), label=handler_origin(
            PRICING, "GET /quote/:sku", "express.pricing.tax-standard-missing",
            cohort(PRICING, "umbrella", ["pricing.signed-quotes=on"], region="eu-west-1"),
            "pricing in eu-west-1 has no `standard` entry in APP_TAX_TABLE: TAX_TABLE.standard.rate throws "
            "TypeError; catalog and edge each wrap the 500 in UpstreamError"))


def responder_throws(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "POST", "/api/cart/validate", headers=H("acme"),
             body={"items": [{"sku": "SKU-100", "qty": 1}, {"sku": "SKU-101", "qty": 2}]})
    for _ in range(n):
        rec.call(e, "POST", "/api/cart/validate", expect=500, headers=H("hooli"),
                 body={"items": [{"sku": "SKU-100", "qty": 0}, {"sku": "SKU-101", "qty": 1}]},
                 label=defect(CATALOG, ["middleware - errorResponder"], "express.catalog.responder-circular",
                              cohort(CATALOG, "hooli"),
                              "catalog's errorResponder res.json()s a ValidationError whose details hold cart "
                              "lines that point back at the cart: TypeError 'Converting circular structure to "
                              "JSON' in the responder turns the intended 422 into a 500 (the ValidationError "
                              "itself is not the fault)"))


def pg_statement_timeout(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/reports/slow-movers?days=30", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/api/reports/slow-movers?days=365", expect=500, headers=H("acme"), label=dependency(
            CATALOG, "client", PG_REPORT, "express.catalog.pg-statement-timeout", cohort(CATALOG, "acme"),
            "the 365-day slow-movers scan (pg_sleep ~2 s) exceeds the pool's statement_timeout of 1.5 s: "
            "PostgreSQL cancels it (57014), catalog answers 500, edge wraps it",
            blame={"service": CATALOG, "names": PG_REPORT}))


def connection_refused(cluster, rec, n):
    e = cluster.url("edge")
    # The undici CLIENT span `GET` (exception ECONNREFUSED) or the net
    # instrumentation's INTERNAL `tcp.connect` below it (status ERROR, no event).
    refused = dependency(
        CATALOG, "client", UNDICI + ["tcp.connect"], "express.catalog.reviews-refused", cohort(CATALOG, "umbrella"),
        "catalog's REVIEWS_URL points at a port nobody listens on: fetch fails with ECONNREFUSED, "
        "requestJson wraps it in UpstreamError, catalog 500, edge wraps")
    refused["origin"].pop("kind")
    for _ in range(n):
        rec.call(e, "GET", "/api/products/SKU-103/reviews", expect=500, headers=H("umbrella"), label=refused)


def pool_exhaustion(cluster, rec, n):
    e = cluster.url("edge")
    for _ in range(n):
        holder = threading.Thread(target=rec.call, args=(e, "GET", "/api/exports/orders"),
                                  kwargs=dict(expect=200, headers=H("acme")))
        holder.start()
        time.sleep(0.15)
        rec.call(e, "GET", "/api/exports/invoices", expect=500, headers=H("hooli"), label=dependency(
            CATALOG, "client", ["pg-pool.connect"], "express.catalog.export-pool-timeout",
            cohort(CATALOG, "hooli"),
            "the exports pool has one connection, held 0.8 s by a concurrent export; this request's "
            "pool.connect() gives up after 300 ms ('timeout exceeded when trying to connect') and no statement "
            "is sent, but instrumentation-pg makes the wait a CLIENT span pg-pool.connect with status ERROR "
            "and an exception: the trace shows a failed, timed-out dependency call, which took the whole "
            "budget of catalog's request",
            blame={"service": CATALOG, "names": ["pg-pool.connect"]}))
        holder.join()


def partner_timeout(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/products/SKU-104/fx?currency=USD", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/api/products/SKU-104/fx?currency=EUR", expect=500, headers=H("umbrella"),
                 label=dependency(
                     CATALOG, "client", UNDICI, "express.catalog.fx-timeout", cohort(CATALOG, "umbrella"),
                     "catalog gives pricing's FX lookup 300 ms (AbortSignal.timeout); pricing takes 1 s for "
                     "EUR: the fetch aborts with TimeoutError, UpstreamError, catalog 500, edge wraps",
                     # The 300 ms are spent in pricing's handler (its 1 s setTimeout), which
                     # catalog's fetch waits on: that handler burned the budget.
                     blame={"service": PRICING, "names": ["request handler - /rates/fx"]}))


def no_exception_500(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/inventory/sync?warehouse=w1", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/api/inventory/sync?warehouse=w2", expect=500, headers=H("initech"), label={
            "classification": "inconclusive", "origin": None, "bug": None,
            "cohort": cohort(EDGE, "initech"),
            "why": "catalog answers a bare 500 JSON body when the w2 inventory feed is stale (nothing thrown, the "
                   "query succeeded); edge passes the status through"})


def retries_store(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/stock/SKU-100", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/api/stock/SKU-105", expect=500, headers=H("acme"), label=rejected(
            CATALOG, "client", ["hgetall"], "express.catalog.stock-wrongtype",
            cohort(CATALOG, "acme", ["edge.stock-retries=3"]),
            "stock:SKU-105 is a string, HGETALL fails with WRONGTYPE, catalog answers 503 "
            "(ServiceUnavailableError); edge retries 3 times then answers 500"))


def recovered_then_defect(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/products/SKU-100/dimensions", headers=H("acme"))
    rec.call(e, "GET", "/api/products/SKU-101/dimensions", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/api/products/SKU-ZETA/dimensions", expect=500, headers=H("acme"),
                 label=handler_origin(
                     CATALOG, "GET /products/:sku/dimensions", "express.catalog.dimensions-null",
                     cohort(CATALOG, "acme", ["catalog.dimensions-cache=redis"]),
                     "the Redis GET of product:SKU-ZETA fails (WRONGTYPE, the key is a hash) and is caught; the "
                     "PostgreSQL fallback succeeds; then dimensions.widthCm of the null column throws TypeError"))


def malformed_json(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/quotes/bulk?skus=SKU-100,SKU-101", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/api/quotes/bulk?skus=SKU-100,SKU-110", expect=500, headers=H("hooli"),
                 label=handler_origin(
                     CATALOG, "GET /quotes/bulk", "express.catalog.bulk-json-syntax",
                     cohort(CATALOG, "hooli"),
                     "pricing answers 200 with hand-built JSON holding NaN for SKU-110 (not in its price list); "
                     "the client span succeeded, the SyntaxError is thrown by res.json() in catalog's own code, "
                     "so the defect is catalog's (it trusts a 200 to be JSON)"))


def n_plus_one_then_defect(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/bundles/BND-1", headers=H("umbrella"))
    for _ in range(n):
        rec.call(e, "GET", "/api/bundles/BND-10", expect=500, headers=H("umbrella"), label=handler_origin(
            CATALOG, "GET /bundles/:id", "express.catalog.bundle-pricing-null", cohort(CATALOG, "umbrella"),
            "catalog loads the bundle's 10 products one query each (N+1, all succeed), then "
            "p.pricing.listCents throws TypeError on SKU-109 whose pricing column is null"))


SCENARIOS = OrderedDict([
    ("null_tenant_field", null_tenant_field),
    ("region_config", region_config),
    ("responder_throws", responder_throws),
    ("pg_statement_timeout", pg_statement_timeout),
    ("connection_refused", connection_refused),
    ("pool_exhaustion", pool_exhaustion),
    ("partner_timeout", partner_timeout),
    ("no_exception_500", no_exception_500),
    ("retries_store", retries_store),
    ("recovered_then_defect", recovered_then_defect),
    ("malformed_json", malformed_json),
    ("n_plus_one_then_defect", n_plus_one_then_defect),
])

# pricing's FX handler keeps running for ~1 s after catalog gave up on it.
SETTLE = 1.5
