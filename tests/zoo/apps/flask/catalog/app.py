"""catalog: products, tenants' shipping settings, stock, bundles, reports and
exports. PostgreSQL through psycopg2 (pool `main`: up to 5 connections with
statement_timeout 1500 ms; pool `exports`: ONE connection), Redis through
redis-py (the main cache, and the ap-south stock replica); calls pricing (one
instance per region) and a reviews service.

Errors: the Flask documentation's layout (lib.common.install_error_responders):
AppError subclasses render their own status, anything else is unhandled and goes
through Flask's handle_exception to the InternalServerError handler.

Env: APP_PORT, APP_PG_DSN, APP_REDIS_URL, APP_STOCK_AP_REDIS_URL, PRICING_URL,
PRICING_EU_URL, REVIEWS_URL.
"""

import datetime as dt
import json
import os
from contextlib import contextmanager

import psycopg2
import psycopg2.pool
import redis
from flask import Flask, g, jsonify, request
from redis.backoff import NoBackoff
from redis.retry import Retry

from lib.common import (NotFound, ServiceUnavailable, ValidationError, evaluate_flag, install_context,
                        install_error_responders, log, request_json, serve)

DSN = os.environ["APP_PG_DSN"]
PRICING_URL = os.environ["PRICING_URL"]
PRICING_EU_URL = os.environ["PRICING_EU_URL"]
REVIEWS_URL = os.environ["REVIEWS_URL"]

POOLS = {
    "main": psycopg2.pool.ThreadedConnectionPool(1, 5, DSN, options="-c statement_timeout=1500"),
    "exports": psycopg2.pool.ThreadedConnectionPool(1, 1, DSN),
}
cache = redis.Redis.from_url(os.environ["APP_REDIS_URL"], socket_timeout=1)
# The ap-south stock replica: a node that is down (nothing listens on its port).
stock_ap = redis.Redis.from_url(os.environ["APP_STOCK_AP_REDIS_URL"], socket_connect_timeout=0.3,
                                socket_timeout=0.3, retry=Retry(NoBackoff(), 0))

app = Flask("catalog")
install_context(app)
install_error_responders(app)


@contextmanager
def db(pool="main"):
    conn = POOLS[pool].getconn()
    try:
        with conn.cursor() as cur:
            yield cur
        conn.commit()
    except Exception:
        conn.rollback()
        raise
    finally:
        POOLS[pool].putconn(conn)


def query(sql, args=(), pool="main"):
    with db(pool) as cur:
        cur.execute(sql, args)
        cols = [c.name for c in cur.description]
        return [dict(zip(cols, row)) for row in cur.fetchall()]


def tenant_row(tenant):
    rows = query("SELECT id, region, country, settings FROM tenants WHERE id = %s", (tenant,))
    if not rows:
        raise NotFound(f"unknown tenant {tenant}")
    return rows[0]


def product_row(sku):
    rows = query("SELECT sku, name, price_cents, weight_g FROM products WHERE sku = %s", (sku,))
    if not rows:
        raise NotFound(f"unknown product {sku}")
    return rows[0]


# Scenario null_tenant_field: tenants.settings.shipping is null for a tenant whose
# onboarding never finished (initech); the handler subscripts it.
@app.get("/products/<sku>")
def product(sku):
    tenant = tenant_row(g.tenant)
    p = product_row(sku)
    engine = evaluate_flag("catalog.shipping-v2")
    shipping = tenant["settings"]["shipping"]
    return jsonify(sku=p["sku"], name=p["name"], priceCents=p["price_cents"],
                   shipping={"zone": shipping["zone"], "carrier": shipping["carrier"], "engine": engine})


# Scenario malformed_json: pricing's bulk endpoint answers 200 with a body that is
# not JSON; request_json's resp.json() raises JSONDecodeError here, in catalog.
@app.get("/quotes/bulk")
def quotes_bulk():
    quotes = request_json("pricing", "GET", f"{PRICING_URL}/quote/bulk", params={"skus": request.args["skus"]})
    return jsonify(quotes=quotes["quotes"], count=len(quotes["quotes"]))


# Scenario region_config: the tenant's region picks the pricing instance; the
# eu-west-1 one has no standard tax rate configured and throws.
@app.get("/quotes/<sku>")
def quote(sku):
    tenant = tenant_row(g.tenant)
    p = product_row(sku)
    base = PRICING_EU_URL if tenant["region"] == "eu" else PRICING_URL
    q = request_json("pricing", "GET", f"{base}/quote/{p['sku']}",
                     params={"cents": p["price_cents"], "country": tenant["country"]})
    return jsonify(sku=p["sku"], name=p["name"], quote=q)


# Scenario responder_throws: invalid cart lines are reported with the product's
# list price, a numeric column that psycopg2 returns as Decimal; the AppError
# responder's json.dumps cannot serialise it -> TypeError in the responder, and
# an intended 422 becomes a 500.
@app.post("/cart/validate")
def cart_validate():
    items = (request.get_json() or {}).get("items", [])
    prices = {r["sku"]: r["price"] for r in query(
        "SELECT sku, price_cents / 100.0 AS price FROM products WHERE sku = ANY(%s)", ([i["sku"] for i in items],))}
    invalid = [dict(i, listPrice=prices.get(i["sku"])) for i in items
               if not isinstance(i.get("qty"), int) or i["qty"] <= 0]
    if invalid:
        raise ValidationError(f"{len(invalid)} cart line(s) invalid", {"invalid": invalid})
    return jsonify(ok=True, lines=len(items), known=len(prices))


# Scenario pg_statement_timeout: the window scan costs ~days/180 s; the pool's
# statement_timeout is 1.5 s, so a 365-day report is cancelled by PostgreSQL.
@app.get("/reports/slow-movers")
def slow_movers():
    days = int(request.args.get("days", "30"))
    rows = query("WITH scan AS (SELECT pg_sleep(%s / 180.0)) "
                 "SELECT p.sku, p.name FROM products p, scan ORDER BY p.sku LIMIT 5", (days,))
    return jsonify(days=days, slowMovers=rows)


# Scenario connection_refused: the reviews service is configured at an address
# nothing listens on.
@app.get("/products/<sku>/reviews")
def reviews(sku):
    return jsonify(sku=sku, reviews=request_json("reviews", "GET", f"{REVIEWS_URL}/reviews/{sku}"))


# Scenario pool_exhaustion: exports use a pool of ONE connection; an export
# holds it for 0.8 s; psycopg2's pool raises PoolError at once when it is empty.
@app.get("/exports/<kind>")
def export(kind):
    rows = query("SELECT sku, name, price_cents FROM products, pg_sleep(0.8) WHERE %s IS NOT NULL ORDER BY sku",
                 (kind,), pool="exports")
    return jsonify(kind=kind, rows=len(rows))


# Scenario partner_timeout: FX rates from pricing with a 300 ms budget; pricing's
# live FX lookup takes a second for any currency but USD.
@app.get("/products/<sku>/fx")
def fx(sku):
    p = product_row(sku)
    currency = request.args.get("currency", "USD")
    rate = request_json("pricing", "GET", f"{PRICING_URL}/rates/fx", params={"currency": currency}, timeout=0.3)
    return jsonify(sku=sku, currency=currency, price=round(p["price_cents"] * rate["rate"]))


# Scenario no_exception_500: a stale warehouse feed is reported as a bare 500
# body; nothing is raised and every query succeeded.
@app.get("/inventory/sync")
def inventory_sync():
    warehouse = request.args.get("warehouse", "w1")
    rows = query("SELECT synced_at FROM inventory_sync WHERE warehouse = %s", (warehouse,))
    age = dt.datetime.now(dt.timezone.utc) - rows[0]["synced_at"]
    if age > dt.timedelta(hours=1):
        return jsonify(ok=False, warehouse=warehouse, reason="inventory feed stale"), 500
    return jsonify(ok=True, warehouse=warehouse, ageSeconds=int(age.total_seconds()))


# Scenario retries_store: stock of the ap warehouse lives on the ap-south
# replica, which is down: the connection is refused, catalog answers 503 and the
# edge retries.
@app.get("/stock/<sku>")
def stock(sku):
    warehouse = request.args.get("warehouse", "us")
    client = stock_ap if warehouse == "ap" else cache
    try:
        levels = client.hgetall(f"stock:{sku}")
    except redis.ConnectionError as e:
        raise ServiceUnavailable(f"stock cache {warehouse} unavailable: {e}") from e
    return jsonify(sku=sku, warehouse=warehouse, levels={k.decode(): int(v) for k, v in levels.items()})


# Scenario recovered_then_defect: with the redis dimensions cache on, the GET of
# product:SKU-ZETA fails (WRONGTYPE: the key is a hash) and is recovered from by
# reading PostgreSQL; the row's dimensions are NULL and are subscripted.
@app.get("/products/<sku>/dimensions")
def dimensions(sku):
    dims = None
    if evaluate_flag("catalog.dimensions-cache") == "redis":
        try:
            cached = cache.get(f"product:{sku}")
            dims = json.loads(cached) if cached else None
        except redis.ResponseError as e:
            log.warning("dimensions cache unusable for %s: %s", sku, e)
    if dims is None:
        dims = query("SELECT dimensions FROM products WHERE sku = %s", (sku,))[0]["dimensions"]
    volume = dims["widthCm"] * dims["heightCm"] * dims["depthCm"]
    return jsonify(sku=sku, dimensions=dims, volumeCm3=volume)


# Scenario n_plus_one_then_defect: a bundle's products are loaded one query each
# (N+1), then the list price of each is read; SKU-109's pricing column is NULL.
@app.get("/bundles/<bundle_id>")
def bundle(bundle_id):
    rows = query("SELECT skus FROM bundles WHERE id = %s", (bundle_id,))
    if not rows:
        raise NotFound(f"unknown bundle {bundle_id}")
    products = [query("SELECT sku, name, pricing FROM products WHERE sku = %s", (sku,))[0] for sku in rows[0]["skus"]]
    total = sum(p["pricing"]["listCents"] for p in products)
    return jsonify(id=bundle_id, items=len(products), totalCents=total)


if __name__ == "__main__":
    serve(app)
