"""Suite `nestjs`: NestJS 11 on @nestjs/platform-express (Express 5), one global
`@Catch()` exception filter per service registered with `APP_FILTER`, under the
stock OpenTelemetry Node auto-instrumentation (which includes
instrumentation-nestjs-core). edge -> catalog -> pricing (two pricing
deployments: us-east-1 and eu-west-1), PostgreSQL through `pg`, Redis through
`ioredis`, HTTP through axios. TypeScript sources in apps/nestjs/src, compiled
ahead of time into the committed apps/nestjs/dist (apps/nestjs/build.sh). Apps
and the bugs in code terms: tests/zoo/apps/nestjs/README.md."""

import shutil
import threading
import time
from collections import OrderedDict
from pathlib import Path

from zoo import Service

FRAMEWORK = "nestjs"
APP = Path(__file__).resolve().parent.parent / "apps" / "nestjs"

EDGE = "nest-edge"
CATALOG = "nest-catalog"
PRICING = "nest-pricing"
RELEASE = {EDGE: "5.2.0", CATALOG: "2.7.3", PRICING: "1.12.0"}
REGION = {EDGE: "us-east-1", CATALOG: "us-east-2", PRICING: "us-east-1"}
ENVIRONMENT = "production"
SETTLE = 1.0


def setup(env_dir, venv_setup, npm_setup):
    return [npm_setup(env_dir, APP)]


SCHEMA = """
CREATE TABLE tenant_settings (tenant text PRIMARY KEY, region text NOT NULL, shipping_profile jsonb);
INSERT INTO tenant_settings VALUES
  ('acme',     'us', '{"carrier": "ups", "zone": "US-EAST"}'),
  ('globex',   'us', '{"carrier": "fedex", "zone": "US-WEST"}'),
  ('initech',  'us', NULL),
  ('umbrella', 'eu', '{"carrier": "dhl", "zone": "EU-WEST"}');
CREATE TABLE items (sku text PRIMARY KEY, name text NOT NULL, price_cents int NOT NULL, weight_g int NOT NULL,
                    on_hand int NOT NULL, discount jsonb);
INSERT INTO items
SELECT 'SKU-' || i, 'Item ' || i, 1000 + i * 250, 200 + i * 10, 3 * i,
       CASE WHEN i = 12 THEN NULL ELSE jsonb_build_object('percent', i % 4 * 5) END
FROM generate_series(1, 12) AS i;
CREATE TABLE bundles (id text PRIMARY KEY, name text NOT NULL, components jsonb);
INSERT INTO bundles VALUES
  ('B1', 'Starter kit', '[{"sku": "SKU-1"}, {"sku": "SKU-2"}]'),
  ('B2', 'Legacy combo', NULL),
  ('B3', 'Office pack', '[{"sku": "SKU-3"}, {"sku": "SKU-4"}, {"sku": "SKU-5"}]');
CREATE TABLE order_lines (order_id text NOT NULL, line_no int NOT NULL, sku text NOT NULL, qty int NOT NULL,
                          PRIMARY KEY (order_id, line_no));
INSERT INTO order_lines SELECT 'O-1001', i, 'SKU-' || i, 1 + i % 3 FROM generate_series(1, 10) AS i;
INSERT INTO order_lines SELECT 'O-1002', i - 2, 'SKU-' || i, 1 + i % 2 FROM generate_series(3, 12) AS i;
"""

# Redis: recommendation lists (globex's key is a legacy string: LRANGE gets
# WRONGTYPE), a cached bundle, and bundle B2 cached as a hash where the code
# GETs a string (WRONGTYPE, recovered from by reading PostgreSQL).
REDIS_SEED = [
    ["RPUSH", "recs:acme", "SKU-1", "SKU-4", "SKU-9"],
    ["RPUSH", "recs:initech", "SKU-2"],
    ["SET", "recs:globex", "SKU-1,SKU-2"],
    ["SET", "bundle:B1", '{"id":"B1","name":"Starter kit","skus":["SKU-1","SKU-2"]}'],
    ["HSET", "bundle:B2", "name", "Legacy combo"],
]


def prepare_stores(stores):
    stores.psql(SCHEMA)
    stores.redis_commands(REDIS_SEED)


def _node(script):
    def cmd(env_dir):
        return ([shutil.which("node") or "node", "--require", "@opentelemetry/auto-instrumentations-node/register",
                 str(APP / "dist" / script)], str(Path(env_dir) / "node"))
    return cmd


def services(env_dir):
    # The process resource detector is left out: its command line and paths on every
    # span would make up half of the capture.
    node = {"NODE_PATH": str(Path(env_dir) / "node" / "node_modules"),
            "OTEL_NODE_RESOURCE_DETECTORS": "env,host,os,serviceinstance"}
    return [
        Service("edge", _node("edge/main.js"), EDGE, RELEASE[EDGE], ENVIRONMENT, REGION[EDGE],
                dict(node, CATALOG_URL="{catalog_url}", REVIEWS_URL="{dead_url}")),
        Service("catalog", _node("catalog/main.js"), CATALOG, RELEASE[CATALOG], ENVIRONMENT, REGION[CATALOG],
                dict(node, PG_URL="{pg_url}", REDIS_URL="{redis_url}", PRICING_URL="{pricing_url}",
                     PRICING_EU_URL="{pricing_eu_url}")),
        Service("pricing", _node("pricing/main.js"), PRICING, RELEASE[PRICING], ENVIRONMENT, "us-east-1",
                dict(node, APP_REGION="us-east-1")),
        # The same release deployed in eu-west-1, where its tax table is missing.
        Service("pricing_eu", _node("pricing/main.js"), PRICING, RELEASE[PRICING], ENVIRONMENT, "eu-west-1",
                dict(node, APP_REGION="eu-west-1")),
    ]


# ------------------------------------------------------------------ labels
def H(tenant):
    return {"x-tenant": tenant}


def cohort(service, tenant, flags=(), region=None):
    return {"release": RELEASE[service], "environment": ENVIRONMENT, "region": region or REGION[service],
            "tenant": tenant, "feature_flags": sorted(flags)}


def nest_handler(controller, method, route):
    """Where a Nest handler's exception is recorded: instrumentation-nestjs-core's
    handler span (`<method>`) first, then its request-context span
    (`<Controller>.<method>`), both INTERNAL; the service's SERVER span of the route
    (status ERROR from the 500, no event) is acceptable too, so no kind is given."""
    return [method, f"{controller}.{method}", route]


def defect(service, names, bug, coh, why, kind=None):
    origin = {"service": service, "names": names}
    if kind:
        origin["kind"] = kind
    return {"classification": "deterministic_handler_defect", "origin": origin, "bug": bug, "cohort": coh,
            "why": why}


def dependency(service, kind, names, bug, coh, why, blame=None):
    lab = {"classification": "late_dependency_failure", "origin": {"service": service, "kind": kind, "names": names},
           "bug": bug, "cohort": coh, "why": why}
    if blame:
        lab["blame"] = blame
    return lab


# --------------------------------------------------------------- scenarios

def rejected(service, kind, names, bug, coh, why):
    """The store answered by rejecting a command wrong for the data (a missing table,
    Redis WRONGTYPE): the same request shape fails the same way and no retry helps, so
    the contract files it as the handler's data-path defect, at the store call."""
    lab = dependency(service, kind, names, bug, coh, why)
    lab["classification"] = "deterministic_handler_defect"
    return lab

def null_field_defect(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/storefront/items/SKU-3", headers=H("acme"))
    rec.call(e, "GET", "/storefront/items/SKU-3", headers=H("globex"))
    for _ in range(n):
        rec.call(e, "GET", "/storefront/items/SKU-3", expect=500, headers=H("initech"), label=defect(
            CATALOG, nest_handler("ItemsController", "getItem", "GET /items/:sku"), "nestjs.catalog.items.null-shipping-profile",
            cohort(CATALOG, "initech", ["catalog.shipping-v2=v2"]),
            "catalog's ItemsController.getItem (shipping-v2) reads settings.shipping_profile.carrier; "
            "shipping_profile is NULL for initech (TypeError); edge wraps the 500 in UpstreamError"))


def region_specific_chain(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/storefront/items/SKU-2/price", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/storefront/items/SKU-2/price", expect=500, headers=H("umbrella"), label=defect(
            PRICING, nest_handler("QuotesController", "quote", "GET /quote/:sku"), "nestjs.pricing.quote.tax-table-missing",
            cohort(PRICING, "umbrella", ["pricing.signed-quotes=on"], region="eu-west-1"),
            "pricing's eu-west-1 deployment has no TAX_TABLES entry: TAX_TABLES[REGION].standard throws "
            "TypeError in QuotesController.quote; catalog and edge each wrap the 500 in UpstreamError"))


PG_QUERY = ["pg.query:SELECT zoo"]  # instrumentation-pg: `pg.query:<first word> <database>`
HTTP_CLIENT = ["GET"]  # instrumentation-http names an outgoing request by its method


def error_responder_throws(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "POST", "/storefront/cart", expect=201, headers=H("acme"), body={"lines": [{"sku": "SKU-1", "qty": 2}]})
    for _ in range(n):
        rec.call(e, "POST", "/storefront/cart", expect=500, headers=H("globex"),
                 body={"lines": [{"sku": "SKU-1", "qty": 1}, {"sku": "SKU-4", "qty": 0}]},
                 label=defect(EDGE, RESPONDER, "nestjs.edge.filter.circular-details", cohort(EDGE, "globex"),
                              "edge's AllExceptionsFilter res.json()s the details of CartController's "
                              "ValidationError, which hold the live cart (cart.session.cart is a cycle): the "
                              "filter's own TypeError 'Converting circular structure to JSON' turns the intended "
                              "422 into Express's 500 (the ValidationError is not the fault)"))


def pg_statement_timeout(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/storefront/reports/daily", headers=H("acme"))
    lab = dependency(CATALOG, "client", PG_QUERY, "nestjs.catalog.reports.statement-timeout", cohort(CATALOG, "acme"),
                     "catalog's annual report query (pg_sleep(2)) runs on the reports pool with statement_timeout "
                     "1500 ms: PostgreSQL cancels it (57014), the filter answers 500, edge wraps it",
                     blame={"service": CATALOG, "names": PG_QUERY})
    _parallel([lambda: rec.call(e, "GET", "/storefront/reports/annual", expect=500, headers=H("acme"), label=lab)
               for _ in range(n)])


def connection_refused(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/storefront/items/SKU-5/page", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/storefront/items/SKU-5/page", expect=500, headers=H("globex"), label=dependency(
            EDGE, "client", HTTP_CLIENT, "nestjs.edge.reviews.refused",
            cohort(EDGE, "globex", ["catalog.shipping-v2=v2", "edge.reviews-widget=on"]),
            "with edge.reviews-widget on, edge's product page calls the reviews service at a port nobody listens "
            "on: ECONNREFUSED, UpstreamError 'reviews request failed', answered 500"))


def pool_exhaustion(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/storefront/inventory/SKU-2", headers=H("acme"))
    holder = threading.Thread(target=rec.call, args=(e, "GET", "/storefront/inventory/SKU-1?audit=full"),
                              kwargs={"headers": H("initech")})
    holder.start()
    time.sleep(0.25)
    _parallel([lambda: rec.call(e, "GET", "/storefront/inventory/SKU-2", expect=500, headers=H("acme"),
                                label=POOL_LABEL) for _ in range(n)])
    holder.join()


def partner_timeout(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/storefront/items/SKU-1/delivery", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/storefront/items/HEAVY-9/delivery", expect=500, headers=H("acme"), label=dependency(
            CATALOG, "client", HTTP_CLIENT, "nestjs.catalog.shipping-quote.timeout", cohort(CATALOG, "acme"),
            "catalog asks pricing's shipping-quote endpoint with a 300 ms axios timeout; pricing needs ~1 s for "
            "heavy goods: 'timeout of 300ms exceeded', UpstreamError, 500, edge wraps it"))


def no_exception_500(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/storefront/checkout/preview", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/storefront/checkout/preview", expect=500, headers=H("initech"), label={
            "classification": "inconclusive", "origin": None, "bug": None,
            "cohort": cohort(EDGE, "initech", ["edge.checkout-freeze=frozen"]),
            "why": "edge's CartController.previewCheckout answers 500 with a JSON body itself while "
                   "edge.checkout-freeze is 'frozen' for the tenant; nothing throws, nothing fails"})


def retries_store_failure(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/storefront/recommendations", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/storefront/recommendations", expect=500, headers=H("globex"), label=rejected(
            CATALOG, "client", ["lrange"], "nestjs.catalog.recs.redis-wrongtype", cohort(CATALOG, "globex"),
            "recs:globex is a legacy string: catalog's LRANGE fails WRONGTYPE, catalog answers 503 "
            "(ServiceUnavailableException), edge retries 3 times and answers 500"))


def recovered_then_defect(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/storefront/bundles/B1", headers=H("acme"))
    rec.call(e, "GET", "/storefront/bundles/B3", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/storefront/bundles/B2", expect=500, headers=H("acme"), label=defect(
            CATALOG, nest_handler("BundlesController", "getBundle", "GET /bundles/:id"), "nestjs.catalog.bundles.null-components",
            cohort(CATALOG, "acme"),
            "bundle:B2 is cached as a hash: the GET fails WRONGTYPE and is recovered from by reading PostgreSQL; "
            "the row's components is NULL and BundlesController.getBundle's components.map throws TypeError"))


def malformed_json(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/storefront/items/SKU-1/availability", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/storefront/items/SKU-7/availability", expect=500, headers=H("acme"), label=defect(
            CATALOG, nest_handler("ItemsController", "getAvailability", "GET /items/:sku/availability"), "nestjs.catalog.availability.json-parse",
            cohort(CATALOG, "acme"),
            "pricing answers 200 with '\"available\":,' (invalid JSON); the client span succeeded and the "
            "SyntaxError is thrown by JSON.parse in catalog's own code (UpstreamClient in getAvailability), "
            "which trusts the body unchecked: a defect at catalog, not a failed call"))


def n_plus_one_then_defect(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/storefront/orders/O-1001/summary", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/storefront/orders/O-1002/summary", expect=500, headers=H("acme"), label=defect(
            CATALOG, nest_handler("OrdersController", "getOrderSummary", "GET /orders/:id/summary"), "nestjs.catalog.orders.null-discount",
            cohort(CATALOG, "acme"),
            "OrdersController.getOrderSummary queries each of the 10 lines' items (N+1, all succeed), then reads "
            "item.discount.percent; SKU-12 has discount NULL (TypeError)"))


def _parallel(fns):
    threads = [threading.Thread(target=f) for f in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


# The filter's TypeError reaches Express 5's router (the Nest route handler's
# promise rejects), which records it on three INTERNAL spans: the router layer
# `request handler - <route>`, instrumentation-express's `request handler`
# (status ERROR) and the route's `middleware - patched` layer above them (the
# SERVER span, status ERROR from the 500, is acceptable too).
RESPONDER = ["request handler - /storefront/cart", "request handler", "middleware - patched",
             "POST /storefront/cart"]
POOL_LABEL = dependency(
    CATALOG, "client", ["pg-pool.connect"], "nestjs.catalog.inventory.pool-timeout", cohort(CATALOG, "acme"),
    "catalog's ledger pool has one connection, held by an audit query (pg_sleep 1.2 s); the request waits 300 ms "
    "(connectionTimeoutMillis) and pg-pool throws 'timeout exceeded when trying to connect'; "
    "instrumentation-pg records it on a failed pg-pool.connect CLIENT span, so the trace shows the failed "
    "dependency call (there is no pg.query span for the waiting request)",
    blame={"service": CATALOG, "names": ["pg-pool.connect"]})


SCENARIOS = OrderedDict([
    ("null_field_defect", null_field_defect),
    ("region_specific_chain", region_specific_chain),
    ("error_responder_throws", error_responder_throws),
    ("pg_statement_timeout", pg_statement_timeout),
    ("connection_refused", connection_refused),
    ("pool_exhaustion", pool_exhaustion),
    ("partner_timeout", partner_timeout),
    ("no_exception_500", no_exception_500),
    ("retries_store_failure", retries_store_failure),
    ("recovered_then_defect", recovered_then_defect),
    ("malformed_json", malformed_json),
    ("n_plus_one_then_defect", n_plus_one_then_defect),

])


def warm_up(cluster, rec):
    rec.call(cluster.url("edge"), "GET", "/storefront/items/SKU-1", headers=H("acme"))
