"""Suite `django`: Django 5.2 (one ErrorMiddleware per service whose
`process_exception` records the exception on the SERVER span, logs and answers a
JSON 500; `handler500` for errors escaping it) served by gunicorn (gthread) under
`opentelemetry-instrument` (instrumentation-django, -psycopg, -redis, -requests).
edge -> catalog -> pricing (two pricing deployments: us-east-1 and eu-west-1),
PostgreSQL through the Django ORM on psycopg 3, Redis through redis-py, HTTP
through requests. Apps and the bugs in code terms: tests/zoo/apps/django/README.md."""

import threading
import time
from collections import OrderedDict
from pathlib import Path

from zoo import Service

FRAMEWORK = "django"
APP = Path(__file__).resolve().parent.parent / "apps" / "django"

EDGE = "django-edge"
CATALOG = "django-catalog"
PRICING = "django-pricing"
RELEASE = {EDGE: "4.2.1", CATALOG: "2.8.0", PRICING: "1.17.3"}
# catalog runs in another region than edge, so the origin's cohort differs from the entry's.
REGION = {EDGE: "us-east-1", CATALOG: "us-west-2", PRICING: "us-east-1"}
ENVIRONMENT = "production"


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

# Redis: stock hashes of warehouse w1, a product cache entry stored as a hash where
# the code expects a JSON string, and one cached as the string it should be.
REDIS_SEED = [
    ["HSET", "stock:SKU-100", "w1", "12", "w2", "4"],
    ["HSET", "stock:SKU-101", "w1", "0", "w2", "9"],
    ["HSET", "product:SKU-ZETA", "widthCm", "30"],
    ["SET", "product:SKU-100", '{"sku":"SKU-100","widthCm":20,"heightCm":10,"depthCm":5}'],
]


def prepare_stores(stores):
    stores.psql(SCHEMA)
    stores.redis_commands(REDIS_SEED)


def _gunicorn(env_dir):
    venv = Path(env_dir) / "venv" / "bin"
    return ([str(venv / "opentelemetry-instrument"), str(venv / "gunicorn"), "-c", str(APP / "gunicorn.conf.py"),
             "zooapp.wsgi:application"], str(APP))


def _env(settings, **extra):
    return dict({"DJANGO_SETTINGS_MODULE": settings, "PYTHONPATH": str(APP),
                 "PYTHONDONTWRITEBYTECODE": "1"}, **extra)


def services(env_dir):
    return [
        Service("edge", _gunicorn, EDGE, RELEASE[EDGE], ENVIRONMENT, REGION[EDGE],
                _env("edge.settings", CATALOG_URL="{catalog_url}")),
        Service("catalog", _gunicorn, CATALOG, RELEASE[CATALOG], ENVIRONMENT, REGION[CATALOG],
                _env("catalog.settings", APP_PG_HOST="{pg_host}", APP_PG_PORT="{pg_port}",
                     APP_REDIS_URL="{redis_url}", APP_STOCK_W2_REDIS_URL="redis://127.0.0.1:{dead_port}/0",
                     PRICING_URL="{pricing_url}", PRICING_EU_URL="{pricing_eu_url}", REVIEWS_URL="{dead_url}")),
        # (env values go through str.format: literal braces are doubled.)
        Service("pricing", _gunicorn, PRICING, RELEASE[PRICING], ENVIRONMENT, REGION[PRICING],
                _env("pricing.settings",
                     APP_TAX_TABLE='{{"standard": {{"rate": 0.07}}, "reduced": {{"rate": 0.02}}}}')),
        # The same release deployed in eu-west-1 with a tax table lacking `standard`.
        Service("pricing_eu", _gunicorn, PRICING, RELEASE[PRICING], ENVIRONMENT, "eu-west-1",
                _env("pricing.settings", APP_TAX_TABLE='{{"reduced": {{"rate": 0.055}}}}')),
    ]


# ------------------------------------------------------------------ labels
def H(tenant):
    return {"x-tenant": tenant}


def cohort(service, tenant, flags=(), region=None):
    return {"release": RELEASE[service], "environment": ENVIRONMENT, "region": region or REGION[service],
            "tenant": tenant,
            "feature_flags": sorted(flags)}


def defect(service, names, bug, coh, why, kind="server"):
    return {"classification": "deterministic_handler_defect",
            "origin": {"service": service, "kind": kind, "names": names},
            "bug": bug, "cohort": coh, "why": why}


def dependency(service, kind, names, bug, coh, why, blame=None):
    lab = {"classification": "late_dependency_failure", "origin": {"service": service, "kind": kind, "names": names},
           "bug": bug, "cohort": coh, "why": why}
    if blame:
        lab["blame"] = blame
    return lab


def handler_origin(service, route, bug, coh, why):
    """Django has no handler span: the view runs inside the SERVER span
    `<METHOD> <route pattern>` of instrumentation-django, and the ErrorMiddleware
    (or handler500) records the exception there."""
    return defect(service, [route], bug, coh, why)


# Span names as this SDK version emits them (read from the capture).
PG_SELECT = ["SELECT"]
REQUESTS = ["GET"]


# --------------------------------------------------------------- scenarios
def null_tenant_field(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/products/SKU-100", headers=H("acme"))
    rec.call(e, "GET", "/api/products/SKU-101", headers=H("umbrella"))
    for _ in range(n):
        rec.call(e, "GET", "/api/products/SKU-100", expect=500, headers=H("initech"), label=handler_origin(
            CATALOG, "GET products/<str:sku>", "django.catalog.shipping-null",
            cohort(CATALOG, "initech", ["catalog.shipping-v2=v1"]),
            "catalog's product view reads tenant.settings.get('shipping').get('zone'); shipping is null for "
            "initech (AttributeError), edge wraps the 500 in UpstreamError"))


def region_config(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/quotes/SKU-102", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/api/quotes/SKU-102", expect=500, headers=H("umbrella"), label=handler_origin(
            PRICING, "GET quote/<str:sku>", "django.pricing.tax-standard-missing",
            cohort(PRICING, "umbrella", ["pricing.signed-quotes=on"], region="eu-west-1"),
            "pricing in eu-west-1 has no `standard` entry in APP_TAX_TABLE: TAX_TABLE.get('standard')['rate'] "
            "raises TypeError; catalog and edge each wrap the 500 in UpstreamError"))


def responder_throws(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "POST", "/api/cart/validate", headers=H("acme"),
             body={"items": [{"sku": "SKU-100", "qty": 1}, {"sku": "SKU-101", "qty": 2}]})
    for _ in range(n):
        rec.call(e, "POST", "/api/cart/validate", expect=500, headers=H("hooli"),
                 body={"items": [{"sku": "SKU-100", "qty": 0}, {"sku": "SKU-101", "qty": 1}]},
                 label=handler_origin(
                     CATALOG, "POST cart/validate", "django.catalog.responder-circular", cohort(CATALOG, "hooli"),
                     "catalog's ErrorMiddleware.process_exception json.dumps a ValidationError (422) whose details "
                     "hold cart lines that point back at the cart: ValueError 'Circular reference detected' in "
                     "the responder; Django's handler500 records it and answers 500 (the ValidationError itself "
                     "is not the fault and, being a 4xx, is not recorded)"))


def pg_statement_timeout(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/reports/slow-movers?days=30", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/api/reports/slow-movers?days=365", expect=500, headers=H("acme"), label=dependency(
            CATALOG, "client", PG_SELECT, "django.catalog.pg-statement-timeout", cohort(CATALOG, "acme"),
            "the 365-day slow-movers scan (pg_sleep ~2 s) exceeds the connection's statement_timeout of 1.5 s: "
            "PostgreSQL cancels it (QueryCanceled 57014, Django OperationalError), catalog answers 500, edge wraps",
            blame={"service": CATALOG, "names": PG_SELECT}))


def connection_refused(cluster, rec, n):
    e = cluster.url("edge")
    for _ in range(n):
        rec.call(e, "GET", "/api/products/SKU-103/reviews", expect=500, headers=H("umbrella"), label=dependency(
            CATALOG, "client", REQUESTS, "django.catalog.reviews-refused", cohort(CATALOG, "umbrella"),
            "catalog's REVIEWS_URL points at a port nobody listens on: requests raises ConnectionError "
            "(ECONNREFUSED), request_json raises UpstreamError from it, catalog 500, edge wraps"))


def pool_exhaustion(cluster, rec, n):
    e = cluster.url("edge")
    for _ in range(n):
        holder = threading.Thread(target=rec.call, args=(e, "GET", "/api/exports/orders"),
                                  kwargs=dict(expect=200, headers=H("acme")))
        holder.start()
        time.sleep(0.15)
        rec.call(e, "GET", "/api/exports/invoices", expect=500, headers=H("hooli"), label=POOL_LABEL)
        holder.join()


# The waiting request sends no statement and instrumentation-psycopg makes no span
# for a pool checkout (psycopg_pool's getconn): the trace holds no failed pg span.
# What it does show is catalog's SERVER span with the exception the ErrorMiddleware
# recorded: django.db.utils.OperationalError "couldn't get a connection after 0.30
# sec", raised from psycopg_pool.PoolTimeout (in the stacktrace), after the whole
# 300 ms was spent waiting. A database-layer timeout, not the view's own logic: a
# late dependency failure whose only evidence is that SERVER span.
POOL_LABEL = dependency(
    CATALOG, "server", ["GET exports/<str:kind>"], "django.catalog.export-pool-timeout", cohort(CATALOG, "hooli"),
    "the exports database is a psycopg pool of one connection, held 0.8 s by a concurrent export; this "
    "request's checkout gives up after 300 ms (PoolTimeout -> Django OperationalError) before any statement is "
    "sent, so there is no pg span: the dependency timeout is visible only as the exception recorded on "
    "catalog's SERVER span")


def partner_timeout(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/products/SKU-104/fx?currency=USD", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/api/products/SKU-104/fx?currency=EUR", expect=500, headers=H("umbrella"),
                 label=dependency(
                     CATALOG, "client", REQUESTS, "django.catalog.fx-timeout", cohort(CATALOG, "umbrella"),
                     "catalog gives pricing's FX lookup 300 ms (requests timeout=0.3); pricing takes 1 s for EUR: "
                     "ReadTimeout, UpstreamError from it, catalog 500, edge wraps",
                     # The 300 ms are spent in pricing's view (its 1 s sleep), which catalog's
                     # request waits on: that handler burned the budget.
                     blame={"service": PRICING, "names": ["GET rates/fx"]}))


def no_exception_500(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/inventory/sync?warehouse=w1", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/api/inventory/sync?warehouse=w2", expect=500, headers=H("initech"), label={
            "classification": "inconclusive", "origin": None, "bug": None,
            "cohort": cohort(EDGE, "initech"),
            "why": "catalog answers a bare 500 JSON body when the w2 inventory feed is stale (nothing raised, the "
                   "query succeeded); edge passes the status through with plain requests"})


def retries_store(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/stock/SKU-100?warehouse=w1", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/api/stock/SKU-101?warehouse=w2", expect=500, headers=H("acme"), label=dependency(
            CATALOG, "client", ["HGETALL"], "django.catalog.stock-w2-refused",
            cohort(CATALOG, "acme", ["edge.stock-retries=3"]),
            "warehouse w2's stock Redis is a port nobody listens on: HGETALL fails with redis ConnectionError, "
            "catalog raises ServiceUnavailableError (503) from it; edge retries 3 times, then answers 500"))


def recovered_then_defect(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/products/SKU-100/dimensions", headers=H("acme"))
    rec.call(e, "GET", "/api/products/SKU-101/dimensions", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/api/products/SKU-ZETA/dimensions", expect=500, headers=H("acme"),
                 label=handler_origin(
                     CATALOG, "GET products/<str:sku>/dimensions", "django.catalog.dimensions-null",
                     cohort(CATALOG, "acme", ["catalog.dimensions-cache=redis"]),
                     "the Redis GET of product:SKU-ZETA fails (WRONGTYPE, the key is a hash) and is caught; the "
                     "PostgreSQL fallback succeeds; then dims['widthCm'] of the null column raises TypeError"))


def malformed_json(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/quotes/bulk?skus=SKU-100,SKU-101", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/api/quotes/bulk?skus=SKU-100,SKU-110", expect=500, headers=H("hooli"),
                 label=handler_origin(
                     CATALOG, "GET quotes/bulk", "django.catalog.bulk-json-decode", cohort(CATALOG, "hooli"),
                     "pricing answers 200 with hand-built JSON holding `None` for SKU-110 (not in its price list); "
                     "the client span succeeded, the JSONDecodeError is raised by resp.json() in catalog's own "
                     "view, so the defect is catalog's (it trusts a 200 to be JSON)"))


def n_plus_one_then_defect(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/api/bundles/BND-1", headers=H("umbrella"))
    for _ in range(n):
        rec.call(e, "GET", "/api/bundles/BND-10", expect=500, headers=H("umbrella"), label=handler_origin(
            CATALOG, "GET bundles/<str:bundle_id>", "django.catalog.bundle-pricing-null", cohort(CATALOG, "umbrella"),
            "catalog loads the bundle's 10 products one ORM query each (N+1, all succeed), then "
            "p.pricing['listCents'] raises TypeError on SKU-109 whose pricing column is null"))


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

# pricing's FX view keeps running for ~1 s after catalog gave up on it.
SETTLE = 1.5
