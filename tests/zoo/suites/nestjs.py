"""Suite `nestjs`: NestJS 11 on @nestjs/platform-express (Express 5), one global
`@Catch()` exception filter per service registered with `APP_FILTER`, under the
stock OpenTelemetry Node auto-instrumentation (which includes
instrumentation-nestjs-core). edge -> catalog -> pricing (two pricing
deployments: us-east-1 and eu-west-1), PostgreSQL through `pg`, Redis through
`ioredis`, HTTP through axios. TypeScript sources in apps/nestjs/src, compiled
ahead of time into the committed apps/nestjs/dist (apps/nestjs/build.sh). Apps
and the bugs in code terms: tests/zoo/apps/nestjs/README.md."""

import shutil
import socket
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


def _redis(port, commands):
    """Minimal RESP client (stdlib only): send the commands, read one reply each."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        out = b""
        for cmd in commands:
            out += f"*{len(cmd)}\r\n".encode()
            for arg in cmd:
                b = str(arg).encode()
                out += f"${len(b)}\r\n".encode() + b + b"\r\n"
        s.sendall(out)
        f = s.makefile("rb")
        for cmd in commands:
            line = f.readline()
            if line.startswith(b"-"):
                raise RuntimeError(f"redis {cmd}: {line.decode().strip()}")


def prepare_stores(stores):
    stores.psql(SCHEMA)
    _redis(stores.redis_port, REDIS_SEED)


def _node(script):
    def cmd(env_dir):
        return ([shutil.which("node") or "node", "--require", "@opentelemetry/auto-instrumentations-node/register",
                 str(APP / "dist" / script)], str(Path(env_dir) / "node"))
    return cmd


def services(env_dir):
    node = {"NODE_PATH": str(Path(env_dir) / "node" / "node_modules")}
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


def nest_handler(controller, method):
    """Where a Nest handler's exception is recorded: instrumentation-nestjs-core's
    handler span (`<method>`) first, then its request-context span
    (`<Controller>.<method>`), both INTERNAL."""
    return [method, f"{controller}.{method}"]


def defect(service, names, bug, coh, why, kind="internal"):
    return {"classification": "deterministic_handler_defect",
            "origin": {"service": service, "kind": kind, "names": names},
            "bug": bug, "cohort": coh, "why": why}


def dependency(service, kind, names, bug, coh, why, blame=None):
    lab = {"classification": "late_dependency_failure", "origin": {"service": service, "kind": kind, "names": names},
           "bug": bug, "cohort": coh, "why": why}
    if blame:
        lab["blame"] = blame
    return lab


# --------------------------------------------------------------- scenarios
def null_field_defect(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/storefront/items/SKU-3", headers=H("acme"))
    rec.call(e, "GET", "/storefront/items/SKU-3", headers=H("globex"))
    for _ in range(n):
        rec.call(e, "GET", "/storefront/items/SKU-3", expect=500, headers=H("initech"), label=defect(
            CATALOG, nest_handler("ItemsController", "getItem"), "nestjs.catalog.items.null-shipping-profile",
            cohort(CATALOG, "initech", ["catalog.shipping-v2=v2"]),
            "catalog's ItemsController.getItem (shipping-v2) reads settings.shipping_profile.carrier; "
            "shipping_profile is NULL for initech (TypeError); edge wraps the 500 in UpstreamError"))


def region_specific_chain(cluster, rec, n):
    e = cluster.url("edge")
    rec.call(e, "GET", "/storefront/items/SKU-2/price", headers=H("acme"))
    for _ in range(n):
        rec.call(e, "GET", "/storefront/items/SKU-2/price", expect=500, headers=H("umbrella"), label=defect(
            PRICING, nest_handler("QuotesController", "quote"), "nestjs.pricing.quote.tax-table-missing",
            cohort(PRICING, "umbrella", ["pricing.signed-quotes=on"], region="eu-west-1"),
            "pricing's eu-west-1 deployment has no TAX_TABLES entry: TAX_TABLES[REGION].standard throws "
            "TypeError in QuotesController.quote; catalog and edge each wrap the 500 in UpstreamError"))


SCENARIOS = OrderedDict([
    ("null_field_defect", null_field_defect),
    ("region_specific_chain", region_specific_chain),
])


def warm_up(cluster, rec):
    rec.call(cluster.url("edge"), "GET", "/storefront/items/SKU-1", headers=H("acme"))
