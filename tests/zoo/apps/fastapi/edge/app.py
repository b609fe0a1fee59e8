"""edge: the public API `/api/...`. Every route calls catalog through
`request_json`; `@app.exception_handler(UpstreamError)` turns a failed call to
catalog into a plain 500 JSON body (the common bad translation of a dependency
error), `@app.exception_handler(Exception)` answers anything else.

Env: APP_PORT, CATALOG_URL.
"""

import os

from fastapi import FastAPI, Request
from fastapi.responses import Response

from lib.common import (TENANT, UpstreamError, client, evaluate_flag, install_context, install_exception_handlers,
                        json_response, log, request_json, with_retry)

CATALOG_URL = os.environ["CATALOG_URL"]

app = FastAPI(title="edge")
install_context(app)
install_exception_handlers(app)


@app.exception_handler(UpstreamError)
async def upstream_error(request: Request, e: UpstreamError):
    log.error("edge %s %s: %s", request.method, request.url.path, e)
    return json_response({"error": "upstream", "message": str(e)}, 500)


async def catalog(path, method="GET", **kwargs):
    return await request_json("catalog", method, f"{CATALOG_URL}{path}", **kwargs)


@app.get("/api/products/{sku}")
async def product(sku: str):
    return await catalog(f"/products/{sku}")


@app.get("/api/quotes/bulk")
async def quotes_bulk(skus: str = ""):
    return await catalog("/quotes/bulk", params={"skus": skus})


@app.get("/api/quotes/{sku}")
async def quote(sku: str):
    return await catalog(f"/quotes/{sku}")


@app.post("/api/cart/validate")
async def cart_validate(request: Request):
    return await catalog("/cart/validate", method="POST", json=await request.json())


@app.get("/api/reports/slow-movers")
async def slow_movers(days: int = 30):
    return await catalog("/reports/slow-movers", params={"days": days}, timeout=5)


@app.get("/api/products/{sku}/reviews")
async def reviews(sku: str):
    return await catalog(f"/products/{sku}/reviews")


@app.get("/api/exports/{kind}")
async def export(kind: str):
    return await catalog(f"/exports/{kind}", timeout=5)


@app.get("/api/products/{sku}/fx")
async def fx(sku: str, currency: str = "USD"):
    return await catalog(f"/products/{sku}/fx", params={"currency": currency})


@app.get("/api/products/{sku}/dimensions")
async def dimensions(sku: str):
    return await catalog(f"/products/{sku}/dimensions")


@app.get("/api/products/{sku}/availability")
async def availability(sku: str):
    return await catalog(f"/products/{sku}/availability")


@app.get("/api/bundles/{bundle_id}")
async def bundle(bundle_id: str):
    return await catalog(f"/bundles/{bundle_id}")


@app.get("/api/inventory/sync")
async def inventory_sync(warehouse: str = "w1"):
    """Proxies catalog's answer, status included (no raise on 5xx)."""
    resp = await client().get(f"{CATALOG_URL}/inventory/sync", params={"warehouse": warehouse},
                              headers={"x-tenant": TENANT.get()}, timeout=2)
    return Response(resp.content, status_code=resp.status_code, media_type="application/json")


@app.get("/api/stock/{sku}")
async def stock(sku: str, warehouse: str = "us"):
    """Stock is read from catalog's live cache; a 503 is retried."""
    attempts = int(evaluate_flag("edge.stock-retries"))
    return await with_retry(lambda: catalog(f"/stock/{sku}", params={"warehouse": warehouse}), attempts,
                            retry_if=lambda e: isinstance(e, UpstreamError) and e.status == 503)
