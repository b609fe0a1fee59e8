"""catalog: products, tenants' shipping settings, stock, bundles, reports and
exports. PostgreSQL through asyncpg (pool `main`: up to 5 connections with
statement_timeout 1500 ms; pool `exports`: ONE connection, 300 ms acquisition
timeout), Redis through redis.asyncio (the main cache, and the ap-south stock
replica); calls pricing (one instance per region) and a reviews service.

Errors: lib.common.install_exception_handlers (AppError -> its status,
anything else -> the Exception handler's 500).

Env: APP_PORT, APP_PG_DSN, APP_REDIS_URL, APP_STOCK_AP_REDIS_URL, PRICING_URL,
PRICING_EU_URL, REVIEWS_URL.
"""

import datetime as dt
import json
import os
from contextlib import asynccontextmanager

import asyncpg
import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from pydantic import BaseModel
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError, ResponseError

from lib.common import (TENANT, NotFound, ServiceUnavailable, ValidationError, evaluate_flag, install_context,
                        install_exception_handlers, json_response, log, request_json)

DSN = os.environ["APP_PG_DSN"]
PRICING_URL = os.environ["PRICING_URL"]
PRICING_EU_URL = os.environ["PRICING_EU_URL"]
REVIEWS_URL = os.environ["REVIEWS_URL"]
POOLS = {}

cache = aioredis.Redis.from_url(os.environ["APP_REDIS_URL"], socket_timeout=1)
# The ap-south stock replica: a node that is down (nothing listens on its port).
stock_ap = aioredis.Redis.from_url(os.environ["APP_STOCK_AP_REDIS_URL"], socket_connect_timeout=0.3,
                                   socket_timeout=0.3, retry=Retry(NoBackoff(), 0))


@asynccontextmanager
async def lifespan(app):
    POOLS["main"] = await asyncpg.create_pool(DSN, min_size=1, max_size=5,
                                              server_settings={"statement_timeout": "1500"})
    POOLS["exports"] = await asyncpg.create_pool(DSN, min_size=1, max_size=1)
    yield
    for pool in POOLS.values():
        await pool.close()


app = FastAPI(title="catalog", lifespan=lifespan)
install_context(app)
install_exception_handlers(app)


async def tenant_row(tenant):
    row = await POOLS["main"].fetchrow("SELECT id, region, country, settings FROM tenants WHERE id = $1", tenant)
    if row is None:
        raise NotFound(f"unknown tenant {tenant}")
    return dict(row, settings=json.loads(row["settings"]))


async def product_row(sku):
    row = await POOLS["main"].fetchrow("SELECT sku, name, price_cents, weight_g FROM products WHERE sku = $1", sku)
    if row is None:
        raise NotFound(f"unknown product {sku}")
    return dict(row)


# Scenario null_tenant_field: tenants.settings.shipping is null for a tenant whose
# onboarding never finished (initech); the handler subscripts it.
@app.get("/products/{sku}")
async def product(sku: str):
    tenant = await tenant_row(TENANT.get())
    p = await product_row(sku)
    engine = evaluate_flag("catalog.shipping-v2")
    shipping = tenant["settings"]["shipping"]
    return {"sku": p["sku"], "name": p["name"], "priceCents": p["price_cents"],
            "shipping": {"zone": shipping["zone"], "carrier": shipping["carrier"], "engine": engine}}


# Scenario malformed_json: pricing's bulk endpoint answers 200 with a body that is
# not JSON; request_json's resp.json() raises JSONDecodeError here, in catalog.
@app.get("/quotes/bulk")
async def quotes_bulk(skus: str):
    quotes = await request_json("pricing", "GET", f"{PRICING_URL}/quote/bulk", params={"skus": skus})
    return {"quotes": quotes["quotes"], "count": len(quotes["quotes"])}


# Scenario region_config: the tenant's region picks the pricing instance; the
# eu-west-1 one has no standard tax rate configured and throws.
@app.get("/quotes/{sku}")
async def quote(sku: str):
    tenant = await tenant_row(TENANT.get())
    p = await product_row(sku)
    base = PRICING_EU_URL if tenant["region"] == "eu" else PRICING_URL
    q = await request_json("pricing", "GET", f"{base}/quote/{p['sku']}",
                           params={"cents": p["price_cents"], "country": tenant["country"]})
    return {"sku": p["sku"], "name": p["name"], "quote": q}


# Scenario responder_throws: invalid cart lines are reported with the product's
# list price, a numeric column that asyncpg returns as Decimal; the AppError
# handler's json.dumps cannot serialise it -> TypeError in the handler, and an
# intended 422 becomes a 500.
@app.post("/cart/validate")
async def cart_validate(request: Request):
    items = (await request.json()).get("items", [])
    rows = await POOLS["main"].fetch("SELECT sku, price_cents / 100.0 AS price FROM products WHERE sku = ANY($1)",
                                     [i["sku"] for i in items])
    prices = {r["sku"]: r["price"] for r in rows}
    invalid = [dict(i, listPrice=prices.get(i["sku"])) for i in items
               if not isinstance(i.get("qty"), int) or i["qty"] <= 0]
    if invalid:
        raise ValidationError(f"{len(invalid)} cart line(s) invalid", {"invalid": invalid})
    return {"ok": True, "lines": len(items), "known": len(prices)}


# Scenario pg_statement_timeout: the window scan costs ~days/180 s; the pool's
# statement_timeout is 1.5 s, so a 365-day report is cancelled by PostgreSQL.
@app.get("/reports/slow-movers")
async def slow_movers(days: int = 30):
    rows = await POOLS["main"].fetch("WITH scan AS (SELECT pg_sleep($1::int / 180.0)) "
                                     "SELECT p.sku, p.name FROM products p, scan ORDER BY p.sku LIMIT 5", days)
    return {"days": days, "slowMovers": [dict(r) for r in rows]}


# Scenario connection_refused: the reviews service is configured at an address
# nothing listens on.
@app.get("/products/{sku}/reviews")
async def reviews(sku: str):
    return {"sku": sku, "reviews": await request_json("reviews", "GET", f"{REVIEWS_URL}/reviews/{sku}")}


# Scenario pool_exhaustion: exports use a pool of ONE connection, acquired with a
# 300 ms timeout; an export holds it for 0.8 s.
@app.get("/exports/{kind}")
async def export(kind: str):
    async with POOLS["exports"].acquire(timeout=0.3) as conn:
        rows = await conn.fetch("SELECT sku, name, price_cents FROM products, pg_sleep(0.8) "
                                "WHERE $1::text IS NOT NULL ORDER BY sku", kind)
    return {"kind": kind, "rows": len(rows)}


# Scenario partner_timeout: FX rates from pricing with a 300 ms budget; pricing's
# live FX lookup takes a second for any currency but USD.
@app.get("/products/{sku}/fx")
async def fx(sku: str, currency: str = "USD"):
    p = await product_row(sku)
    rate = await request_json("pricing", "GET", f"{PRICING_URL}/rates/fx", params={"currency": currency},
                              timeout=0.3)
    return {"sku": sku, "currency": currency, "price": round(p["price_cents"] * rate["rate"])}


# Scenario no_exception_500: a stale warehouse feed is reported as a bare 500
# body; nothing is raised and every query succeeded.
@app.get("/inventory/sync")
async def inventory_sync(warehouse: str = "w1"):
    synced_at = await POOLS["main"].fetchval("SELECT synced_at FROM inventory_sync WHERE warehouse = $1", warehouse)
    age = dt.datetime.now(dt.timezone.utc) - synced_at
    if age > dt.timedelta(hours=1):
        return json_response({"ok": False, "warehouse": warehouse, "reason": "inventory feed stale"}, 500)
    return {"ok": True, "warehouse": warehouse, "ageSeconds": int(age.total_seconds())}


# Scenario retries_store: stock of the ap warehouse lives on the ap-south
# replica, which is down: the connection is refused, catalog answers 503 and the
# edge retries.
@app.get("/stock/{sku}")
async def stock(sku: str, warehouse: str = "us"):
    client = stock_ap if warehouse == "ap" else cache
    try:
        levels = await client.hgetall(f"stock:{sku}")
    except RedisConnectionError as e:
        raise ServiceUnavailable(f"stock cache {warehouse} unavailable: {e}") from e
    return {"sku": sku, "warehouse": warehouse, "levels": {k.decode(): int(v) for k, v in levels.items()}}


# Scenario recovered_then_defect: with the redis dimensions cache on, the GET of
# product:SKU-ZETA fails (WRONGTYPE: the key is a hash) and is recovered from by
# reading PostgreSQL; the row's dimensions are NULL and are subscripted.
@app.get("/products/{sku}/dimensions")
async def dimensions(sku: str):
    dims = None
    if evaluate_flag("catalog.dimensions-cache") == "redis":
        try:
            cached = await cache.get(f"product:{sku}")
            dims = json.loads(cached) if cached else None
        except ResponseError as e:
            log.warning("dimensions cache unusable for %s: %s", sku, e)
    if dims is None:
        raw = await POOLS["main"].fetchval("SELECT dimensions FROM products WHERE sku = $1", sku)
        dims = json.loads(raw) if raw is not None else None
    volume = dims["widthCm"] * dims["heightCm"] * dims["depthCm"]
    return {"sku": sku, "dimensions": dims, "volumeCm3": volume}


class Availability(BaseModel):
    sku: str
    warehouse: str
    units: int


# Scenario response_model_mismatch: availability is declared as
# `response_model=Availability` (units: int); a product with no stock row yields
# units=None, and FastAPI's serialisation of the return value raises
# ResponseValidationError after the handler returned.
@app.get("/products/{sku}/availability", response_model=Availability)
async def availability(sku: str):
    row = await POOLS["main"].fetchrow(
        "SELECT p.sku, s.warehouse, s.units FROM products p LEFT JOIN stock_levels s ON s.sku = p.sku "
        "WHERE p.sku = $1 ORDER BY s.units DESC NULLS LAST LIMIT 1", sku)
    if row is None:
        raise NotFound(f"unknown product {sku}")
    return {"sku": row["sku"], "warehouse": row["warehouse"] or "none", "units": row["units"]}


# Scenario n_plus_one_then_defect: a bundle's products are loaded one query each
# (N+1), then the list price of each is read; SKU-109's pricing column is NULL.
@app.get("/bundles/{bundle_id}")
async def bundle(bundle_id: str):
    skus = await POOLS["main"].fetchval("SELECT skus FROM bundles WHERE id = $1", bundle_id)
    if skus is None:
        raise NotFound(f"unknown bundle {bundle_id}")
    products = []
    for sku in skus:
        row = await POOLS["main"].fetchrow("SELECT sku, name, pricing FROM products WHERE sku = $1", sku)
        products.append(dict(row, pricing=json.loads(row["pricing"]) if row["pricing"] else None))
    total = sum(p["pricing"]["listCents"] for p in products)
    return {"id": bundle_id, "items": len(products), "totalCents": total}
