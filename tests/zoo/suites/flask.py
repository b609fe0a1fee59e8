"""Suite `flask`: Flask 3.1 apps on Werkzeug's threaded server under the stock
`opentelemetry-instrument` (flask, requests, psycopg2, redis, ... from
opentelemetry-distro / bootstrap, 0.66b1 with SDK 1.45.1). edge -> catalog ->
pricing (two pricing deployments: us-east-1 and eu-west-1), PostgreSQL through
psycopg2, Redis through redis-py, HTTP through requests. edge renders every
error with a catch-all `@app.errorhandler(Exception)`; catalog and pricing use
Flask's documented layout (handlers for their own AppError and HTTPException,
unhandled errors through handle_exception to the InternalServerError handler).
Apps and the bugs in code terms: tests/zoo/apps/flask/README.md."""

import threading
import time
from collections import OrderedDict
from pathlib import Path

from zoo import Service

FRAMEWORK = "flask"
APP = Path(__file__).resolve().parent.parent / "apps" / "flask"

EDGE = "flask-edge"
CATALOG = "flask-catalog"
PRICING = "flask-pricing"
RELEASE = {EDGE: "4.2.0", CATALOG: "2.8.1", PRICING: "1.19.3"}
ENVIRONMENT = "production"
# catalog runs in another region than edge, so the origin's cohort and the entry's differ.
REGION = {EDGE: "us-east-1", CATALOG: "us-west-2", PRICING: "us-east-1"}


def setup(env_dir, venv_setup, npm_setup):
    return [venv_setup(env_dir, APP / "requirements.txt")]


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
       jsonb_build_object('widthCm', i % 40, 'heightCm', 10, 'depthCm', 5),
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

# Redis: stock hashes; a product cache entry stored as a hash where the code
# expects a JSON string (SKU-ZETA), one proper string entry (SKU-100).
REDIS_SEED = [
    ["HSET", "stock:SKU-100", "w1", "12", "w2", "4"],
    ["HSET", "stock:SKU-101", "w1", "0", "w2", "9"],
    ["HSET", "product:SKU-ZETA", "widthCm", "30"],
    ["SET", "product:SKU-100", '{"widthCm": 20, "heightCm": 10, "depthCm": 5}'],
]


def prepare_stores(stores):
    stores.psql(SCHEMA)
    stores.redis_commands(REDIS_SEED)


def _py(app_file):
    def cmd(env_dir):
        venv = Path(env_dir) / "venv" / "bin"
        return [str(venv / "opentelemetry-instrument"), str(venv / "python"), str(APP / app_file)], str(APP)
    return cmd


def services(env_dir):
    base = {"PYTHONPATH": str(APP)}
    return [
        Service("edge", _py("edge/app.py"), EDGE, RELEASE[EDGE], ENVIRONMENT, "us-east-1",
                dict(base, CATALOG_URL="{catalog_url}")),
        Service("catalog", _py("catalog/app.py"), CATALOG, RELEASE[CATALOG], ENVIRONMENT, REGION[CATALOG],
                dict(base, APP_PG_DSN="{pg_url}", APP_REDIS_URL="{redis_url}",
                     APP_STOCK_AP_REDIS_URL="redis://127.0.0.1:{dead_port}/0",
                     PRICING_URL="{pricing_url}", PRICING_EU_URL="{pricing_eu_url}", REVIEWS_URL="{dead_url}")),
        # (env values go through str.format: literal braces are doubled.)
        Service("pricing", _py("pricing/app.py"), PRICING, RELEASE[PRICING], ENVIRONMENT, "us-east-1",
                dict(base, APP_TAX_TABLE='{{"standard": {{"rate": 0.07}}, "reduced": {{"rate": 0.02}}}}')),
        # The same release deployed in eu-west-1 with a tax table lacking `standard`.
        Service("pricing_eu", _py("pricing/app.py"), PRICING, RELEASE[PRICING], ENVIRONMENT, "eu-west-1",
                dict(base, APP_TAX_TABLE='{{"reduced": {{"rate": 0.055}}}}')),
    ]


# ------------------------------------------------------------------ labels
def H(tenant):
    return {"x-tenant": tenant}


def cohort(service, tenant, flags=(), region=None):
    return {"release": RELEASE[service], "environment": ENVIRONMENT, "region": region or REGION[service],
            "tenant": tenant,
            "feature_flags": sorted(flags)}


# Span names as this SDK version emits them (read from the capture).
PG_SELECT = ["SELECT"]       # opentelemetry-instrumentation-psycopg2 (dbapi): the statement's first word
PG_WITH = ["WITH"]
REQUESTS = ["GET"]           # opentelemetry-instrumentation-requests: the method


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


def server_origin(service, route, bug, coh, why):
    """Origin of an exception that Flask left unhandled: the flask instrumentation
    has only the SERVER span `METHOD /rule` (Flask's rule syntax, `<sku>`); its
    teardown_request records the exception there (event + status ERROR). There
    are no handler spans in Flask."""
    return defect(service, [route], bug, coh, why, kind="server")



def pool_dependency(lab):
    """The contract (§3 Classification): a connection-pool timeout or exhaustion raised in
    the service's own code, with no span for the call, is a late dependency failure; the
    origin stays the span that recorded it."""
    return dict(lab, classification="late_dependency_failure")

def inconclusive(why, tenant, flags=(), service=EDGE):
    return {"classification": "inconclusive", "origin": None, "bug": None, "cohort": cohort(service, tenant, flags),
            "why": why}


# --------------------------------------------------------------- scenarios
def null_tenant_field(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/products/SKU-100", headers=H("acme"))
    rec.call(e, "GET", "/api/products/SKU-101", headers=H("umbrella"))
    for _ in range(n):
        rec.call(e, "GET", "/api/products/SKU-100", expect=500, headers=H("initech"), label=server_origin(
            CATALOG, "GET /products/<sku>", "flask.catalog.shipping-null",
            cohort(CATALOG, "initech", ["catalog.shipping-v2=v1"]),
            "catalog's GET /products/<sku> subscripts tenant settings['shipping']['zone']; shipping is null for "
            "initech (TypeError), Flask's 500 path renders it; edge wraps the 500 in UpstreamError"))


def region_config(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/quotes/SKU-102", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/api/quotes/SKU-102", expect=500, headers=H("umbrella"), label=server_origin(
            PRICING, "GET /quote/<sku>", "flask.pricing.tax-standard-missing",
            cohort(PRICING, "umbrella", ["pricing.signed-quotes=on"], region="eu-west-1"),
            "pricing in eu-west-1 has no `standard` entry in APP_TAX_TABLE: TAX_TABLE['standard'] raises "
            "KeyError; catalog raises UpstreamError (recorded on its SERVER span) and edge wraps again"))


def responder_throws(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "POST", "/api/cart/validate", headers=H("acme"),
             body={"items": [{"sku": "SKU-100", "qty": 1}, {"sku": "SKU-101", "qty": 2}]})
    for _ in range(n):
        rec.call(e, "POST", "/api/cart/validate", expect=500, headers=H("hooli"),
                 body={"items": [{"sku": "SKU-100", "qty": 0}, {"sku": "SKU-101", "qty": 1}]},
                 label=server_origin(
                     CATALOG, "POST /cart/validate", "flask.catalog.responder-decimal",
                     cohort(CATALOG, "hooli"),
                     "catalog's AppError responder json.dumps a ValidationError whose details carry the list "
                     "price as Decimal: TypeError 'Object of type Decimal is not JSON serializable' in the "
                     "responder; Flask treats it as unhandled (the SERVER span records the TypeError, its "
                     "context is the ValidationError) and the intended 422 becomes a 500"))


def pg_statement_timeout(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/reports/slow-movers?days=30", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/api/reports/slow-movers?days=365", expect=500, headers=H("acme"), label=dependency(
            CATALOG, "client", PG_WITH, "flask.catalog.pg-statement-timeout", cohort(CATALOG, "acme"),
            "the 365-day slow-movers scan (pg_sleep ~2 s) exceeds the pool's statement_timeout of 1.5 s: "
            "PostgreSQL cancels it (QueryCanceled 57014), catalog answers 500, edge wraps it",
            blame={"service": CATALOG, "names": PG_WITH}))


def connection_refused(cluster, rec, n):
    e = cluster.url("edge")
    for _ in range(n):
        rec.call(e, "GET", "/api/products/SKU-103/reviews", expect=500, headers=H("umbrella"), label=dependency(
            CATALOG, "client", REQUESTS, "flask.catalog.reviews-refused", cohort(CATALOG, "umbrella"),
            "catalog's REVIEWS_URL points at a port nobody listens on: requests raises ConnectionError "
            "(Connection refused), request_json wraps it in UpstreamError, catalog 500, edge wraps"))


def pool_exhaustion(cluster, rec, n):
    e = cluster.url("edge")
    for _ in range(n):
        holder = threading.Thread(target=rec.call, args=(e, "GET", "/api/exports/orders"),
                                  kwargs=dict(expect=200, headers=H("acme")))
        holder.start()
        time.sleep(0.2)
        rec.call(e, "GET", "/api/exports/invoices", expect=500, headers=H("hooli"), label=pool_dependency(server_origin(
            CATALOG, "GET /exports/<kind>", "flask.catalog.export-pool-exhausted", cohort(CATALOG, "hooli"),
            "the exports pool (psycopg2 ThreadedConnectionPool, maxconn 1) is held 0.8 s by a concurrent "
            "export; getconn() raises PoolError 'connection pool exhausted' at once, without waiting and "
            "without any statement sent: the trace has no pg span for this request, only the PoolError that "
            "Flask left unhandled on catalog's SERVER span, so what it can show is an exception raised in "
            "catalog's own process (its pool sized for one), not a failed dependency call")))
        holder.join()


def partner_timeout(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/products/SKU-104/fx?currency=USD", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/api/products/SKU-104/fx?currency=EUR", expect=500, headers=H("umbrella"),
                 label=dependency(
                     CATALOG, "client", REQUESTS, "flask.catalog.fx-timeout", cohort(CATALOG, "umbrella"),
                     "catalog gives pricing's FX lookup 300 ms (requests timeout=0.3); pricing takes 1 s for EUR: "
                     "ReadTimeout on the client span, UpstreamError, catalog 500, edge wraps",
                     # The budget is burned in pricing's handler (its 1 s sleep); Flask has no
                     # handler span, so that is pricing's SERVER span.
                     blame={"service": PRICING, "names": ["GET /rates/fx"]}))


def no_exception_500(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/inventory/sync?warehouse=w1", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/api/inventory/sync?warehouse=w2", expect=500, headers=H("initech"), label=inconclusive(
            "catalog answers a bare 500 JSON body when the w2 inventory feed is stale (nothing raised, the query "
            "succeeded); edge passes the status through", "initech"))


def retries_store(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/stock/SKU-100?warehouse=us", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/api/stock/SKU-100?warehouse=ap", expect=500, headers=H("acme"), label=dependency(
            CATALOG, "client", ["HGETALL"], "flask.catalog.stock-ap-refused",
            cohort(CATALOG, "acme", ["edge.stock-retries=3"]),
            "the ap-south stock Redis replica is down (connection refused): HGETALL raises ConnectionError, "
            "catalog answers 503 (ServiceUnavailable); edge retries 3 times (flag edge.stock-retries=3 on "
            "edge) then answers 500"))


def recovered_then_defect(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/products/SKU-100/dimensions", headers=H("acme"))
    rec.call(e, "GET", "/api/products/SKU-101/dimensions", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/api/products/SKU-ZETA/dimensions", expect=500, headers=H("acme"),
                 label=server_origin(
                     CATALOG, "GET /products/<sku>/dimensions", "flask.catalog.dimensions-null",
                     cohort(CATALOG, "acme", ["catalog.dimensions-cache=redis"]),
                     "the Redis GET of product:SKU-ZETA fails (WRONGTYPE, the key is a hash) and is caught; the "
                     "PostgreSQL fallback succeeds; then dims['widthCm'] of the NULL column raises TypeError"))


def malformed_json(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/quotes/bulk?skus=SKU-100,SKU-101", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/api/quotes/bulk?skus=SKU-100,SKU-110", expect=500, headers=H("hooli"),
                 label=server_origin(
                     CATALOG, "GET /quotes/bulk", "flask.catalog.bulk-json-decode",
                     cohort(CATALOG, "hooli"),
                     "pricing answers 200 with hand-built JSON that has an empty value for SKU-110 (not in its "
                     "price list); the client span succeeded, the JSONDecodeError is raised by resp.json() in "
                     "catalog's own request_json, so the defect is catalog's (it trusts a 200 to be JSON)"))


def n_plus_one_then_defect(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/bundles/BND-1", headers=H("umbrella"))
    for _ in range(n):
        rec.call(e, "GET", "/api/bundles/BND-10", expect=500, headers=H("umbrella"), label=server_origin(
            CATALOG, "GET /bundles/<bundle_id>", "flask.catalog.bundle-pricing-null", cohort(CATALOG, "umbrella"),
            "catalog loads the bundle's 10 products one query each (N+1, all succeed), then "
            "p['pricing']['listCents'] raises TypeError on SKU-109 whose pricing column is NULL"))


def swallowed_defect(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/orders/O-1/summary", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/api/orders/O-2/summary", expect=500, headers=H("hooli"), label=inconclusive(
            "edge's own order summary looks up the loyalty tier 'platinum' (flag edge.loyalty-discounts=tiered "
            "for hooli) in a table without it: KeyError, but edge's catch-all @app.errorhandler(Exception) "
            "handles it, so no span records any exception (the SERVER span only has status 500) and catalog's "
            "call succeeded: the trace cannot show the cause", "hooli",
            ["edge.loyalty-discounts=tiered", "catalog.shipping-v2=v2"]))


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
    ("swallowed_defect", swallowed_defect),
])

# pricing's FX handler keeps running for ~1 s after catalog gave up on it.
SETTLE = 1.5
