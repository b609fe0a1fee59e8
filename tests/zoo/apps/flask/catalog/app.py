"""catalog: products, quotes, carts, reports, exports, stock and bundles from
PostgreSQL (psycopg2) and Redis (redis-py); calls pricing (two regional
deployments) and a reviews service through zooapp.upstream."""
import json
import os
import time

import redis
from flask import jsonify, request
from redis.backoff import NoBackoff
from redis.retry import Retry

from zooapp.db import BlockingPool
from zooapp.upstream import get_json
from zooapp.web import AppError, ValidationError, create_app, flag, tenant

app = create_app("catalog")
PG = os.environ["APP_PG_URL"]
db = BlockingPool(PG, size=4, timeout=2.0)
# Reports run on their own connections, capped by statement_timeout.
reports_db = BlockingPool(PG, size=2, timeout=2.0, options="-c statement_timeout=1500")
# Exports get one connection; a request waits at most 300 ms for it.
exports_db = BlockingPool(PG, size=1, timeout=0.3)


def _redis(url):
    # No client-side retries: a refused connection fails the command at once.
    return redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.3, retry=Retry(NoBackoff(), 0),
                                decode_responses=True)


cache = _redis(os.environ["APP_REDIS_URL"])
STOCK_STORES = {"us": cache, "eu": _redis(os.environ["APP_STOCK_EU_REDIS_URL"])}
PRICING = {"us": os.environ["PRICING_URL"], "eu": os.environ["PRICING_EU_URL"]}
REVIEWS = os.environ["REVIEWS_URL"]


def load_tenant():
    row = db.query("SELECT id, region, country, settings FROM tenants WHERE id = %s", (tenant(),), one=True)
    if row is None:
        raise AppError(f"unknown tenant {tenant()!r}", status=403)
    return row


def load_product(sku):
    row = db.query("SELECT sku, name, price_cents, dimensions, pricing FROM products WHERE sku = %s", (sku,),
                   one=True)
    if row is None:
        raise AppError(f"no product {sku}", status=404)
    return row


@app.get("/products/<sku>")
def product(sku):
    t = load_tenant()
    p = load_product(sku)
    variant = flag("catalog.shipping-v2", "v1")
    # Bug: settings.shipping is null for some tenants (initech): TypeError.
    zone = t["settings"]["shipping"]["zone"]
    return jsonify(sku=p["sku"], name=p["name"], priceCents=p["price_cents"], shippingZone=zone, shipping=variant)


@app.get("/quotes/<sku>")
def quote(sku):
    t = load_tenant()
    p = load_product(sku)
    q = get_json("pricing", f"{PRICING[t['region']]}/quote/{sku}", params={"cents": p["price_cents"]})
    return jsonify(sku=sku, quote=q)


@app.post("/cart/validate")
def cart_validate():
    items = (request.get_json() or {}).get("items", [])
    bad = {i["sku"] for i in items if i.get("qty", 0) <= 0}
    if bad:
        # Bug: `details` holds a set; the error responder's jsonify cannot serialise it.
        raise ValidationError("cart has lines with a quantity below 1", details={"skus": bad})
    return jsonify(ok=True, lines=len(items))


@app.get("/reports/slow-movers")
def slow_movers():
    days = int(request.args.get("days", "30"))
    # The long-horizon scan is slow (pg_sleep stands in for it): 2 s > statement_timeout 1.5 s.
    rows = reports_db.query(
        "SELECT sku, name FROM products, pg_sleep(CASE WHEN %s > 90 THEN 2 ELSE 0.01 END) "
        "WHERE price_cents < %s ORDER BY sku LIMIT 5", (days, 1500))
    return jsonify(days=days, items=rows)


@app.get("/products/<sku>/reviews")
def reviews(sku):
    return jsonify(sku=sku, reviews=get_json("reviews", f"{REVIEWS}/reviews/{sku}"))


@app.get("/exports/<kind>")
def exports(kind):
    hold = 0.8 if kind == "orders" else 0.01
    rows = exports_db.query("SELECT count(*) AS n, pg_sleep(%s) IS NULL AS slept FROM products", (hold,))
    return jsonify(kind=kind, rows=rows[0]["n"])


@app.get("/products/<sku>/fx")
def fx(sku):
    p = load_product(sku)
    currency = request.args.get("currency", "USD")
    r = get_json("pricing", f"{PRICING['us']}/rates/fx", params={"currency": currency}, timeout=0.3)
    return jsonify(sku=sku, currency=currency, price=round(p["price_cents"] * r["rate"]))


@app.get("/inventory/sync")
def inventory_sync():
    wh = request.args.get("warehouse", "w1")
    row = db.query("SELECT warehouse, extract(epoch FROM now() - synced_at) AS age_s FROM inventory_sync "
                   "WHERE warehouse = %s", (wh,), one=True)
    if row is None or row["age_s"] > 3600:
        # Deliberate: a stale feed is answered 500, nothing raised.
        return jsonify(error="inventory feed stale", warehouse=wh), 500
    return jsonify(warehouse=wh, fresh=True)


@app.get("/stock/<sku>")
def stock(sku):
    t = load_tenant()
    try:
        levels = STOCK_STORES[t["region"]].hgetall(f"stock:{sku}")
    except redis.ConnectionError as err:
        raise AppError(f"stock store for {t['region']} unavailable: {err}", status=503) from err
    return jsonify(sku=sku, levels={k: int(v) for k, v in levels.items()})


@app.get("/products/<sku>/dimensions")
def dimensions(sku):
    flag("catalog.dimensions-cache", "redis")
    dims = None
    try:
        cached = cache.get(f"product:{sku}")
        if cached:
            dims = json.loads(cached)
    except redis.ResponseError:
        app.logger.warning("dimensions cache unreadable for %s, falling back to PostgreSQL", sku)
    if dims is None:
        dims = load_product(sku)["dimensions"]
    # Bug: dimensions is NULL for some products (SKU-ZETA): TypeError.
    volume = dims["widthCm"] * dims["heightCm"] * dims["depthCm"]
    return jsonify(sku=sku, volumeCm3=volume)


@app.get("/quotes/bulk")
def bulk_quotes():
    skus = request.args.get("skus", "")
    # get_json calls resp.json(): pricing's 200 body is not JSON -> JSONDecodeError, not wrapped.
    prices = get_json("pricing", f"{PRICING['us']}/quotes/bulk", params={"skus": skus})
    return jsonify(prices=prices)


@app.get("/bundles/<bid>")
def bundle(bid):
    row = db.query("SELECT skus FROM bundles WHERE id = %s", (bid,), one=True)
    if row is None:
        raise AppError(f"no bundle {bid}", status=404)
    products = [load_product(s) for s in row["skus"]]  # N+1: one query per product
    # Bug: pricing is NULL for some products (SKU-109): TypeError.
    total = sum(p["pricing"]["listCents"] for p in products)
    return jsonify(bundle=bid, totalCents=total, items=len(products))


@app.get("/healthz")
def healthz():
    return {"ok": True}
